"""Named actions on bounces, list cleaning and bounce mailboxes.

Every channel (the SMTP receiver, the mailbox poller, ``okuru bounces import``) hands a received
message to ``receive``, which stores it, parses it, matches it to its ledger row
(``matching.py``) and applies it — one durable transaction, so a message is either stored with
all its effects or not at all, and the same message received again (same Message-ID, or same
bytes) changes nothing.

Applying a permanent failure to a row that was "sent" (or "unknown": the bounce proves it went
out) makes it "failed" with the bounce's error kind, moves the delivery's counters, adds the
kind's weight to the error count of the address the message went to (+99 hard, +1 soft, only
while the customer still has that address, as sending does), records an Event, and for a
bad-format or unknown-user error puts the address into list cleaning. A delay notice or an
auto-reply is recorded and changes nothing. A complaint sets the customer's refusal flag and
keeps a keyed hash of the address (``suppression.py``).

The SNS webhook (``sns.py``) reads Amazon SES notifications itself and hands its report to
``store``, which does the same from there on; ``reparse`` reads such a bounce again the same way.

Sending calls ``note_hard_failure`` for its own SMTP-time hard errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.bounces import counts, kinds, matching, suppression
from okuru.bounces.models import Bounce, Mailbox, Suppression
from okuru.bounces.parsing import MAX_BYTES, Failure, Report, parse, sns_report
from okuru.customers.models import Customer
from okuru.mailings.models import Delivery, Event, ListCleaning, Recipient

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it
OUT = Bounce.Outcome
LIST_CLEANING_KINDS = frozenset({kinds.BAD_FORMAT, kinds.UNKNOWN_USER})


# ---------------------------------------------------------------------------------------------
# Receiving


def _headers(raw: bytes) -> Message:
    try:
        return BytesHeaderParser(policy=compat32).parsebytes(raw[:MAX_BYTES], headersonly=True)
    except Exception:  # the email package's failure modes are not enumerable
        return Message()


def _text(msg: Message, name: str, limit: int = 300) -> str:
    try:
        value = msg.get(name)
        if value is None:
            return ""
        try:
            value = str(make_header(decode_header(str(value))))
        except Exception:
            value = str(value)
    except Exception:
        return ""
    return " ".join(value.split())[:limit]


def message_digest(raw: bytes, msg: Message | None = None) -> str:
    """What makes a received message "the same message": its Message-ID, else its bytes."""
    msg = msg if msg is not None else _headers(raw)
    message_id = _text(msg, "Message-ID", 1000)
    if message_id:
        return hashlib.sha256(b"id:" + message_id.encode("utf-8", "replace")).hexdigest()
    return hashlib.sha256(b"raw:" + raw[:MAX_BYTES]).hexdigest()


def _safe_read(reader: Callable[[bytes], Report], raw: bytes) -> tuple[Report, str]:
    try:
        return reader(raw), ""
    except Exception as e:  # the parser promises not to raise; if it does, keep the message
        return Report(), _("The parser failed: %(error)s") % {"error": e}


def _safe_parse(raw: bytes) -> tuple[Report, str]:
    return _safe_read(parse, raw)


def receive(
    raw: bytes,
    channel: str,
    *,
    source: str = "",
    envelope_from: str = "",
    envelope_to: Iterable[str] = (),
) -> tuple[Bounce, bool]:
    """Store, match and apply one received message; (the bounce, whether it is new)."""
    msg = _headers(raw)
    digest = message_digest(raw, msg)
    existing = Bounce.objects.filter(digest=digest).first()
    if existing is not None:
        return existing, False
    report, problem = _safe_parse(raw)
    envelope_to = [a[:300] for a in envelope_to][:50]
    bounce = Bounce(
        channel=channel,
        source=source[:300],
        digest=digest,
        message_id=_text(msg, "Message-ID"),
        envelope_from=envelope_from[:300],
        envelope_to=", ".join(envelope_to)[:300],
        subject=_text(msg, "Subject"),
        raw=raw[:MAX_BYTES],
        size=len(raw),
        note=problem,
    )
    return store(bounce, report, msg, envelope_to)


def store(
    bounce: Bounce, report: Report, msg: Message | None = None, envelope_to: Iterable[str] = ()
) -> tuple[Bounce, bool]:
    """Store ``bounce`` (unsaved, its ``digest`` set) with what ``report`` says, matched and
    applied, in one transaction; (the bounce, whether it is new). A channel that reads its
    messages itself (the SNS webhook) calls this instead of ``receive``."""
    existing = Bounce.objects.filter(digest=bounce.digest).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic(durable=True):
            bounce.save()
            _process(bounce, msg, report, list(envelope_to))
    except IntegrityError:  # the same message, stored meanwhile by another channel
        return Bounce.objects.get(digest=bounce.digest), False
    return bounce, True


def _process(bounce: Bounce, msg: Message | None, report: Report, envelope_to: list[str]) -> None:
    """Match and apply ``report``; saves ``bounce``. Runs inside the caller's transaction."""
    bounce.report = report_dict(report)
    bounce.kind = bounce.status = bounce.address = ""
    found = None
    if report.failures or report.delayed or report.complaint is not None:
        found = matching.match(msg, report, envelope_to)
    if found is not None:
        row = found.row
        bounce.delivery_id, bounce.recipient_id = row.delivery_id, row.pk
        bounce.customer_id, bounce.matched_by = row.customer_id, found.by
        bounce.address = row.address[:254]
    if report.complaint is not None:
        if found is None:
            bounce.outcome = OUT.UNMATCHED
        else:
            _apply_complaint(bounce, found.row, report)
    elif report.failures:
        failure = _failure_for(report.failures, found.row if found else None)
        bounce.kind, bounce.status = failure.kind, failure.status
        bounce.address = bounce.address or failure.recipient[:254]
        if found is None:
            bounce.outcome = OUT.UNMATCHED
        else:
            _apply_failure(bounce, found.row, failure)
    elif report.delayed:
        bounce.status = report.delayed[0].status
        bounce.address = bounce.address or report.delayed[0].recipient[:254]
        bounce.outcome = OUT.DELAYED
    elif report.auto_reply:
        bounce.outcome = OUT.AUTO_REPLY
    else:
        bounce.outcome = OUT.UNPARSED
    bounce.save()
    if bounce.outcome in (OUT.FAILED, OUT.COMPLAINT):
        audit.log(
            None,
            "bounce.apply",
            f"#{bounce.pk}",
            {"id": bounce.recipient_id, "reason": bounce.outcome, "kind": bounce.kind},
        )


