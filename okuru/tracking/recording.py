"""Recording what recipients do with a sent mail: opens, clicks, unsubscribes.

Opens and clicks are recorded in two steps:

1. **The request** inserts one row into the inbox (``tracking.Hit``: kind, ledger row, link,
   time) and answers. That is all it writes: no UPDATE, so no request ever waits on another's
   row lock. (Before this inbox every open and click updated its delivery's row, a lock all of
   a campaign's traffic queued on.)
2. **The drain** (``drain``) takes a batch of hits in arrival order and, in one transaction,
   adds their ``Event`` rows and their counters, set-based, and deletes them from the inbox. A
   hit is therefore either still in the inbox or fully applied: a crash or an error rolls the
   whole batch back and the next drain takes it again. Drains are serialised (SQLite's write
   lock; an advisory lock on PostgreSQL), so no hit is applied twice.

Who drains: ``okuru trackingworker`` five times a second (``okuru run`` starts one; run one
beside the web servers when scaling out; several are safe), a periodic task every minute as a
safety net, and the report pages, exports, API and CLI reports just before they read the counts,
so a report is always current. Elsewhere (the delivery list, delivery-history conditions) counts trail the
traffic by a fraction of a second.

Counters are kept in three places:

* the ledger row (``Recipient``): ``first_open_at``/``open_count``, ``first_click_at``/
  ``click_count``;
* the delivery (``Delivery``): ``open_unique``/``open_total``, ``click_unique``/``click_total``
  — the summary that outlives the purge of per-recipient detail;
* one ``Event`` row per open or click, with the time of the request (the chart and the event
  export).

"Unique" means the first time for that recipient: a recipient whose ledger row had no open
before the batch and gets one in it counts once, however many opens the batch holds for it. The
drain is the only writer of these counters and drains never overlap, so the unique count never
exceeds the number of recipients.

A click implies an open. Mail clients that block images never fetch the pixel, yet a recipient
who clicked has plainly opened the mail; like most mail platforms we count the first click of a
recipient with no recorded open as an open too (``Event.detail["implied"]``, at the click's
time), so "clicked" is always a subset of "opened" and the open rate is not understated. Within
a batch "first" follows arrival order: a click that arrived before the recipient's first pixel
implies an open, one that arrived after it does not — the same outcome as applying the hits one
by one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from okuru.customers.models import Customer
from okuru.mailings.models import Delivery, Event, Recipient
from okuru.tracking.models import Hit

log = logging.getLogger(__name__)

# Hits per drain transaction. On SQLite the endpoints' inserts wait while a batch holds the
# write lock (100 hits: 2–3 ms), and between two batches a drain pauses so that they go first:
# a drain that held the lock for a whole burst of traffic added tens of ms to the endpoints'
# p99. PostgreSQL's drain locks no row that an endpoint writes.
DRAIN_BATCH = {"sqlite": 100, "postgresql": 1000}
SQLITE_PAUSE = 0.003  # seconds


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


# ---------------------------------------------------------------------------------------------
# The request path. Hand-written SQL: through the ORM, compiling these statements costs more
# than the database spends running them, and these two endpoints take most of Okuru's traffic.

CLICK_TARGET_SQL = (
    # The join is the check: the link must belong to the mail of the recipient's delivery.
    "SELECT l.url FROM mailings_recipient r "
    "JOIN mailings_delivery d ON d.id = r.delivery_id "
    "JOIN mailings_trackedlink l ON l.mail_id = d.mail_id "
    "WHERE r.id = %s AND l.id = %s"
)
NOTE_SQL = "INSERT INTO tracking_hit (kind, recipient_id, link_id, created) VALUES (%s, %s, %s, %s)"
# PostgreSQL: the insert in a transaction of its own that commits without waiting for its WAL
# flush. A hit is not worth an fsync: a crash may lose the last fraction of a second of hits —
# whole ones, never half of one — which is what SQLite's WAL with synchronous=NORMAL (the
# embedded default) does anyway; everything else commits as usual. One string, so still one
# round trip (Django's psycopg cursors bind client-side and send it as a simple query).
PG_NOTE_SQL = f"BEGIN; SET LOCAL synchronous_commit TO OFF; {NOTE_SQL}; COMMIT"

# SQLite allows one writer at a time and makes the others wait by sleeping between tries (1, 2,
# 5, 10 … up to 100 ms), and a writer that sleeps can be passed over again and again by one that
# keeps trying: under load, web processes starved each other for hundreds of milliseconds. So
# tracking's writers (every web process and thread, and the drain) queue for the database on
# their own lock, a thread lock and then a file lock beside the database, and each takes over
# the moment the lock is free. Other writers (the sending worker, operators) still meet the
# sleeps, but write seldom by comparison. PostgreSQL locks rows, not the database, and needs
# nothing of the kind.
_thread_lock = threading.Lock()
# Per process and database: a process forked after opening it (gunicorn's workers) must open
# its own, since a flock() belongs to the open file, which a fork shares.
_lock_files: dict[tuple[int, str], int] = {}


def _lock_file() -> int | None:
    """This database's lock file; None for an in-memory database, which no other process can
    open anyway."""
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    key = (os.getpid(), name)
    fd = _lock_files.get(key)
    if fd is None:
        fd = _lock_files[key] = os.open(name + ".tracking-lock", os.O_RDWR | os.O_CREAT, 0o600)
    return fd


@contextmanager
def _sqlite_writer() -> Iterator[None]:
    with _thread_lock:
        fd = _lock_file()
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def find_click(recipient_id: int, link_id: int) -> str | None:
    """The URL of ``link_id`` — only when that link belongs to the mail this recipient was
    sent; None otherwise."""
    with connection.cursor() as cur:
        cur.execute(CLICK_TARGET_SQL, [recipient_id, link_id])
        row = cur.fetchone()
    return row[0] if row else None


def _note(kind: str, recipient_id: int, link_id: int | None) -> None:
    params = [kind, recipient_id, link_id, connection.ops.adapt_datetimefield_value(timezone.now())]
    if connection.vendor == "sqlite":
        with _sqlite_writer(), connection.cursor() as cur:
            cur.execute(NOTE_SQL, params)
        return
    if connection.vendor != "postgresql" or not connection.get_autocommit():
        with connection.cursor() as cur:  # inside the caller's transaction: part of it
            cur.execute(NOTE_SQL, params)
        return
    with connection.cursor() as cur:
        try:
            cur.execute(PG_NOTE_SQL, params)
        except Exception:
            # A failed statement leaves the BEGIN's transaction open and aborted: end it, or
            # every later query on this connection would fail.
            with suppress(Exception):
                cur.execute("ROLLBACK")
            raise


def note_open(recipient_id: int) -> None:
    """Put an open in the inbox (one INSERT; the drain applies it)."""
    _note(Hit.Kind.OPEN, recipient_id, None)


def note_click(recipient_id: int, link_id: int) -> None:
    """Put a click on ``link_id`` (already checked with ``find_click``) in the inbox."""
    _note(Hit.Kind.CLICK, recipient_id, link_id)


def record_open(recipient_id: int) -> None:
    """Note an open and apply it at once (tests, scripts: the endpoints only note)."""
    note_open(recipient_id)
    drain()


def record_click(recipient_id: int, link_id: int) -> None:
    """Note a click and apply it at once (tests, scripts: the endpoints only note)."""
    note_click(recipient_id, link_id)
    drain()


# ---------------------------------------------------------------------------------------------
# The drain. One batch is a set of hits ("hits" below) and, per ledger row, what the batch does
# to it ("per"): how many opens and clicks, the first of each, whether the row had an open or a
# click before, and whether the batch's first click implies an open (no open before, and the
# click arrived before any open of the batch). Every statement below works from those two.
# Hits of ledger rows that no longer exist (purged) drop out of the join and are just deleted.

PER_SQL = """
    SELECT h.recipient_id, r.delivery_id, r.customer_id,
        count(*) FILTER (WHERE h.kind = 'o') AS opens,
        count(*) FILTER (WHERE h.kind = 'c') AS clicks,
        min(h.created) FILTER (WHERE h.kind = 'o') AS first_open,
        min(h.created) FILTER (WHERE h.kind = 'c') AS first_click,
        r.open_count > 0 AS had_open,
        r.click_count > 0 AS had_click,
        CASE WHEN r.open_count = 0 AND r.click_count = 0
            AND count(*) FILTER (WHERE h.kind = 'c') > 0
            AND (min(h.id) FILTER (WHERE h.kind = 'o') IS NULL
                OR min(h.id) FILTER (WHERE h.kind = 'o') > min(h.id) FILTER (WHERE h.kind = 'c'))
        THEN 1 ELSE 0 END AS implied
    FROM hits h JOIN mailings_recipient r ON r.id = h.recipient_id
    GROUP BY h.recipient_id, r.delivery_id, r.customer_id, r.open_count, r.click_count
