"""Stopping a delivery: what was not sent ends "stopped" (not sent, a terminal and visible
state), what a worker has on the wire finishes, and the counts add up.

Against a real SMTP server (aiosmtpd in this process)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.mailings import actions, sending
from okuru.mailings.models import Delivery, Recipient
from okuru.mailings.testing import (
    Watched,
    drain,
    make_customers,
    make_mail,
    start,
)

pytestmark = pytest.mark.django_db

STOPPED_NOTE = "Not sent: the delivery was stopped by an operator."


def worker(before=None, **kw) -> sending.Worker:
    config = sending.Config(**{"batch_size": 50, "retry_base": 60, "idle_sleep": 0.01, **kw})
    if before is None:
        return sending.Worker(config)
    return sending.Worker(config, connect=lambda relay: Watched(relay, before))


def ledger(delivery) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in Recipient.objects.filter(delivery=delivery).values_list("status", flat=True):
        out[s] = out.get(s, 0) + 1
    return out


def adds_up(d: Delivery) -> bool:
    d.refresh_from_db()
    total = d.sent_count + d.failed_count + d.unknown_count + d.stopped_count
    return total + sum(d.excluded_at_send.values()) == d.recipient_count


def test_stop_ends_every_row_not_yet_sent_as_stopped_and_the_counts_add_up(sink, owner):
    make_customers(10)
    sink.handler.rules["user1@example.com"] = ["451 4.3.0 Try again later"]  # a retry pending
    sink.handler.rules["user2@example.com"] = ["drop-after-data"]  # unknown
    sink.handler.rules["user3@example.com"] = ["550 5.1.1 User unknown"]  # failed
    delivery = start(make_mail())
    w = worker(batch_size=5)
    assert w.step() is True
    assert ledger(delivery) == {"sent": 2, "queued": 6, "unknown": 1, "failed": 1}
    retry = Recipient.objects.get(delivery=delivery, address="user1@example.com")
    assert retry.next_attempt_at > timezone.now() + timedelta(seconds=30)

    actions.stop(delivery, owner)
    delivery.refresh_from_db()
    assert delivery.status == "stopped" and delivery.finished_at is not None
    assert ledger(delivery) == {"sent": 2, "stopped": 6, "unknown": 1, "failed": 1}
    retry.refresh_from_db()
    assert (retry.status, retry.note, retry.next_attempt_at) == ("stopped", STOPPED_NOTE, None)
    assert retry.smtp_reply == "451 4.3.0 Try again later"  # what the last attempt got
    assert (delivery.sent_count, delivery.failed_count, delivery.unknown_count) == (2, 1, 1)
    assert delivery.stopped_count == 6 and adds_up(delivery)
    log = OperationLog.objects.get(action="delivery.stop")
    assert log.operator == owner and log.detail == {"not_sent": 6}

    # Final: nothing more goes out, the unknown row cannot be sent again, nothing restarts it.
    assert w.step() is False
    assert sending.reconcile() == []
    with pytest.raises(ValidationError) as e:
        actions.resolve_unknown(delivery, None, resend=True)
    assert e.value.messages == ["This delivery is Stopped; its unknown rows cannot be sent again."]
    with pytest.raises(ValidationError) as e:
        actions.resume(delivery, None)
    assert e.value.messages == ["This delivery is Stopped; only a paused delivery can be resumed."]
    delivery.refresh_from_db()
    assert delivery.status == "stopped" and sink.received.total() == 3


def test_a_paused_delivery_can_be_stopped(sink):
    make_customers(6)
    delivery = start(make_mail())
    actions.pause(delivery, None)
    actions.stop(delivery, None)
    assert ledger(delivery) == {"stopped": 6}
    assert adds_up(delivery) and sink.received.total() == 0


def test_a_worker_mid_batch_finishes_its_group_and_sends_nothing_more(sink):
    make_customers(40)
    # The 7th message meets a temporary failure while the operator presses stop: its retry
    # will never happen, so it ends "stopped" too.
    sink.handler.rules["user6@example.com"] = ["451 4.3.0 Try again later"]
    delivery = start(make_mail())
    count = 0

    def stop_at_the_7th(recipient: str) -> None:
        nonlocal count
        count += 1
        if count == 7:
            actions.stop(Delivery.objects.get(pk=delivery.pk), None)

    w = worker(stop_at_the_7th, group_size=5, flush_interval=60)
    assert w.step() is True
    w.close()
    # Groups of 1, 5, 5: the stop came during the third (messages 7 to 11), which finishes.
    assert sink.received.total() == 10
    assert ledger(delivery) == {"sent": 10, "stopped": 30}
    row = Recipient.objects.get(delivery=delivery, address="user6@example.com")
    assert (row.status, row.attempts, row.note) == ("stopped", 1, STOPPED_NOTE)
    assert not Recipient.objects.filter(delivery=delivery, status="queued").exists()
    assert adds_up(delivery)


def test_a_worker_sends_nothing_more_once_the_delivery_is_paused(sink):
    make_customers(30)
    delivery = start(make_mail())
    count = 0

    def pause_at_the_3rd(recipient: str) -> None:
        nonlocal count
        count += 1
        if count == 3:
            actions.pause(Delivery.objects.get(pk=delivery.pk), None)

    w = worker(pause_at_the_3rd, group_size=5, flush_interval=60)
    assert w.step() is True
    # Groups of 1, 5: the pause came during the second, which finishes; the rest waits.
    assert sink.received.total() == 6
    assert ledger(delivery) == {"sent": 6, "queued": 24}
    queued = Recipient.objects.filter(delivery=delivery, status="queued")
    assert not queued.filter(next_attempt_at__isnull=False).exists()  # due as soon as resumed
    actions.resume(delivery, None)
    drain(w, delivery)
    w.close()
    assert ledger(delivery) == {"sent": 30} and max(sink.received.values()) == 1
