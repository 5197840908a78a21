"""The ledger store: the delivery state changes that both the sending worker and the
operator's actions make, and the counts they read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.customers.fields import catalogue
from okuru.customers.filters import FilterError
from okuru.mailings import notices, targeting
from okuru.mailings.models import Delivery, Mail, Recipient

S = Delivery.Status

# How a delivery gets a worker: ``tasks`` registers the enqueue of its task here when the app
# loads (``MailingsConfig.ready``), so the actions that start or resume sending do not import
# the worker.
_kickers: list[Callable[[int], Any]] = []


def register_kick(kick: Callable[[int], Any]) -> None:
    """Call ``kick(delivery_id)`` whenever a delivery has rows to send (once, however often
    registered)."""
    if kick not in _kickers:
        _kickers.append(kick)


def kick(delivery_id: int) -> None:
    """Have a worker send ``delivery_id``; actions call it on commit."""
    for enqueue in _kickers:
        enqueue(delivery_id)


def content_snapshot(mail: Mail) -> dict[str, Any]:
    """What a delivery sends, fixed when it starts."""
    links = mail.links.filter(active=True).order_by("position") if mail.pk else []
    return {
        "subject": mail.subject,
        "text_body": mail.text_body,
        "html_body": mail.html_body,
        "from_address": mail.from_address,
        "from_name": mail.from_name,
        "reply_to": mail.reply_to,
        "return_path_domain": mail.return_path_domain,
        "open_tracking": mail.open_tracking,
        "click_tracking": mail.click_tracking,
        "topic_key": mail.topic.key if mail.topic_id else "",
        # What the List-Id header is made of (``messages.list_id``).
        "topic_name": mail.topic.name if mail.topic_id else "",
        "mail_id": mail.pk,
        "mail_name": mail.name,
        "links": [[link.pk, link.url] for link in links],
    }


def start_delivery(delivery_id: int) -> bool:
    """Freeze the ledger and mark the delivery running — one transaction, so a crash leaves
    either a reserved delivery with no ledger or a running one with all of it. False when the
    delivery is not a due reservation (someone else started it)."""
    try:
        with transaction.atomic(durable=True):
            n = Delivery.objects.filter(
                pk=delivery_id, status=S.RESERVED, scheduled_at__lte=timezone.now()
            ).update(status=S.RUNNING, started_at=timezone.now())
            if n != 1:
                return False
            delivery = Delivery.objects.select_related("mail", "mail__topic").get(pk=delivery_id)
            specs = catalogue()
            summary = targeting.counts(delivery.targeting, specs)
            inserted = targeting.fill_ledger(delivery_id, delivery.targeting, specs)
            Delivery.objects.filter(pk=delivery_id).update(
                content=content_snapshot(delivery.mail),
                matched_count=summary["matched"],
                excluded=summary["excluded"],
                recipient_count=inserted,
                last_activity_at=timezone.now(),
            )
            audit.log(None, "delivery.start", f"delivery:{delivery_id}", {"recipients": inserted})
    except FilterError as e:
        # The targeting went bad since the reservation (say a source delivery left the 3-month
        # window): stop with the reason rather than send to the wrong people.
        Delivery.objects.filter(pk=delivery_id, status=S.RESERVED).update(
            status=S.STOPPED, finished_at=timezone.now(), note=str(e)
        )
        return False
    return True


def start_due_deliveries() -> list[int]:
    """Start due reservations (at most 100 per call); returns the ids started."""
    due = Delivery.objects.filter(status=S.RESERVED, scheduled_at__lte=timezone.now())
    return [i for i in list(due.values_list("id", flat=True)[:100]) if start_delivery(i)]


def pause_for_error(delivery_id: int, error: str) -> None:
    Delivery.objects.filter(pk=delivery_id, status=S.RUNNING).update(
        status=S.PAUSED, note=_("Paused by the worker: %(error)s") % {"error": error}
    )


def stopped_note() -> str:
    return _("Not sent: the delivery was stopped by an operator.")


def reap_expired(lease: float) -> int:
    """Rows left "sending" past their lease belong to a dead worker: they become "unknown"
    (the message may or may not have gone out) and are never resent automatically."""
    cutoff = timezone.now() - timedelta(seconds=lease)
    return Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff).update(
        status=Recipient.Status.UNKNOWN,
        note=_("The worker stopped while sending; the message may or may not have been sent."),
    )


def refresh_counts(delivery_id: int) -> None:
    """Recount the delivery's summary from the ledger (one indexed GROUP BY): sent, failed,
    unknown, stopped, and the send-time exclusions by reason."""
    rows = (
        Recipient.objects.filter(delivery_id=delivery_id)
        .order_by()
        .values_list("status", "exclusion")
        .annotate(n=Count("id"))
    )
    by_status: dict[str, int] = {}
    excluded: dict[str, int] = {}
    for status, exclusion, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        if status == Recipient.Status.EXCLUDED:
            excluded[exclusion] = excluded.get(exclusion, 0) + n
    Delivery.objects.filter(pk=delivery_id).update(
        sent_count=by_status.get("sent", 0),
        failed_count=by_status.get("failed", 0),
        unknown_count=by_status.get("unknown", 0),
        stopped_count=by_status.get("stopped", 0),
        excluded_at_send=excluded,
    )


def maybe_complete(delivery_id: int) -> bool:
    """A running delivery with no row queued or sending is complete. The delivery row is locked
    first so a concurrent ``resolve_unknown`` (which requeues rows) cannot be lost."""
    with transaction.atomic():
        d = (
            Delivery.objects.select_for_update()
            .filter(pk=delivery_id, status=Delivery.Status.RUNNING)
            .only("id")
            .first()
        )
        if d is None:
            return False
        pending = Recipient.objects.filter(
            delivery_id=delivery_id,
            status__in=[Recipient.Status.QUEUED, Recipient.Status.SENDING],
        ).exists()
        if pending:
            return False
        Delivery.objects.filter(pk=delivery_id).update(
            status=Delivery.Status.COMPLETED, finished_at=timezone.now()
        )
        refresh_counts(delivery_id)
        notices.delivery_finished(delivery_id)
    return True


def running_delivery_ids() -> list[int]:
    return list(
        Delivery.objects.filter(status=Delivery.Status.RUNNING)
        .order_by("id")
        .values_list("id", flat=True)
    )