def report_dict(report: Report) -> dict[str, Any]:
    def failure(f: Failure) -> dict[str, Any]:
        return {**f.as_dict(), "diagnostic": f.diagnostic[:500]}

    out: dict[str, Any] = {
        "failures": [failure(f) for f in report.failures[:50]],
        "delayed": [failure(f) for f in report.delayed[:50]],
        "auto_reply": report.auto_reply,
    }
    if report.complaint is not None:
        out["complaint"] = {
            "recipients": report.complaint.recipients[:50],
            "feedback_type": report.complaint.feedback_type[:100],
        }
    if report.original is not None:
        out["original_message_id"] = report.original.message_id[:300]
    return out


def _failure_for(failures: list[Failure], row: Recipient | None) -> Failure:
    """The failure about the row's address; with VERP one envelope is one recipient, so a
    failure for another address (a forwarding target) is still about this row."""
    if row is not None:
        for f in failures:
            if f.recipient.lower() == row.address.lower():
                return f
    return failures[0]


def _address_field(row: Recipient) -> str:
    targeting = row.delivery.targeting or {}
    return "mobile_email" if targeting.get("address_field") == "mobile_email" else "email"


def _apply_failure(bounce: Bounce, row: Recipient, failure: Failure) -> None:
    kind = failure.kind if failure.kind in kinds.KINDS else kinds.OTHER
    reply = " ".join(p for p in (failure.reply_code, failure.status, failure.diagnostic) if p)
    previous = row.status
    changed = Recipient.objects.filter(
        pk=row.pk, status__in=[Recipient.Status.SENT, Recipient.Status.UNKNOWN]
    ).update(
        status=Recipient.Status.FAILED,
        error_kind=kind,
        smtp_reply=reply[:1000],
        note=(_("Bounced after sending (%(status)s).") % {"status": failure.status})[:500],
    )
    if not changed:
        bounce.outcome = OUT.ALREADY if previous == Recipient.Status.FAILED else OUT.NOT_SENT
        return
    bounce.outcome = OUT.FAILED
    counter = "sent_count" if previous == Recipient.Status.SENT else "unknown_count"
    Delivery.objects.filter(pk=row.delivery_id).update(
        failed_count=F("failed_count") + 1, **{counter: F(counter) - 1}
    )
    counts.add(_address_field(row), [(row.customer_id, row.address, kinds.error_weight(kind))])
    Event.objects.create(
        delivery_id=row.delivery_id,
        recipient_id=row.pk,
        customer_id=row.customer_id,
        kind=Event.Kind.BOUNCE,
        detail={"kind": kind, "status": failure.status, "bounce": bounce.pk},
    )
    if kind in LIST_CLEANING_KINDS:
        _add_list_cleaning(row.address, kind)


def _apply_complaint(bounce: Bounce, row: Recipient, report: Report) -> None:
    bounce.outcome = OUT.COMPLAINT
    Customer.objects.filter(pk=row.customer_id, refused=False).update(
        refused=True, updated_at=timezone.now()
    )
    suppression.remember([row.address], Suppression.Reason.COMPLAINT)
    feedback = report.complaint.feedback_type if report.complaint else ""
    Event.objects.create(
        delivery_id=row.delivery_id,
        recipient_id=row.pk,
        customer_id=row.customer_id,
        kind=Event.Kind.COMPLAINT,
        detail={"feedback_type": feedback[:100], "bounce": bounce.pk},
    )