"""
# Implied opens first: an implied open has its click's time, and the event export orders a
# recipient's events by (time, id).
EVENTS_SQL = """
    INSERT INTO mailings_event
        (delivery_id, recipient_id, customer_id, kind, link_id, detail, created)
    SELECT delivery_id, recipient_id, customer_id, kind, link_id, detail, created FROM (
        SELECT p.delivery_id, p.recipient_id, p.customer_id, 'open' AS kind,
            CAST(NULL AS bigint) AS link_id, {implied} AS detail, p.first_click AS created,
            0 AS hit_id
        FROM per p WHERE p.implied = 1
        UNION ALL
        SELECT p.delivery_id, h.recipient_id, p.customer_id,
            CASE h.kind WHEN 'o' THEN 'open' ELSE 'click' END, l.id, {empty}, h.created, h.id
        FROM hits h JOIN per p ON p.recipient_id = h.recipient_id
        LEFT JOIN mailings_trackedlink l ON l.id = h.link_id
    ) e ORDER BY created, hit_id
"""
RECIPIENTS_SQL = """
    UPDATE mailings_recipient AS r SET
        open_count = r.open_count + p.opens + p.implied,
        first_open_at = COALESCE(
            r.first_open_at, CASE WHEN p.implied = 1 THEN p.first_click ELSE p.first_open END),
        click_count = r.click_count + p.clicks,
        first_click_at = COALESCE(r.first_click_at, p.first_click)
    FROM per p WHERE r.id = p.recipient_id
