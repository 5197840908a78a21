"""Mail received by the local capture SMTP server (the embedded default's outgoing relay).

The capture box lets an operator see real mail end to end without any outside server. It is a
development and demo tool: it keeps at most ``KEEP`` messages and refuses messages over
``MAX_MESSAGE_BYTES`` at the SMTP level.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
KEEP = 5000
# Pruning on every insert would cost a DELETE per message during a big test delivery.
PRUNE_EVERY = 100


class CapturedMessage(models.Model):
    received = models.DateTimeField(default=timezone.now, db_index=True)
    mail_from = models.CharField(max_length=500, blank=True)
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=500, blank=True)
    size = models.PositiveIntegerField(default=0)
    raw = models.BinaryField()

    class Meta:
        ordering = ["-received", "-id"]
        verbose_name = _("captured message")

    def __str__(self) -> str:
        return self.subject or f"#{self.pk}"

    @classmethod
    def capture(cls, mail_from: str, recipients: list[str], raw: bytes) -> CapturedMessage:
        """Store one received message, keeping only the newest ``KEEP``."""
        message = cls.objects.create(
            mail_from=mail_from[:500],
            recipients=list(recipients),
            subject=subject_of(raw)[:500],
            size=len(raw),
            raw=raw,
        )
        if message.pk % PRUNE_EVERY == 0:
            cls.objects.filter(pk__lte=message.pk - KEEP).delete()
        return message

    def parsed(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(bytes(self.raw))

    def recipients_display(self) -> str:
        return ", ".join(self.recipients)


def subject_of(raw: bytes) -> str:
    # Only the headers are needed; a malformed header must not lose the message.
    try:
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        return str(headers.get("Subject", "") or "")
    except Exception:
        return ""


def body_parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies of a message ("" where absent or undecodable)."""
    return _part_content(message, "plain"), _part_content(message, "html")


def _part_content(message: EmailMessage, subtype: str) -> str:
    try:
        part = message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""
    except (LookupError, KeyError, ValueError, AttributeError):
        return ""
