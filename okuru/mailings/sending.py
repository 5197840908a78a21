"""The sending worker: claim ledger rows, render, push over SMTP, record each outcome.

Every row goes queued → sending → sent / failed / unknown (or back to queued for a retry):

* **Claim.** One conditional ``UPDATE … RETURNING`` moves a batch from queued to sending with a
  claim token and a lease time, and commits *before* any SMTP traffic. On PostgreSQL the batch
  is chosen with ``FOR UPDATE SKIP LOCKED`` so many workers take disjoint batches without
  waiting on each other; on SQLite the single writer lock does the same.
* **Send.** Templates are compiled once per delivery (``Prepared``); one persistent SMTP
  connection per relay; rate limits per relay and per recipient domain (a row whose domain is
  saturated for longer than ``max_rate_wait`` goes back to the queue for later, unchanged).
* **Outcomes** are written per batch in one transaction, each conditional on the claim token,
  so a row an operator has since resolved is never overwritten.

Failure classes (after GNU Mailman):

* 2xx → sent (Message-ID, time, reply).
* 5xx → failed, with the error kind from the reply and enhanced status code.
* 4xx, a connection lost before the end of DATA, a timeout → queued again with attempts + 1
  and an exponential back-off, until the retry deadline (delivery start + ``retry_window``),
  then failed ("other") with the reason.
* Connection lost *after* the end of DATA, or any unexpected error → "unknown" with a note: the
  message may have gone out, so only an operator may send it again (``actions.resolve_unknown``).
  Nothing raises out of a batch, so a bad row can never crash-loop the worker.
* A worker killed mid-batch leaves rows "sending"; when their lease runs out any worker turns
  them "unknown" (``reap_expired``). A live worker refreshes its lease while it works, and a
  batch never runs longer than ``batch_seconds``, so a lease only runs out on a dead worker.

``Worker.step()`` is one loop iteration returning whether it found work; ``sendworker`` calls it
in a loop, tests call it directly.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.customers.fields import catalogue
from okuru.customers.models import Customer
from okuru.lib import signing, smtp
from okuru.mailings.messages import BadAddress, MessageBuilder
from okuru.mailings.models import Delivery, Recipient, Relay
from okuru.mailings.rendering import CompiledMail, UrlBuilder

log = logging.getLogger(__name__)

CUSTOMER_COLUMNS = (
    "id",
    "email",
    "mobile_email",
    "refused",
    "email_error_count",
    "mobile_error_count",
    "unsubscribed",
    "created_at",
    "updated_at",
    "data",
)
COUNTS_INTERVAL = 2.0


@dataclass
class Config:
    batch_size: int = 200
    lease: float = 300.0  # seconds a claim stays valid without a refresh
    batch_seconds: float = 20.0  # a batch gives back what it has not sent after this long
    retry_base: float = 60.0
    retry_max: float = 3600.0
    retry_window: float = 24 * 3600.0
    max_rate_wait: float = 2.0  # per batch, sleeping for saturated recipient domains
    idle_sleep: float = 1.0


@dataclass
class Claimed:
    id: int
    customer_id: int
    address: str
    attempts: int


@dataclass
class Outcome:
    """One row's new state, written by ``write_outcomes``."""

    id: int
    status: str
    tried: bool = True  # counts as an attempt
    next_attempt_at: datetime | None = None
    smtp_reply: str = ""
    error_kind: str = ""
    note: str = ""
    message_id: str = ""
    sent_at: datetime | None = None
    relay_down: bool = False  # the relay could not be reached: stop this batch


class RateLimiter:
    """At most ``per_second`` sends per second, spread evenly (a "next free slot" clock)."""

    def __init__(self, per_second: int):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_free = 0.0

    def wait(self, now: float) -> float:
        return max(0.0, self.next_free - now) if self.interval else 0.0

    def take(self, now: float) -> None:
        if self.interval:
            self.next_free = max(self.next_free, now) + self.interval


@dataclass
class Prepared:
    """What is the same for every message of a delivery, worked out once."""

    delivery_id: int
    compiled: CompiledMail
    builder: MessageBuilder
    relay_key: int
    relay: smtp.RelaySettings
    deadline: datetime
    urls: UrlBuilder
    relay_limit: RateLimiter
    per_domain: int
    domains: dict[str, RateLimiter] = field(default_factory=dict)