def reparse(actor: Actor, bounce_id: int) -> Bounce:
    """Parse a queued message again (the parser may have learned its format since) and apply
    what it now says. Only messages still in the queue: an applied bounce stays applied."""
    with transaction.atomic(durable=True):
        bounce = Bounce.objects.select_for_update().get(pk=bounce_id)
        if not bounce.in_queue:
            return bounce
        raw = bytes(bounce.raw)
        if bounce.channel == Bounce.Channel.SNS:
            report, bounce.note = _safe_read(sns_report, raw)
            _process(bounce, None, report, [])
        else:
            report, bounce.note = _safe_parse(raw)
            _process(bounce, _headers(raw), report, bounce.envelope_to.split(", "))
        audit.log(actor, "bounce.reparse", f"#{bounce.pk}", {"reason": bounce.outcome})
    return bounce


def discard(actor: Actor, bounce_id: int) -> Bounce:
    """Set a queued message aside: it leaves the queue, its bytes stay for the record."""
    with transaction.atomic(durable=True):
        bounce = Bounce.objects.select_for_update().get(pk=bounce_id)
        if not bounce.in_queue:
            return bounce
        bounce.outcome = OUT.DISCARDED
        bounce.handled_by = getattr(actor, "user", actor) if actor is not None else None
        if bounce.handled_by is not None and not bounce.handled_by.is_authenticated:
            bounce.handled_by = None
        bounce.handled_at = timezone.now()
        bounce.save(update_fields=["outcome", "handled_by", "handled_at"])
        audit.log(actor, "bounce.discard", f"#{bounce.pk}")
    return bounce


# ---------------------------------------------------------------------------------------------
# List cleaning


def _add_list_cleaning(address: str, kind: str) -> bool:
    address = address.strip().lower()
    if not address or len(address) > 254:
        return False
    _entry, created = ListCleaning.objects.get_or_create(address=address, defaults={"reason": kind})
    return created


def cleaned(addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` list cleaning excludes, lower-cased (how they are stored)."""
    wanted = {a.strip().lower() for a in addresses}
    return set(ListCleaning.objects.filter(address__in=wanted).values_list("address", flat=True))


def note_hard_failure(address: str, kind: str) -> bool:
    """A bad-format or unknown-user error for ``address`` (at send time or by a bounce): list
    cleaning excludes the address from every later delivery. Other kinds are ignored. True
    when the address is new to the list. Idempotent."""
    if kind not in LIST_CLEANING_KINDS or not address:
        return False
    with transaction.atomic(durable=True):
        return _add_list_cleaning(address, kind)


def remove_list_cleaning(actor: Actor, entry_ids: Iterable[int]) -> int:
    """Remove entries (an operator knows the address works again); returns how many. The log
    names the entries by id and count, not by address: the log browser is not for customer
    data."""
    ids = sorted({int(i) for i in entry_ids})
    with transaction.atomic(durable=True):
        removed, _detail = ListCleaning.objects.filter(id__in=ids).delete()
        if removed:
            audit.log(actor, "list_cleaning.remove", "", {"count": removed, "id": ids[:100]})
    return removed


# ---------------------------------------------------------------------------------------------
# Mailboxes

MAILBOX_FIELDS = (
    "name", "protocol", "host", "port", "security", "verify_tls", "username", "folder", "enabled",
)  # fmt: skip


def mailbox_public(mailbox: Mailbox) -> dict[str, Any]:
    """A mailbox for screens, the CLI and the log: everything but the password."""
    out = {f: getattr(mailbox, f) for f in MAILBOX_FIELDS}
    out["id"] = mailbox.pk
    out["has_password"] = bool(mailbox.password)
    return out


def save_mailbox(actor: Actor, mailbox: Mailbox, password: str | None = None) -> Mailbox:
    """Create or change a mailbox. ``password`` None keeps the stored one."""
    if password is not None:
        mailbox.password = password
    mailbox.full_clean()
    new = mailbox.pk is None
    with transaction.atomic(durable=True):
        mailbox.save()
        detail = mailbox_public(mailbox)
        del detail["has_password"]
        detail["password_changed"] = password is not None
        audit.log(actor, "mailbox.create" if new else "mailbox.update", mailbox.name, detail)
    return mailbox


def delete_mailbox(actor: Actor, mailbox: Mailbox) -> None:
    with transaction.atomic(durable=True):
        name, pk = mailbox.name, mailbox.pk
        mailbox.delete()
        audit.log(actor, "mailbox.delete", name, {"id": pk})


def record_poll(mailbox: Mailbox, error: str = "") -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(
        last_polled_at=timezone.now(), last_error=error[:500]
    )
