"""Received bounces, the mailboxes they are fetched from, and the suppression list.

``Bounce``
    One received message (a DSN, an MTA's notice, a complaint, an auto-reply, or something
    unrecognised), kept with its raw bytes (up to ``parsing.MAX_BYTES``), what the parser read
    from it (``report``), what it was matched to (delivery, ledger row, customer) and what was
    done (``outcome``)::

        failed       a "sent" (or "unknown") ledger row turned "failed" with the bounce's kind
        already      the row had already failed: nothing changed
        not_sent     the row was never sent (queued, excluded, stopped): nothing changed
        delayed      a delay notice (DSN action "delayed"): recorded, nothing changed
        complaint    an abuse report: the customer's refusal flag was set
        auto_reply   a vacation or other automatic reply (RFC 3834): not a bounce
        unmatched    a bounce or complaint that names no ledger row verifiably  ─┐ the queue
        unparsed     a message the parser could not read as any of the above    ─┘ for a human
        discarded    an operator looked at it and set it aside (the message is kept)

    ``digest`` is SHA-256 of the message's Message-ID (of its bytes when it has none; of the SNS
    MessageId for an Amazon SES notification posted by SNS), unique: the same message received
    twice, by any channel (or an SNS notification retried), is stored and applied once.

``Mailbox``
    An IMAP or POP3 mailbox (TLS or STARTTLS) that receives bounces, polled by a periodic task.
    The password is write-only, as a relay's: stored for the poller, never shown or logged.

``Suppression``
    Keyed hashes (HMAC-SHA256, ``suppression.address_digest``) of addresses that must never be
    mailed again: those whose customer complained or refused all mail and was then deleted.
    A customer created or imported later with such an address gets the refusal flag again.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from okuru.bounces.kinds import ErrorKind


class Bounce(models.Model):
    class Channel(models.TextChoices):
        SMTP = "smtp", _("SMTP receiver")
        IMAP = "imap", _("IMAP mailbox")
        POP3 = "pop3", _("POP3 mailbox")
        FILE = "file", _("Imported file")
        SNS = "sns", _("Amazon SNS")

    class Outcome(models.TextChoices):
        FAILED = "failed", _("Recorded as a delivery error")
        ALREADY = "already", _("Already recorded")
        NOT_SENT = "not_sent", _("Row was not sent")
        DELAYED = "delayed", _("Delayed: no change")
        COMPLAINT = "complaint", _("Complaint: refusal flag set")
        AUTO_REPLY = "auto_reply", _("Auto-reply: not a bounce")
        UNMATCHED = "unmatched", _("Not matched to a delivery")
        UNPARSED = "unparsed", _("Not recognised")
        DISCARDED = "discarded", _("Discarded")

    QUEUE = (Outcome.UNMATCHED, Outcome.UNPARSED)

    received_at = models.DateTimeField(_("received"), default=timezone.now)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    source = models.CharField(_("source"), max_length=300, blank=True)  # mailbox or file name
    digest = models.CharField(max_length=64, unique=True)
    message_id = models.CharField(max_length=300, blank=True)
    envelope_from = models.CharField(max_length=300, blank=True)
    envelope_to = models.CharField(max_length=300, blank=True)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    raw = models.BinaryField()
    size = models.PositiveIntegerField(default=0)  # as received; ``raw`` keeps MAX_BYTES of it
    report = models.JSONField(default=dict, blank=True)
    kind = models.CharField(_("error kind"), max_length=16, choices=ErrorKind.choices, blank=True)
    status = models.CharField(_("status code"), max_length=16, blank=True)
    address = models.CharField(_("address"), max_length=254, blank=True)
    delivery = models.ForeignKey(
        "mailings.Delivery",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="bounces",
        verbose_name=_("delivery"),
    )
    # Plain integers, as in the ledger: the record stays when detail is purged or the customer
    # is deleted.
    recipient_id = models.BigIntegerField(null=True, blank=True)
    customer_id = models.BigIntegerField(_("Customer ID"), null=True, blank=True)
    matched_by = models.CharField(max_length=16, blank=True)  # verp / legacy_verp / message_id
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices)
    note = models.CharField(max_length=500, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["received_at"], name="bounce_received"),
            models.Index(fields=["outcome", "received_at"], name="bounce_outcome"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def in_queue(self) -> bool:
        return self.outcome in self.QUEUE


class Mailbox(models.Model):
    class Protocol(models.TextChoices):
        IMAP = "imap", _("IMAP")
        POP3 = "pop3", _("POP3")

    class Security(models.TextChoices):
        TLS = "tls", _("TLS")
        STARTTLS = "starttls", _("STARTTLS")

    name = models.CharField(_("name"), max_length=100, unique=True)
    protocol = models.CharField(_("protocol"), max_length=4, choices=Protocol.choices)
    host = models.CharField(_("host"), max_length=255)
    port = models.PositiveIntegerField(_("port"))
    security = models.CharField(
        _("security"), max_length=8, choices=Security.choices, default=Security.TLS
    )
    verify_tls = models.BooleanField(_("verify the TLS certificate"), default=True)
    username = models.CharField(_("user name"), max_length=255)
    password = models.CharField(_("password"), max_length=255, blank=True)
    folder = models.CharField(_("folder"), max_length=255, default="INBOX")
    enabled = models.BooleanField(_("enabled"), default=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Suppression(models.Model):
    class Reason(models.TextChoices):
        COMPLAINT = "complaint", _("Complaint")
        REFUSED = "refused", _("Refusal flag")

    digest = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    created = models.DateTimeField(default=timezone.now)