def default_relay() -> Relay:
    """The default relay; on a fresh install, one made from the operator-mail settings (the
    embedded set-up's capture SMTP server), so mail flows end to end with no configuration."""
    relay = Relay.objects.filter(is_default=True).first() or Relay.objects.order_by("id").first()
    if relay is not None:
        return relay
    options = settings.MAILERS["default"]["OPTIONS"]
    relay, _created = Relay.objects.get_or_create(
        name="default",
        defaults={
            "host": options.get("host") or "127.0.0.1",
            "port": options.get("port") or 25,
            "security": "tls"
            if options.get("use_ssl")
            else ("starttls" if options.get("use_tls") else "none"),
            "username": options.get("username") or "",
            "password": options.get("password") or "",
            "is_default": True,
        },
    )
    return relay


def _adapt(dt: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(dt) if dt is not None else None


# ---------------------------------------------------------------------------------------------
# Named SQL


def claim(delivery_id: int, token: str, limit: int) -> list[Claimed]:
    """Move up to ``limit`` due queued rows of a running delivery to "sending" under ``token``.

    One statement in autocommit mode, so the claim is committed before any SMTP traffic."""
    now = _adapt(timezone.now())
    due = (
        "SELECT r.id FROM mailings_recipient r WHERE r.delivery_id = %s AND r.status = 'queued' "
        "AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= %s) AND EXISTS (SELECT 1 FROM "
        "mailings_delivery d WHERE d.id = %s AND d.status = 'running') ORDER BY r.id LIMIT %s"
    )
    if connection.vendor == "postgresql":
        # A MATERIALIZED CTE: with "id IN (subquery … LIMIT … SKIP LOCKED)" the planner may run
        # the subquery more than once and claim more rows than the limit.
        query = (
            f"WITH batch AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED) "
            "UPDATE mailings_recipient SET status = 'sending', claim = %s, claimed_at = %s "
            "FROM batch WHERE mailings_recipient.id = batch.id "
            "AND mailings_recipient.status = 'queued' "
            "RETURNING mailings_recipient.id, customer_id, address, attempts"
        )
        params = [delivery_id, now, delivery_id, limit, token, now]
    else:
        # SQLite has one writer at a time, so the plain subquery is already exclusive.
        query = (
            "UPDATE mailings_recipient SET status = 'sending', claim = %s, claimed_at = %s "
            f"WHERE id IN ({due}) AND status = 'queued' "
            "RETURNING id, customer_id, address, attempts"
        )
        params = [token, now, delivery_id, now, delivery_id, limit]
    with connection.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    rows.sort()
    return [Claimed(*r) for r in rows]


def refresh_lease(token: str) -> None:
    Recipient.objects.filter(claim=token, status=Recipient.Status.SENDING).update(
        claimed_at=timezone.now()
    )


def write_outcomes(delivery_id: int, token: str, outcomes: list[Outcome]) -> None:
    """Record a batch's outcomes in one transaction, each only if the row still carries our
    claim (an operator may have resolved a reaped row in the meantime)."""
    if not outcomes:
        return
    rows = [
        (
            o.status,
            1 if o.tried else 0,
            _adapt(o.next_attempt_at),
            o.smtp_reply[:1000],
            o.error_kind,
            o.note[:500],
            o.message_id,
            _adapt(o.sent_at),
            o.id,
            token,
        )
        for o in outcomes
    ]
    with transaction.atomic():
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                # No wait for the WAL flush here (it is most of a batch's database time). Safe:
                # if the database crashes and loses this commit, the rows are still "sending"
                # from their claim — which does wait for the flush — and become "unknown",
                # never queued again. Only the claim must be durable before SMTP.
                cur.execute("SET LOCAL synchronous_commit TO OFF")
            cur.executemany(
                "UPDATE mailings_recipient SET status = %s, attempts = attempts + %s, "
                "next_attempt_at = %s, smtp_reply = %s, error_kind = %s, note = %s, "
                "message_id = %s, sent_at = %s WHERE id = %s AND claim = %s "
                "AND status IN ('sending', 'unknown')",
                rows,
            )
        Delivery.objects.filter(pk=delivery_id).update(last_activity_at=timezone.now())


def reap_expired(lease: float) -> int:
    """Rows left "sending" past their lease belong to a dead worker: they become "unknown"
    (the message may or may not have gone out) and are never resent automatically."""
    cutoff = timezone.now() - timedelta(seconds=lease)
    return Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff).update(
        status=Recipient.Status.UNKNOWN,
        note=_("The worker stopped while sending; the message may or may not have been sent."),
    )


