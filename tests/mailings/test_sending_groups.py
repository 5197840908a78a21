"""Outcomes are recorded a group at a time, so a crash leaves at most one group "unknown".

The worker runs in this process against a real SMTP server (aiosmtpd); a connection wrapper
looks at the ledger just before each message goes out, or crashes the worker there. The
kill -9 test with real worker processes is in ``test_sending_crash.py``."""

from __future__ import annotations

import time

import pytest

from okuru.mailings import ledger as store
from okuru.mailings import sending
from okuru.mailings.ledger import reap_expired
from okuru.mailings.models import Recipient, Relay
from okuru.mailings.testing import (
    Watched,
    drain,
    make_customers,
    make_mail,
    start,
)

pytestmark = pytest.mark.django_db


class Crash(BaseException):
    """Stands in for kill -9: nothing in the worker catches it."""


def worker(before, **kw) -> sending.Worker:
    config = sending.Config(**{"batch_size": 50, "retry_base": 0.01, "idle_sleep": 0.01, **kw})
    return sending.Worker(config, connect=lambda relay: Watched(relay, before))


def ledger(delivery) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in Recipient.objects.filter(delivery=delivery).values_list("status", flat=True):
        out[s] = out.get(s, 0) + 1
    return out


def test_outcomes_reach_the_ledger_a_group_at_a_time(sink):
    make_customers(60)
    delivery = start(make_mail())
    seen: list[tuple[int, int]] = []  # (rows sending, messages received but not recorded)

    def look(recipient: str) -> None:
        now = ledger(delivery)
        seen.append((now.get("sending", 0), sink.received.total() - now.get("sent", 0)))

    w = worker(look, group_size=5, flush_interval=60)
    drain(w, delivery)
    w.close()
    assert ledger(delivery) == {"sent": 60} and sink.received.total() == 60
    assert max(sending for sending, _lag in seen) == 5
    # Everything that went out before the current group is already recorded as sent.
    assert max(lag for _sending, lag in seen) <= 4


def test_a_slow_relay_gets_smaller_groups(sink):
    Relay.objects.update(max_per_second=20)  # 50 ms a message
    make_customers(12)
    delivery = start(make_mail())
    sending_seen: list[int] = []
    w = worker(
        lambda r: sending_seen.append(ledger(delivery).get("sending", 0)), flush_interval=0.15
    )
    drain(w, delivery)
    w.close()
    assert ledger(delivery) == {"sent": 12}
    # 0.15 s of sending at 20 messages/s is 3; a loaded machine sends slower, so fewer.
    assert 1 <= max(sending_seen) <= 3


def test_a_crash_mid_group_leaves_only_that_group_unknown_and_the_rest_is_sent_once(sink):
    make_customers(80)
    delivery = start(make_mail())
    count = 0

    def crash_at_the_33rd(recipient: str) -> None:
        nonlocal count
        count += 1
        if count == 33:
            raise Crash

    w = worker(crash_at_the_33rd, group_size=8, flush_interval=60, lease=0.3)
    with pytest.raises(Crash):
        drain(w, delivery)
    w.connections.clear()  # the "dead" worker's socket goes with it
    # Groups of 1, 8, 8, 8, 8: the crash hit the fifth group (messages 26 to 33) before its
    # last message. Its 8 rows are "sending" (7 of them went out); the 25 before are recorded.
    at_crash = ledger(delivery)
    assert at_crash == {"sent": 25, "sending": 8, "queued": 47}
    assert sink.received.total() == 32
    # The rest of the batch was only leased: it stays queued and comes back when the lease ends.
    in_flight = 8
    time.sleep(0.35)
    assert reap_expired(lease=0.3) == in_flight
    survivor = worker(lambda r: None)
    drain(survivor, delivery)
    survivor.close()
    after = ledger(delivery)
    assert after == {"sent": 80 - in_flight, "unknown": in_flight}
    # Every sent row got exactly one message; an unknown row at most one (it was in flight).
    sent = set(
        Recipient.objects.filter(delivery=delivery, status="sent").values_list("address", flat=True)
    )
    assert all(sink.received[a] == 1 for a in sent)
    assert max(sink.received.values()) == 1
    assert sink.received.total() == 32 + 47


def test_a_flush_that_loses_a_deadlock_is_done_again(sink, monkeypatch):
    from django.db import OperationalError

    make_customers(10)
    delivery = start(make_mail())
    real = store.flush
    failures = []

    def loses_once(delivery_id, token, outcomes, *args):
        if not failures and any(o.status == "sent" for o in outcomes):
            failures.append(len(outcomes))  # rolled back whole: as if nothing happened
            raise OperationalError("deadlock detected")
        return real(delivery_id, token, outcomes, *args)

    monkeypatch.setattr(store, "flush", loses_once)
    w = worker(lambda r: None)
    drain(w, delivery)
    w.close()
    assert failures and ledger(delivery) == {"sent": 10}
    assert sink.received.total() == 10 and max(sink.received.values()) == 1
