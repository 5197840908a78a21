"""The sending worker: lease ledger rows, screen them, render, push over SMTP, record outcomes.

Every row goes queued → sending → sent / failed / unknown (or back to queued for a retry), or
queued → excluded when an exclusion applies at send time, or queued → stopped when an operator
stops the delivery:

* **Lease.** A batch of due queued rows is leased to this worker (``ledger.claim``).
* **Screen.** The batch's customers are read once, and the exclusions are applied again
  against their current state (deleted, no address, refusal flag, unsubscribed from the mail's
  topic, list cleaning, error count at the threshold): such a row becomes "excluded" with its
  reason in ``exclusion`` and is never sent, whatever happened since the ledger was frozen.
* **Groups.** The rest go out in small groups. One transaction (a *flush*) records the
  outcomes of the previous group, adds the error counts of its permanent failures to the
  customers, reads the delivery's status and moves the next group to "sending" — committed,
  and on PostgreSQL durable, *before* any SMTP traffic for it. So at any moment at most one
  group is "sending": that is everything a crash can leave "unknown". A group holds at most
  ``group_size`` rows and about ``flush_interval`` seconds of sending (it shrinks on a slow or
  rate-limited relay), so outcomes reach the ledger within a fraction of a second.
* **Send.** Templates are compiled once per delivery (``Prepared``); one persistent SMTP
  connection per relay; rate limits per relay and per recipient domain (a row whose domain is
  saturated for longer than ``max_rate_wait`` goes back to the queue for later, unchanged).
  A group is rendered first (``stage``), then sent in order (``deliver``): the DKIM signatures
  of the messages rendered are meanwhile computed by a child process on another core
  (``okuru.lib.dkim_process``), so signing costs the worker little more than it hands over.
* **Outcomes** are written by the flush (``ledger.flush``).

Failure classes (after GNU Mailman):

* 2xx → sent (Message-ID, time, reply).
* 5xx → failed, with the error kind from the reply and enhanced status code; the customer's
  error count for the address used (``email_error_count`` or ``mobile_error_count`` after
  ``Mail.address_field``) goes up by 99 for a hard kind and 1 for a soft one — only while the
  customer still has that address. An address that fails our own syntax check counts as a
  hard ``bad_format`` too; giving up after temporary failures does not count (the relay may be
  the one at fault).
* 4xx, a connection lost before the end of DATA, a timeout → queued again with attempts + 1
  and an exponential back-off, until the retry deadline (delivery start + ``retry_window``),
  then failed ("other") with the reason.
* The relay cannot work with its settings (certificate fails verification, no STARTTLS or
  AUTH, user name or password refused) → the rows go back to the queue untouched and the
  delivery is paused with the reason: retrying cannot help, the operator must fix the relay.
* The template fails for the row's data or goes over the render budget (``rendering.Budget``:
  size, loop and time limits per message) → failed ("other") with the reason in the note, no
  error count: nothing was sent, and the row's render never holds the worker longer than the
  budget.
* The sender domain's DKIM key cannot sign → failed ("other") with the reason, no error count:
  a message that should be signed never goes out unsigned.
* Connection lost *after* the end of DATA, or any unexpected error → "unknown" with a note: the
  message may have gone out, so only an operator may send it again (``actions.resolve_unknown``).
  Nothing raises out of a batch, so a bad row can never crash-loop the worker.
* A worker killed mid-group leaves that group "sending"; when its lease runs out any worker
  turns those rows "unknown" (``ledger.reap_expired``). A batch never runs longer than
  ``batch_seconds`` (plus one SMTP timeout), far inside the lease, so a lease only runs out on
  a dead worker.
* A flush that finds the delivery paused or stopped sends nothing more: the batch's rows go
  back to the queue, or — stopped — end "stopped" (``actions.stop`` does the same to every
  queued row; a flush locks the delivery row before any ledger row, as ``stop`` does, so the
  two cannot interleave).

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

from django.db import OperationalError
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.bounces import actions as bounce_actions
from okuru.bounces import replies
from okuru.bounces.kinds import error_weight
from okuru.customers.fields import catalogue
from okuru.customers.models import Customer
from okuru.lib import signing, smtp
from okuru.lib.dkim_process import SigningProcess, Ticket
from okuru.mailings import ledger, relays
from okuru.mailings.dkim_keys import signer_for
from okuru.mailings.ledger import Claimed, Flushed, Outcome
from okuru.mailings.messages import BadAddress, Draft, Envelope, MessageBuilder
from okuru.mailings.models import Delivery, Exclusion, Recipient, Relay
from okuru.mailings.rendering import CompiledMail, RenderError, UrlBuilder

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
TOUCH_INTERVAL = 5.0  # seconds between updates of Delivery.last_activity_at
FLUSH_ATTEMPTS = 3


@dataclass
class Config:
    batch_size: int = 200  # rows leased at once (their customers are read in one query)
    group_size: int = 20  # at most this many rows "sending" at once: what a crash leaves unknown
    flush_interval: float = 0.15  # seconds: groups shrink so outcomes are recorded this often
    lease: float = ledger.LEASE  # seconds a lease or a "sending" row stays valid
    batch_seconds: float = 20.0  # a batch gives back what it has not sent after this long
    retry_base: float = 60.0
    retry_max: float = 3600.0
    retry_window: float = 24 * 3600.0
    max_rate_wait: float = 2.0  # per batch, sleeping for saturated recipient domains
    idle_sleep: float = 1.0
    # DKIM private-key operations in a child process (``okuru.lib.dkim_process``), on another
    # core while the worker renders and sends; False: in the worker itself.
    signing_process: bool = True


def give_back(row_id: int, later: datetime | None = None, note: str | None = None) -> Outcome:
    """Back to the queue as it was (not an attempt), due now or ``later``."""
    return Outcome(
        row_id, "queued", tried=False, next_attempt_at=later, smtp_reply=None, error_kind=None,
        note=note,
    )  # fmt: skip


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
    address_field: str = "email"
    topic_key: str = ""
    error_threshold: int = 5
    domains: dict[str, RateLimiter] = field(default_factory=dict)
    per_message: float = 0.0  # seconds a message takes, moving average (0: not known yet)
    last_touch: float = -1e9

    @property
    def error_field(self) -> str:
        return "mobile_error_count" if self.address_field == "mobile_email" else "email_error_count"

    def group_size(self, config: Config) -> int:
        """Rows for the next group: about ``flush_interval`` of sending, at most ``group_size``
        (one while the speed of the relay is not known yet). A relay's rate limit caps it from
        the start: the first messages go out before any waiting shows in the average."""
        if not self.per_message:
            return 1
        seconds = max(self.per_message, self.relay_limit.interval)
        return max(1, min(config.group_size, int(config.flush_interval / seconds + 1e-6)))

    def observe(self, messages: int, seconds: float) -> None:
        if messages:
            sample = seconds / messages
            self.per_message = (
                sample if not self.per_message else 0.7 * self.per_message + 0.3 * sample
            )


@dataclass
class Staged:
    """A rendered message waiting for its turn, its signatures under way (``Worker.stage``)."""

    draft: Draft
    signatures: Ticket | None

    def envelope(self) -> Envelope:
        return self.draft.envelope(self.signatures.result() if self.signatures else "")


# ---------------------------------------------------------------------------------------------
# Exclusions at send time, and what the operator is told


def exclusion(p: Prepared, row: Claimed, customer: dict[str, Any] | None, cleaned: set[str]) -> str:
    """The first reason ``row`` may not be sent now, in the order of ``targeting.reason_sql``
    ("" when it may). ``cleaned``: the batch's addresses that are in the list cleaning."""
    if customer is None:
        return Exclusion.DELETED
    if not (customer[p.address_field] or "").strip():
        return Exclusion.NO_ADDRESS
    if customer["refused"]:
        return Exclusion.REFUSED
    if p.topic_key and p.topic_key in (customer["unsubscribed"] or ()):
        return Exclusion.UNSUBSCRIBED
    if row.address.strip().lower() in cleaned:
        return Exclusion.LIST_CLEANING
    if (customer[p.error_field] or 0) >= p.error_threshold:
        return Exclusion.ERROR_COUNT
    return ""