def refresh_counts(delivery_id: int) -> None:
    """Recount sent / failed / unknown from the ledger (one indexed GROUP BY)."""
    by_status = dict(
        Recipient.objects.filter(delivery_id=delivery_id)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    Delivery.objects.filter(pk=delivery_id).update(
        sent_count=by_status.get("sent", 0),
        failed_count=by_status.get("failed", 0),
        unknown_count=by_status.get("unknown", 0),
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
    return True


def running_delivery_ids() -> list[int]:
    return list(
        Delivery.objects.filter(status=Delivery.Status.RUNNING)
        .order_by("id")
        .values_list("id", flat=True)
    )


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    def __init__(
        self,
        config: Config | None = None,
        urls: UrlBuilder = signing.url_for,
        connect: Callable[[smtp.RelaySettings], smtp.Connection] = smtp.Connection,
    ):
        self.config = config or Config()
        self.urls = urls
        self.connect = connect
        self.connections: dict[int, smtp.Connection] = {}
        self.prepared: dict[int, Prepared] = {}
        self.stopping = False
        self.worker_id = secrets.token_hex(6)
        self._batch_no = 0
        self._rotation = 0
        self._last_housekeeping = -1e9
        self._last_counts: dict[int, float] = {}
        self._sleep_budget = 0.0
        self._deferred: dict[str, int] = {}

    # -- loop ------------------------------------------------------------------------------

    def step(self) -> bool:
        """One iteration: housekeeping now and then, then one batch. True if work was found."""
        now = time.monotonic()
        if now - self._last_housekeeping >= min(self.config.lease / 4, 10.0):
            self._last_housekeeping = now
            self.housekeeping()
        return self.send_batch()

    def housekeeping(self) -> None:
        from okuru.mailings import actions

        reaped = reap_expired(self.config.lease)
        if reaped:
            log.warning("%d rows left sending by a dead worker are now unknown", reaped)
        actions.start_due_deliveries()

    def run(self, once: bool = False) -> None:
        try:
            while not self.stopping:
                found = self.step()
                if once and not found:
                    break
                if not found:
                    time.sleep(self.config.idle_sleep)
        finally:
            self.close()

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()

    # -- batches ---------------------------------------------------------------------------

    def send_batch(self, delivery: Delivery | int | None = None) -> bool:
        if delivery is not None:
            ids = [delivery if isinstance(delivery, int) else delivery.pk]
        else:
            ids = running_delivery_ids()
            for stale in set(self.prepared) - set(ids):
                del self.prepared[stale]
            if ids:  # take turns between running deliveries
                self._rotation = (self._rotation + 1) % len(ids)
                ids = ids[self._rotation :] + ids[: self._rotation]
        for delivery_id in ids:
            self._batch_no += 1
            token = f"{self.worker_id}.{self._batch_no}"
            rows = claim(delivery_id, token, self.config.batch_size)
            if rows:
                self.process(delivery_id, token, rows)
                return True
            if maybe_complete(delivery_id):
                self.prepared.pop(delivery_id, None)
        return False

    def process(self, delivery_id: int, token: str, rows: list[Claimed]) -> None:
        try:
            prepared = self.prepare(delivery_id)
        except Exception as e:  # misconfiguration: give the rows back, pause, tell the operator
            log.exception("cannot prepare delivery %s", delivery_id)
            write_outcomes(delivery_id, token, [Outcome(r.id, "queued", tried=False) for r in rows])
            from okuru.mailings import actions

            actions.pause_for_error(delivery_id, str(e))
            return
        customers = {
            c["id"]: c
            for c in Customer.objects.filter(id__in=[r.customer_id for r in rows]).values(
                *CUSTOMER_COLUMNS
            )
        }
        outcomes: list[Outcome] = []
        self._sleep_budget = self.config.max_rate_wait
        self._deferred = {}
        started = last_refresh = time.monotonic()
        relay_down = False
        for i, row in enumerate(rows):
            now = time.monotonic()
            if self.stopping or relay_down or now - started > self.config.batch_seconds:
                later = None
                if relay_down:
                    later = timezone.now() + timedelta(seconds=self.config.retry_base)
                outcomes += [Outcome(r.id, "queued", False, later) for r in rows[i:]]
                break
            if now - last_refresh > self.config.lease / 4:
                refresh_lease(token)
                last_refresh = now
            outcome = self.send_one(prepared, row, customers.get(row.customer_id))
            relay_down = outcome.relay_down
            outcomes.append(outcome)
        write_outcomes(delivery_id, token, outcomes)
        self._maybe_refresh_counts(delivery_id)

    def _maybe_refresh_counts(self, delivery_id: int) -> None:
        now = time.monotonic()
        if now - self._last_counts.get(delivery_id, -1e9) >= COUNTS_INTERVAL:
            self._last_counts[delivery_id] = now
            refresh_counts(delivery_id)

    # -- one message -----------------------------------------------------------------------

    def send_one(self, p: Prepared, row: Claimed, customer: dict[str, Any] | None) -> Outcome:
        if customer is None:
            return Outcome(row.id, "failed", note=_("The customer was deleted before sending."))
        try:
            domain = row.address.rsplit("@", 1)[1].lower()
            relay_wait, domain_wait = self._rate_wait(p, domain)
            if domain_wait > relay_wait:
                # A saturated domain must not hold up the others: sleep for it only within
                # the batch's budget, else give the row back, staggered by the domain's rate.
                extra = domain_wait - relay_wait
                if extra > self._sleep_budget:
                    self._deferred[domain] = k = self._deferred.get(domain, 0) + 1
                    delay = domain_wait + k * p.domains[domain].interval
                    later = timezone.now() + timedelta(seconds=delay)
                    return Outcome(row.id, "queued", tried=False, next_attempt_at=later)
                self._sleep_budget -= extra
            wait = max(relay_wait, domain_wait)
            if wait:
                time.sleep(wait)
            rendered = p.compiled.render(row.id, customer)
            envelope = p.builder.build(row.id, row.address, rendered, rendered.unsubscribe_url)
        except (BadAddress, IndexError):
            return Outcome(
                row.id,
                "failed",
                error_kind="bad_format",
                note=_("Not a valid e-mail address: %(address)s") % {"address": row.address},
            )
        except Exception as e:
            log.exception("cannot build message for ledger row %s", row.id)
            return Outcome(
                row.id,
                "unknown",
                note=_("Not sent: unexpected error while rendering: %(error)s") % {"error": e},
            )
        now = time.monotonic()
        p.relay_limit.take(now)
        if p.per_domain:
            p.domains[domain].take(now)
        return self.transmit(p, row, envelope)

    def _rate_wait(self, p: Prepared, domain: str) -> tuple[float, float]:
        """Seconds until the relay, and the recipient's domain, may take another message."""
        now = time.monotonic()
        if not p.per_domain:
            return p.relay_limit.wait(now), 0.0
        limiter = p.domains.get(domain)
        if limiter is None:
            if len(p.domains) > 10_000:  # keep memory flat on very wide deliveries
                p.domains.clear()
            limiter = p.domains[domain] = RateLimiter(p.per_domain)
        return p.relay_limit.wait(now), limiter.wait(now)

    def transmit(self, p: Prepared, row: Claimed, envelope: Any) -> Outcome:
        conn = self.connections.get(p.relay_key)
        if conn is None:
            conn = self.connections[p.relay_key] = self.connect(p.relay)
        try:
            reply = conn.send(envelope.sender, envelope.recipient, envelope.data)
        except smtp.ConnectFailed as e:
            outcome = self.retry(p, row, str(e))
            outcome.relay_down = outcome.status == "queued"
            return outcome
        except smtp.ConnectionLost as e:
            return self.retry(p, row, _("Connection lost: %(error)s") % {"error": e})
        except smtp.Indeterminate as e:
            return Outcome(
                row.id,
                "unknown",
                note=_(
                    "The connection was lost after the message was sent; it may have been "
                    "delivered: %(error)s"
                )
                % {"error": e},
            )
        except Exception as e:
            log.exception("unexpected error sending ledger row %s", row.id)
            conn.abort()
            return Outcome(
                row.id,
                "unknown",
                note=_("Unexpected error while sending: %(error)s") % {"error": e},
            )
        if reply.accepted:
            return Outcome(
                row.id,
                "sent",
                smtp_reply=str(reply),
                message_id=envelope.message_id,
                sent_at=timezone.now(),
            )
        if 500 <= reply.code < 600:
            kind = smtp.classify(reply.code, reply.text)
            return Outcome(row.id, "failed", smtp_reply=str(reply), error_kind=kind)
        return self.retry(p, row, str(reply), smtp_reply=str(reply))

    def retry(self, p: Prepared, row: Claimed, reason: str, smtp_reply: str = "") -> Outcome:
        """Back to the queue with exponential back-off, or failed once past the deadline."""
        cfg = self.config
        delay = min(cfg.retry_base * (2 ** min(row.attempts, 20)), cfg.retry_max)
        delay *= 1 + random.random() * 0.1  # spread retries of a batch apart
        when = timezone.now() + timedelta(seconds=delay)
        if when > p.deadline:
            note = _(
                "Gave up after %(n)s attempts: temporary failures until the retry deadline. "
                "Last: %(reason)s"
            ) % {"n": row.attempts + 1, "reason": reason}
            return Outcome(row.id, "failed", smtp_reply=smtp_reply, error_kind="other", note=note)
        return Outcome(
            row.id, "queued", next_attempt_at=when, smtp_reply=smtp_reply, note=reason[:500]
        )

    # -- per delivery ----------------------------------------------------------------------

    def prepare(self, delivery_id: int) -> Prepared:
        p = self.prepared.get(delivery_id)
        if p is not None:
            return p
        d = Delivery.objects.select_related("relay").get(pk=delivery_id)
        relay = d.relay or default_relay()
        relay_settings = smtp.RelaySettings(
            relay.host, relay.port, relay.security, relay.username, relay.password, relay.timeout
        )
        p = Prepared(
            delivery_id=delivery_id,
            compiled=CompiledMail(d.content, catalogue(), self.urls),
            builder=MessageBuilder(delivery_id, d.content),
            relay_key=relay.pk,
            relay=relay_settings,
            deadline=(d.started_at or timezone.now()) + timedelta(seconds=self.config.retry_window),
            urls=self.urls,
            relay_limit=self._relay_limiter(relay),
            per_domain=relay.per_domain_per_second,
        )
        self.prepared[delivery_id] = p
        return p

    def _relay_limiter(self, relay: Relay) -> RateLimiter:
        # One limiter per relay per worker process, shared by the deliveries using it.
        key = f"_relay_limiter_{relay.pk}"
        limiter = getattr(self, key, None)
        if limiter is None or limiter.interval != (
            1.0 / relay.max_per_second if relay.max_per_second else 0.0
        ):
            limiter = RateLimiter(relay.max_per_second)
            setattr(self, key, limiter)
        return limiter


def send_batch(delivery: Delivery | int | None = None, worker: Worker | None = None) -> bool:
    """One batch of ``delivery`` (or of any running delivery): True if work was found."""
    own = worker is None
    worker = worker or Worker()
    try:
        return worker.send_batch(delivery)
    finally:
        if own:
            worker.close()


STALL_SECONDS = 120.0


def reconcile(lease: float = Config.lease) -> list[int]:
    """Repair what lost or crashed tasks left behind; returns deliveries that need a kick.

    Idempotent: the database says what is left to do, so running it twice changes nothing."""
    from okuru.mailings import actions

    reap_expired(lease)
    kicks = actions.start_due_deliveries()
    quiet = timezone.now() - timedelta(seconds=STALL_SECONDS)
    for d in Delivery.objects.filter(status=Delivery.Status.RUNNING).only("id", "last_activity_at"):
        if d.last_activity_at and d.last_activity_at > quiet:
            continue
        due = Recipient.objects.filter(delivery_id=d.id, status=Recipient.Status.QUEUED).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
        )
        if due.exists():
            kicks.append(d.id)
        else:
            maybe_complete(d.id)
    return kicks
