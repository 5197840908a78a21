"""Recording what recipients do with a sent mail: opens, clicks, unsubscribes.

Counters are kept in three places, all with ``F()`` expressions so concurrent requests never
lose an increment:

* the ledger row (``Recipient``): ``first_open_at``/``open_count``, ``first_click_at``/
  ``click_count``;
* the delivery (``Delivery``): ``open_unique``/``open_total``, ``click_unique``/``click_total``
  — the summary that outlives the purge of per-recipient detail;
* one ``Event`` row per open or click, with its time (the chart and the event export).

"Unique" means the first time for that recipient. It is decided by a conditional UPDATE
(``first_open_at IS NULL``): exactly one request sees one updated row, however many arrive at
once, so the unique count never exceeds the number of recipients.

A click implies an open. Mail clients that block images never fetch the pixel, yet a recipient
who clicked has plainly opened the mail; like most mail platforms we count the first click of a
recipient with no recorded open as an open too (``Event.detail["implied"]``), so "clicked" is
always a subset of "opened" and the open rate is not understated.

Each recording is one short transaction that begins with its first write (the reads happen
before it), so on SQLite the write lock is held only for the few statements that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from okuru.customers.models import Customer
from okuru.mailings.models import Delivery, Event, Recipient


@dataclass(frozen=True)
class Target:
    """The ledger row a token names, as much of it as recording needs."""

    recipient_id: int
    delivery_id: int
    customer_id: int


def find_recipient(recipient_id: int) -> Target | None:
    row = (
        Recipient.objects.filter(pk=recipient_id).values_list("delivery_id", "customer_id").first()
    )
    return Target(recipient_id, row[0], row[1]) if row else None


def find_click(recipient_id: int, link_id: int) -> tuple[Target, str] | None:
    """The recipient and the URL of ``link_id`` — only when that link belongs to the mail this
    recipient was sent. One query: the join itself is the check."""
    row = (
        Recipient.objects.filter(pk=recipient_id, delivery__mail__links__pk=link_id)
        .values_list("delivery_id", "customer_id", "delivery__mail__links__url")
        .first()
    )
    if row is None:
        return None
    return Target(recipient_id, row[0], row[1]), row[2]


def _first(recipient_id: int, first_field: str, count_field: str, now: Any) -> bool | None:
    """Count one more on the ledger row; True when it is the recipient's first, None when the
    row is gone (purged since it was read)."""
    first = Recipient.objects.filter(pk=recipient_id, **{f"{first_field}__isnull": True}).update(
        **{first_field: now, count_field: F(count_field) + 1}
    )
    if first:
        return True
    n = Recipient.objects.filter(pk=recipient_id).update(**{count_field: F(count_field) + 1})
    return False if n else None


def record_open(target: Target) -> bool:
    """Record an open; True when it was the recipient's first."""
    now = timezone.now()
    with transaction.atomic():
        first = _first(target.recipient_id, "first_open_at", "open_count", now)
        if first is None:
            return False
        Event.objects.create(
            delivery_id=target.delivery_id,
            recipient_id=target.recipient_id,
            customer_id=target.customer_id,
            kind=Event.Kind.OPEN,
            created=now,
        )
        Delivery.objects.filter(pk=target.delivery_id).update(
            open_total=F("open_total") + 1, open_unique=F("open_unique") + int(first)
        )
    return first


def record_click(target: Target, link_id: int) -> bool:
    """Record a click on ``link_id`` (already checked to belong to the recipient's mail); True
    when it was the recipient's first click. The first click of a recipient with no recorded
    open records an open as well (see the module docstring)."""
    now = timezone.now()
    with transaction.atomic():
        first = _first(target.recipient_id, "first_click_at", "click_count", now)
        if first is None:
            return False
        implied_open = first and bool(
            Recipient.objects.filter(pk=target.recipient_id, first_open_at__isnull=True).update(
                first_open_at=now, open_count=F("open_count") + 1
            )
        )
        events = [
            Event(
                delivery_id=target.delivery_id,
                recipient_id=target.recipient_id,
                customer_id=target.customer_id,
                kind=Event.Kind.CLICK,
                link_id=link_id,
                created=now,
            )
        ]
        if implied_open:
            events.insert(
                0,
                Event(
                    delivery_id=target.delivery_id,
                    recipient_id=target.recipient_id,
                    customer_id=target.customer_id,
                    kind=Event.Kind.OPEN,
                    detail={"implied": True},
                    created=now,
                ),
            )
        Event.objects.bulk_create(events)
        Delivery.objects.filter(pk=target.delivery_id).update(
            click_total=F("click_total") + 1,
            click_unique=F("click_unique") + int(first),
            open_total=F("open_total") + int(implied_open),
            open_unique=F("open_unique") + int(implied_open),
        )
    return first


# ---------------------------------------------------------------------------------------------
# Unsubscribing. These are the recipient's own writes (no operator is involved), so their record
# is an "unsubscribe" Event on the delivery rather than an operation-log entry.


def unsubscribe(target: Target, topic_keys: list[str], one_click: bool = False) -> list[str]:
    """Add ``topic_keys`` to the customer's unsubscribe flags; returns the keys newly added
    (none when the customer is gone or already unsubscribed from all of them)."""
    with transaction.atomic():
        customer = (
            Customer.objects.select_for_update()
            .filter(pk=target.customer_id)
            .only("id", "unsubscribed")
            .first()
        )
        if customer is None:
            return []
        current = list(customer.unsubscribed or [])
        added = [k for k in dict.fromkeys(topic_keys) if k not in current]
        if added:
            Customer.objects.filter(pk=customer.pk).update(
                unsubscribed=current + added, updated_at=timezone.now()
            )
            _unsubscribe_event(target, {"topics": added, "one_click": one_click})
    return added


def refuse_all(target: Target, one_click: bool = False) -> bool:
    """Set the customer's refusal flag (受信拒否フラグ): no mail at all from now on. True when
    the customer exists."""
    with transaction.atomic():
        n = Customer.objects.filter(pk=target.customer_id).update(
            refused=True, updated_at=timezone.now()
        )
        if n:
            _unsubscribe_event(target, {"refused": True, "one_click": one_click})
    return bool(n)


def _unsubscribe_event(target: Target, detail: dict[str, Any]) -> None:
    Event.objects.create(
        delivery_id=target.delivery_id,
        recipient_id=target.recipient_id,
        customer_id=target.customer_id,
        kind=Event.Kind.UNSUBSCRIBE,
        detail=detail,
    )


def mail_topic(delivery_id: int) -> str:
    """The newsletter topic key the delivery was sent under ("" when none)."""
    content = Delivery.objects.filter(pk=delivery_id).values_list("content", flat=True).first()
    return (content or {}).get("topic_key", "")
