"""Recording what recipients do with a sent mail: opens, clicks, unsubscribes.

Counters are kept in three places, all with ``F()`` expressions so concurrent requests never
lose an increment:

* the ledger row (``Recipient``): ``first_open_at``/``open_count``, ``first_click_at``/
  ``click_count``;
* the delivery (``Delivery``): ``open_unique``/``open_total``, ``click_unique``/``click_total``
  — the summary that outlives the purge of per-recipient detail;
* one ``Event`` row per open or click, with its time (the chart and the event export).

"Unique" means the first time for that recipient. It is decided by the ledger row's own count,
incremented and read back in one ``UPDATE … RETURNING``: the row lock orders concurrent requests,
exactly one of them reads 1, so the unique count never exceeds the number of recipients.

A click implies an open. Mail clients that block images never fetch the pixel, yet a recipient
who clicked has plainly opened the mail; like most mail platforms we count the first click of a
recipient with no recorded open as an open too (``Event.detail["implied"]``), so "clicked" is
always a subset of "opened" and the open rate is not understated.

Each recording is one short transaction of three or four statements that begins with its first
write (a click's link check reads before it), so on SQLite the write lock is held briefly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from okuru.customers.models import Customer
from okuru.mailings.models import Delivery, Event, Recipient

IMPLIED = '{"implied": true}'  # Event.detail of an open implied by a click


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


# The open and click paths are written in SQL by hand: through the ORM, compiling these few
# statements cost several times what the database spends running them, and these two endpoints
# take most of Okuru's traffic. Every statement works on SQLite (3.35+, for RETURNING) and
# PostgreSQL. Times go through ``adapt_datetimefield_value`` as the ORM would pass them.

CLICK_TARGET_SQL = (
    # The join is the check: the link must belong to the mail of the recipient's delivery.
    "SELECT l.url FROM mailings_recipient r "
    "JOIN mailings_delivery d ON d.id = r.delivery_id "
    "JOIN mailings_trackedlink l ON l.mail_id = d.mail_id "
    "WHERE r.id = %s AND l.id = %s"
)
# Counting and reading back in one statement: after the increment, a count of 1 means this was
# the recipient's first (an implied open also counts in open_count, so the rule holds for it).
COUNT_OPEN_SQL = (
    "UPDATE mailings_recipient SET open_count = open_count + 1, "
    "first_open_at = COALESCE(first_open_at, %s) WHERE id = %s "
    "RETURNING delivery_id, customer_id, open_count"
)
COUNT_CLICK_SQL = (
    "UPDATE mailings_recipient SET click_count = click_count + 1, "
    "first_click_at = COALESCE(first_click_at, %s) WHERE id = %s "
    "RETURNING delivery_id, customer_id, click_count"
)
IMPLIED_OPEN_SQL = (
    "UPDATE mailings_recipient SET open_count = open_count + 1, first_open_at = %s "
    "WHERE id = %s AND first_open_at IS NULL"
)
DELIVERY_COUNTERS_SQL = (
    "UPDATE mailings_delivery SET open_total = open_total + %s, open_unique = open_unique + %s, "
    "click_total = click_total + %s, click_unique = click_unique + %s WHERE id = %s"
)


def _insert_events_sql(n: int) -> str:
    detail = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    row = f"(%s, %s, %s, %s, %s, {detail}, %s)"
    return (
        "INSERT INTO mailings_event "
        "(delivery_id, recipient_id, customer_id, kind, link_id, detail, created) VALUES "
        + ", ".join([row] * n)
    )


# SQLite allows one writer at a time and makes the others wait by sleeping (1, 2, 5, 10 … ms
# between tries), which under load was most of a tracking request's p99. The threads of one
# process queue on this lock instead and take over the moment it is free. PostgreSQL locks rows,
# not the database, and needs nothing of the kind.
_sqlite_writer = threading.Lock()


@contextmanager
def _writing() -> Iterator[Any]:
    if connection.vendor == "sqlite":
        with _sqlite_writer, transaction.atomic(), connection.cursor() as cur:
            yield cur
        return
    with transaction.atomic(), connection.cursor() as cur:
        # Every open and click updates its delivery's row, so on PostgreSQL these transactions
        # queue on that row lock, and with a synchronous commit each holds it through a WAL
        # flush (about 300 requests/s on this machine's disk). An open is not worth an fsync:
        # without one a crash may lose the last fraction of a second of events — whole
        # transactions, never half of one — which is what SQLite's WAL with synchronous=NORMAL
        # (the embedded default) does anyway. The ledger and everything else commit as usual.
        cur.execute("SET LOCAL synchronous_commit TO OFF")
        yield cur


def find_click(recipient_id: int, link_id: int) -> str | None:
    """The URL of ``link_id`` — only when that link belongs to the mail this recipient was
    sent; None otherwise."""
    with connection.cursor() as cur:
        cur.execute(CLICK_TARGET_SQL, [recipient_id, link_id])
        row = cur.fetchone()
    return row[0] if row else None


def record_open(recipient_id: int) -> bool | None:
    """Record an open: True when it was the recipient's first, False for a repeat, None when
    there is no such ledger row (purged, or never existed)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with _writing() as cur:
        cur.execute(COUNT_OPEN_SQL, [now, recipient_id])
        row = cur.fetchone()
        if row is None:
            return None
        delivery_id, customer_id, count = row
        first = count == 1
        cur.execute(
            _insert_events_sql(1),
            [delivery_id, recipient_id, customer_id, "open", None, "{}", now],
        )
        cur.execute(DELIVERY_COUNTERS_SQL, [1, int(first), 0, 0, delivery_id])
    return first


def record_click(recipient_id: int, link_id: int) -> bool | None:
    """Record a click on ``link_id`` (already checked with ``find_click``): True when it was
    the recipient's first click, False for a repeat, None when there is no such ledger row.
    The first click of a recipient with no recorded open records an open as well."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with _writing() as cur:
        cur.execute(COUNT_CLICK_SQL, [now, recipient_id])
        row = cur.fetchone()
        if row is None:
            return None
        delivery_id, customer_id, count = row
        first = count == 1
        implied = False
        if first:
            cur.execute(IMPLIED_OPEN_SQL, [now, recipient_id])
            implied = cur.rowcount == 1
        params = [delivery_id, recipient_id, customer_id, "click", link_id, "{}", now]
        if implied:
            params = [delivery_id, recipient_id, customer_id, "open", None, IMPLIED, now, *params]
        cur.execute(_insert_events_sql(2 if implied else 1), params)
        cur.execute(DELIVERY_COUNTERS_SQL, [int(implied), int(implied), 1, int(first), delivery_id])
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