def exclusion_note(reason: str) -> str:
    notes = {
        Exclusion.DELETED: _("Not sent: the customer was deleted after the delivery started."),
        Exclusion.NO_ADDRESS: _("Not sent: the customer no longer has an address."),
        Exclusion.REFUSED: _("Not sent: the customer refuses all mail (refusal flag)."),
        Exclusion.UNSUBSCRIBED: _("Not sent: the customer unsubscribed from this mail's topic."),
        Exclusion.LIST_CLEANING: _("Not sent: the address is excluded by list cleaning."),
        Exclusion.ERROR_COUNT: _(
            "Not sent: the address's error count reached the mail's threshold."
        ),
    }
    return notes[reason]


def list_cleaning_failure(row: Claimed) -> Outcome:
    """An address in list cleaning is not an exclusion like the others but a delivery error of
    its own kind (配信リストクリーニング機能による除外): it counts in the report's errors and adds
    +99 to the address's error count, so the record says why it was not mailed. No attempt."""
    return Outcome(
        row.id,
        "failed",
        tried=False,
        smtp_reply=None,
        error_kind="list_cleaning",
        note=exclusion_note(Exclusion.LIST_CLEANING),
        error_weight=error_weight("list_cleaning"),
        customer_id=row.customer_id,
        address=row.address,
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
        self._signing: SigningProcess | None = None

    # -- loop ------------------------------------------------------------------------------

    def step(self) -> bool:
        """One iteration: housekeeping now and then, then one batch. True if work was found."""
        now = time.monotonic()
        if now - self._last_housekeeping >= min(self.config.lease / 4, 10.0):
            self._last_housekeeping = now
            self.housekeeping()
        return self.send_batch()

    def housekeeping(self) -> None:
        reaped = ledger.reap_expired(self.config.lease)
        if reaped:
            log.warning("%d rows left sending by a dead worker are now unknown", reaped)
        ledger.start_due_deliveries()

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
        if self._signing is not None:
            self._signing.close()
            self._signing = None
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()

    # -- batches ---------------------------------------------------------------------------

    def send_batch(self, delivery: Delivery | int | None = None) -> bool:
        if delivery is not None:
            ids = [delivery if isinstance(delivery, int) else delivery.pk]
        else:
            ids = ledger.running_delivery_ids()
            for stale in set(self.prepared) - set(ids):
                del self.prepared[stale]
            if ids:  # take turns between running deliveries
                self._rotation = (self._rotation + 1) % len(ids)
                ids = ids[self._rotation :] + ids[: self._rotation]
        for delivery_id in ids:
            self._batch_no += 1
            token = f"{self.worker_id}.{self._batch_no}"
            rows = ledger.claim(delivery_id, token, self.config.batch_size, self.config.lease)
            if rows:
                self.process(delivery_id, token, rows)
                return True
            if ledger.maybe_complete(delivery_id):
                self.prepared.pop(delivery_id, None)
        return False

    def process(self, delivery_id: int, token: str, rows: list[Claimed]) -> None:
        """Send a leased batch in groups, each group marked "sending" by the flush that records
        the outcomes of the one before (see the module docstring)."""
        try:
            p = self.prepare(delivery_id)
        except Exception as e:  # misconfiguration: give the rows back, pause, tell the operator
            log.exception("cannot prepare delivery %s", delivery_id)
            ledger.write_outcomes(delivery_id, token, [give_back(r.id) for r in rows])
            ledger.pause_for_error(delivery_id, str(e))
            return
        pending, todo = self.screen(p, rows)
        self._sleep_budget = self.config.max_rate_wait
        self._deferred = {}
        started = time.monotonic()
        later: datetime | None = None  # when given-back rows are due (relay down: not now)
        pause_reason = ""
        i = 0
        while i < len(todo) and not (self.stopping or later or pause_reason):
            if time.monotonic() - started > self.config.batch_seconds:
                break
            group = todo[i : i + p.group_size(self.config)]
            flushed = self._flush(p, token, pending, [row.id for row, _c in group])
            pending = []
            if flushed.status != Delivery.Status.RUNNING:
                break  # paused or stopped: the flush put what it could not send back
            t0, done = time.monotonic(), 0
            # The whole group is rendered first, its DKIM signatures computed by other threads
            # meanwhile; then sent in order (``stage``, ``deliver``).
            staged = [
                (row, self.stage(p, row, customer))
                for row, customer in group
                if row.id in flushed.marked  # else no longer ours (stopped, or lease lapsed)
            ]
            for row, ready in staged:
                if (
                    self.stopping
                    or later
                    or pause_reason
                    or (time.monotonic() - started > self.config.batch_seconds)
                ):
                    pending.append(give_back(row.id, later))
                    continue
                outcome = ready if isinstance(ready, Outcome) else self.deliver(p, row, ready)
                pending.append(outcome)
                done += 1
                if outcome.relay_down:
                    later = timezone.now() + timedelta(seconds=self.config.retry_base)
                pause_reason = pause_reason or outcome.pause_reason
            p.observe(done, time.monotonic() - t0)
            i += len(group)
        pending += [give_back(row.id, later) for row, _c in todo[i:]]
        self._flush(p, token, pending, [])
        if pause_reason:
            self.pause(delivery_id, p, pause_reason)
        self._maybe_refresh_counts(delivery_id)

    def _flush(self, p: Prepared, token: str, outcomes: list[Outcome], mark: list[int]) -> Flushed:
        for o in outcomes:
            bounce_actions.note_hard_failure(o.address, o.error_kind or "")
        now = time.monotonic()
        touch = now - p.last_touch >= TOUCH_INTERVAL
        if touch:
            p.last_touch = now
        for attempt in range(FLUSH_ATTEMPTS):
            try:
                return ledger.flush(p.delivery_id, token, outcomes, mark, p.address_field, touch)
            except OperationalError:
                # A deadlock with another writer of the same customers (PostgreSQL picks a
                # victim) or a lock held past SQLite's busy timeout: the transaction rolled
                # back whole, so doing it again is safe. Losing it would leave a group unknown.
                if attempt == FLUSH_ATTEMPTS - 1:
                    raise
                log.warning("flush of delivery %s failed, trying again", p.delivery_id)
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def screen(
        self, p: Prepared, rows: list[Claimed]
    ) -> tuple[list[Outcome], list[tuple[Claimed, dict[str, Any]]]]:
        """Apply the exclusions again, to the customers as they are now: (outcomes of the rows
        excluded, the rows to send with their customer)."""
        customers = {
            c["id"]: c
            for c in Customer.objects.filter(id__in=[r.customer_id for r in rows]).values(
                *CUSTOMER_COLUMNS
            )
        }
        cleaned = bounce_actions.cleaned(r.address for r in rows)
        excluded, todo = [], []
        for row in rows:
            customer = customers.get(row.customer_id)
            reason = exclusion(p, row, customer, cleaned)
            if reason == Exclusion.LIST_CLEANING:
                excluded.append(list_cleaning_failure(row))
            elif reason:
                note = exclusion_note(reason)
                excluded.append(
                    Outcome(row.id, "excluded", False, smtp_reply=None, exclusion=reason, note=note)
                )  # smtp_reply None: a retried row keeps its last attempt's reply
            else:
                todo.append((row, customer))
        return excluded, todo

    def pause(self, delivery_id: int, p: Prepared, reason: str) -> None:
        """The relay's settings cannot work: pause with the reason, and forget the settings so
        that the delivery picks up the corrected relay when it is resumed."""
        ledger.pause_for_error(delivery_id, reason)
        self.prepared.pop(delivery_id, None)
        conn = self.connections.pop(p.relay_key, None)
        if conn is not None:
            conn.abort()

    def _maybe_refresh_counts(self, delivery_id: int) -> None:
        now = time.monotonic()
        if now - self._last_counts.get(delivery_id, -1e9) >= COUNTS_INTERVAL:
            self._last_counts[delivery_id] = now
            ledger.refresh_counts(delivery_id)

    # -- one message -----------------------------------------------------------------------

    def stage(self, p: Prepared, row: Claimed, customer: dict[str, Any]) -> Outcome | Staged:
        """Render ``row``'s message and start its signatures; or its outcome when it cannot be
        built (nothing sent)."""
        try:
            rendered = p.compiled.render(row.id, customer)
            draft = p.builder.draft(row.id, row.address, rendered, rendered.unsubscribe_url)
        except RenderError as e:
            # The template fails for this recipient's data, or costs more than a render may:
            # nothing was sent, and sending again would fail the same way. Not the address's
            # fault, so no error count.
            return Outcome(
                row.id,
                "failed",
                error_kind="other",
                note=_("Not sent: %(error)s") % {"error": e.message},
            )
        except BadAddress:
            return Outcome(
                row.id,
                "failed",
                error_kind="bad_format",
                note=_("Not a valid e-mail address: %(address)s") % {"address": row.address},
                error_weight=error_weight("bad_format"),
                customer_id=row.customer_id,
                address=row.address,
            )
        except Exception as e:
            log.exception("cannot build message for ledger row %s", row.id)
            return Outcome(
                row.id,
                "unknown",
                note=_("Not sent: unexpected error while rendering: %(error)s") % {"error": e},
            )
        signer = p.builder.signer
        if signer is None:
            return Staged(draft, None)
        unsigned = signer.prepare(draft.headers, draft.body)
        if self._signing is None:
            self._signing = SigningProcess(enabled=self.config.signing_process)
        return Staged(draft, self._signing.submit(unsigned))

    def deliver(self, p: Prepared, row: Claimed, staged: Staged) -> Outcome:
        """Wait for the rate limits, then send a staged message."""
        domain = staged.draft.recipient.rsplit("@", 1)[1].lower()  # checked by the draft
        relay_wait, domain_wait = self._rate_wait(p, domain)
        if domain_wait > relay_wait:
            # A saturated domain must not hold up the others: sleep for it only within the
            # batch's budget, else give the row back, staggered by the domain's rate.
            extra = domain_wait - relay_wait
            if extra > self._sleep_budget:
                self._deferred[domain] = k = self._deferred.get(domain, 0) + 1
                delay = domain_wait + k * p.domains[domain].interval
                return give_back(row.id, timezone.now() + timedelta(seconds=delay))
            self._sleep_budget -= extra
        try:
            envelope = staged.envelope()
        except Exception as e:  # the key cannot sign: nothing went out, and never unsigned
            log.exception("cannot sign message for ledger row %s", row.id)
            return Outcome(
                row.id,
                "failed",
                error_kind="other",
                note=_("Not sent: unexpected error while signing: %(error)s") % {"error": e},
            )
        wait = max(relay_wait, domain_wait)
        if wait:
            time.sleep(wait)
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
        if conn is None or conn.relay != p.relay:  # new, or the relay's settings changed
            if conn is not None:
                conn.close()
            conn = self.connections[p.relay_key] = self.connect(p.relay)
        try:
            reply = conn.send(envelope.sender, envelope.recipient, envelope.data)
        except smtp.RelayRejected as e:
            outcome = give_back(row.id, note=relays.relay_problem(e))
            outcome.pause_reason = outcome.note or ""
            return outcome
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
        domain = row.address.rsplit("@", 1)[-1].lower()
        verdict = replies.classify(reply.code, reply.status, reply.text, reply.command, domain)
        if verdict.permanent:
            return Outcome(
                row.id,
                "failed",
                smtp_reply=str(reply),
                error_kind=verdict.kind,
                error_weight=verdict.weight,
                customer_id=row.customer_id,
                address=row.address,
            )
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
        relay = d.relay or relays.default_relay()
        relay_settings = relay.smtp_settings()
        targeting = d.targeting or {}
        p = Prepared(
            delivery_id=delivery_id,
            compiled=CompiledMail(d.content, catalogue(), self.urls),
            builder=MessageBuilder(delivery_id, d.content, signer_for(d.content["from_address"])),
            relay_key=relay.pk,
            relay=relay_settings,
            deadline=(d.started_at or timezone.now()) + timedelta(seconds=self.config.retry_window),
            urls=self.urls,
            relay_limit=self._relay_limiter(relay),
            per_domain=relay.per_domain_per_second,
            address_field=targeting.get("address_field") or "email",
            topic_key=targeting.get("topic_key") or "",
            error_threshold=int(targeting.get("error_threshold") or 5),
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
    ledger.reap_expired(lease)
    kicks = ledger.start_due_deliveries()
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
            ledger.maybe_complete(d.id)
    return kicks