"""
DELIVERIES_SQL = """
    UPDATE mailings_delivery AS d SET
        open_total = d.open_total + s.open_total,
        open_unique = d.open_unique + s.open_unique,
        click_total = d.click_total + s.click_total,
        click_unique = d.click_unique + s.click_unique
    FROM (
        SELECT delivery_id,
            sum(opens + implied) AS open_total,
            sum(CASE WHEN NOT had_open AND (opens > 0 OR implied = 1) THEN 1 ELSE 0 END)
                AS open_unique,
            sum(clicks) AS click_total,
            sum(CASE WHEN NOT had_click AND clicks > 0 THEN 1 ELSE 0 END) AS click_unique
        FROM per GROUP BY delivery_id
    ) s WHERE d.id = s.delivery_id
"""

# PostgreSQL: one statement. Its parts share one snapshot, and the DELETE … RETURNING pins
# exactly the hits this drain applies: a hit committed meanwhile (ids are handed out before
# commit, so a late commit can carry a lower id) is left for the next drain, never deleted
# unapplied. UPDATEs of rows that a sender changes meanwhile apply to the newest version, as
# any increment does under READ COMMITTED.
PG_DRAIN_SQL = (
    "WITH hits AS ("
    " DELETE FROM tracking_hit WHERE id IN (SELECT id FROM tracking_hit ORDER BY id LIMIT %s)"
    " RETURNING id, kind, recipient_id, link_id, created),"
    f" per AS ({PER_SQL}),"
    " events AS ("
    + EVENTS_SQL.format(implied="""CAST('{"implied": true}' AS jsonb)""", empty="'{}'::jsonb")
    + "),"
    f" recipients AS ({RECIPIENTS_SQL}),"
    f" deliveries AS ({DELIVERIES_SQL})"
    " SELECT count(*) FROM hits"
)
# The per-recipient "had an open / a click" is read from the snapshot, so two drains at once
# could both count the same first open: they take turns on this lock, held until commit.
PG_DRAIN_LOCK = 0x6F6B7572  # any constant bigint; "okur"

# SQLite (no DML in WITH): one transaction of several statements, under the write lock that
# IMMEDIATE transactions take at BEGIN, so nothing else writes between them. The batch is the
# hits up to a watermark id; each statement re-derives "per" from it, and the ledger rows are
# updated last because the statements before read what they held before the batch.
SQLITE_WATERMARK_SQL = "SELECT max(id) FROM (SELECT id FROM tracking_hit ORDER BY id LIMIT %s)"
_SQLITE_WITH = (
    "WITH hits AS (SELECT id, kind, recipient_id, link_id, created FROM tracking_hit"
    f" WHERE id <= %s), per AS ({PER_SQL}) "
)
SQLITE_DRAIN_SQL = [
    _SQLITE_WITH + EVENTS_SQL.format(implied="""'{"implied": true}'""", empty="'{}'"),
    _SQLITE_WITH + DELIVERIES_SQL,
    _SQLITE_WITH + RECIPIENTS_SQL,
    "DELETE FROM tracking_hit WHERE id <= %s",
]


def batch_size() -> int:
    return DRAIN_BATCH.get(connection.vendor, 1000)


def pause() -> None:
    """Between two batches: let the endpoints' writers waiting for SQLite's lock go first."""
    if connection.vendor == "sqlite":
        time.sleep(SQLITE_PAUSE)


def drain_batch(batch: int | None = None) -> int:
    """Apply up to ``batch`` (default: ``batch_size()``) of the oldest hits and delete them,
    in one transaction; returns how many hits it took from the inbox (0: it was empty)."""
    batch = batch or batch_size()
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [PG_DRAIN_LOCK])
            cur.execute(PG_DRAIN_SQL, [batch])
            return cur.fetchone()[0]
    with _sqlite_writer(), transaction.atomic(), connection.cursor() as cur:
        cur.execute(SQLITE_WATERMARK_SQL, [batch])
        watermark = cur.fetchone()[0]
        if watermark is None:
            return 0
        for statement in SQLITE_DRAIN_SQL:
            cur.execute(statement, [watermark])
        return cur.rowcount


def pending() -> bool:
    """Whether the inbox holds any hit (a read: no lock, no transaction)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM tracking_hit LIMIT 1")
        return cur.fetchone() is not None


def drain(batch: int | None = None) -> int:
    """Apply every hit in the inbox, a batch per transaction; returns how many it took.
    Cheap when the inbox is empty: one read, no write lock."""
    if not pending():
        return 0
    batch = batch or batch_size()
    total = 0
    while True:
        n = drain_batch(batch)
        total += n
        if n < batch:
            return total
        pause()


def drain_quietly() -> int:
    """``drain`` for readers that want current counts but must answer anyway (reports): an
    error is logged, and they show the counts as the last successful drain left them."""
    try:
        return drain()
    except Exception:
        log.exception("could not apply tracked opens and clicks")
        return 0


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
