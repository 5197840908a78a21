"""The sending worker against a real SMTP server (aiosmtpd in this process)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from okuru.accounts.models import OperationLog
from okuru.bounces import verp
from okuru.customers.models import Customer, Field
from okuru.lib import smtp
from okuru.mailings import actions, ledger, sending
from okuru.mailings.models import Delivery, ListCleaning, Recipient
from okuru.mailings.testing import (
    Sink,
    drain,
    free_port,
    make_customers,
    make_mail,
    make_relay,
    start,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    # Messages are asserted in English; the default language is Japanese.
    with translation.override("en"):
        yield


FAST = dict(batch_size=20, retry_base=0.01, retry_max=0.05, idle_sleep=0.01)


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def sink(request):
    with Sink(pipelining=request.param) as s:
        make_relay(s.port)
        yield s


def worker(**kw) -> sending.Worker:
    return sending.Worker(sending.Config(**{**FAST, **kw}))


def statuses(delivery) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in Recipient.objects.filter(delivery=delivery).values_list("status", flat=True):
        out[s] = out.get(s, 0) + 1
    return out


def test_it_sends_every_recipient_exactly_once(sink):
    make_customers(50)
    delivery = start(make_mail())
    w = worker()
    drain(w, delivery)
    w.close()
    delivery.refresh_from_db()
    assert delivery.status == "completed" and delivery.finished_at is not None
    assert delivery.sent_count == 50 and delivery.failed_count == 0
    assert len(sink.received) == 50 and set(sink.received.values()) == {1}
    row = Recipient.objects.filter(delivery=delivery).order_by("id").first()
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert row.smtp_reply == "250 2.0.0 OK queued"
    sent = [m for m in sink.handler.messages if m[1] == row.address][0]
    assert sent[0] == verp.address(delivery.pk, row.pk, "bounce.shop.example")
    assert verp.read(sent[0]) == verp.Verp(delivery.pk, row.pk, signed=True)
    msg = sink.handler.parsed([m[1] for m in sink.handler.messages].index(row.address))
    assert msg["Message-ID"] == row.message_id
    assert msg["Subject"] == f"Hello {row.customer_id}"


def test_temporary_failures_and_dropped_connections_are_retried_until_delivered_once(sink):
    make_customers(40)
    rules = sink.handler.rules
    for i in range(0, 40, 4):
        rules[f"user{i}@example.com"] = ["451 4.3.0 Try again later", "421 4.7.0 Busy"]
    for i in range(1, 40, 4):
        rules[f"user{i}@example.com"] = ["drop"]
    rules["user2@example.com"] = ["drop", "452 4.2.2 Over quota for now", "drop"]
    delivery = start(make_mail())
    drain(worker(), delivery)
    delivery.refresh_from_db()
    assert statuses(delivery) == {"sent": 40}
    assert len(sink.received) == 40 and set(sink.received.values()) == {1}
    assert Recipient.objects.get(delivery=delivery, address="user0@example.com").attempts == 3
    assert Recipient.objects.get(delivery=delivery, address="user2@example.com").attempts == 4


@pytest.mark.parametrize(
    "reply,kind",
    [
        ("550 5.1.1 <x>: Recipient address rejected: User unknown", "unknown_user"),
        ("550 5.1.2 Host unknown: no such domain", "no_domain"),
        ("552 5.2.2 Mailbox full", "mailbox_full"),
        ("550 5.7.1 Message rejected as spam", "spam"),
        ("550 5.7.1 Relaying denied", "refused"),
        ("553 5.1.3 Bad recipient address syntax", "bad_format"),
        ("554 5.3.4 Message too big for system", "other"),
        ("550 Requested action not taken: mailbox unavailable", "unknown_user"),
    ],
)
def test_permanent_failures_are_failed_with_their_kind(sink, reply, kind):
    Customer.objects.create(email="x@example.com")
    sink.handler.rules["x@example.com"] = [reply]
    delivery = start(make_mail())
    drain(worker(), delivery)
    row = Recipient.objects.get(delivery=delivery)
    assert (row.status, row.error_kind, row.smtp_reply) == ("failed", kind, reply)
    assert row.attempts == 1
    assert sink.received["x@example.com"] == 0


@pytest.mark.parametrize(
    "reply,kind,errors",
    [
        # A filter refusing the message after DATA says nothing against the address...
        ("550 Requested action not taken: mailbox unavailable", "refused", 1),
        # ...unless the status code itself names the mailbox.
        ("550 5.1.1 No such user", "unknown_user", 99),
        ("554 5.7.1 Message rejected as spam", "spam", 1),
    ],
)
def test_a_refusal_after_the_message_is_classified_as_an_answer_to_data(sink, reply, kind, errors):
    customer = Customer.objects.create(email="x@example.com")
    sink.handler.rules["x@example.com"] = [f"data:{reply}"]
    delivery = start(make_mail())
    drain(worker(), delivery)
    row = Recipient.objects.get(delivery=delivery)
    assert (row.status, row.error_kind, row.smtp_reply) == ("failed", kind, reply)
    customer.refresh_from_db()
    assert customer.email_error_count == errors
    assert ListCleaning.objects.filter(address="x@example.com").exists() == (errors == 99)


def test_the_reply_says_which_command_it_answered(sink):
    conn = smtp.Connection(smtp.RelaySettings("127.0.0.1", sink.port, timeout=5))
    sink.handler.rules["late@x.example"] = ["data:554 5.7.1 Rejected by policy"]
    reply = conn.send("a@b.example", "late@x.example", b"Subject: x\r\n\r\nhi\r\n")
    assert (reply.code, reply.status, reply.command) == (554, "5.7.1", "DATA")
    accepted = conn.send("a@b.example", "ok@x.example", b"Subject: x\r\n\r\nhi\r\n")
    assert (accepted.accepted, accepted.command) == (True, "DATA")
    conn.close()


def test_a_connection_lost_after_the_data_leaves_the_row_unknown(sink):
    make_customers(5)
    sink.handler.rules["user3@example.com"] = ["drop-after-data"]
    delivery = start(make_mail())
    drain(worker(), delivery)
    delivery.refresh_from_db()
    # The server had the message when the connection went: never resent on our own.
    assert delivery.status == "completed" and delivery.unknown_count == 1
    row = Recipient.objects.get(delivery=delivery, address="user3@example.com")
    assert row.status == "unknown"
    assert row.note.startswith("The connection was lost after the message was sent")
    assert sink.received["user3@example.com"] == 1

    n = actions.resolve_unknown(delivery, None, resend=True)
    assert n == 1 and delivery.status == "running"
    drain(worker(), delivery)
    row.refresh_from_db()
    assert row.status == "sent" and sink.received["user3@example.com"] == 2
    assert OperationLog.objects.filter(action="delivery.resolve_unknown").count() == 1


def test_an_operator_may_leave_unknown_rows_unsent(sink):
    Customer.objects.create(email="x@example.com")
    sink.handler.rules["x@example.com"] = ["drop-after-data"]
    delivery = start(make_mail())
    drain(worker(), delivery)
    assert actions.resolve_unknown(delivery, None, resend=False) == 1
    row = Recipient.objects.get(delivery=delivery)
    assert row.status == "unknown" and row.note == "Not sent again: an operator decided so."
    assert delivery.status == "completed"


def test_temporary_failures_give_up_at_the_deadline(sink):
    Customer.objects.create(email="x@example.com")
    sink.handler.rules["x@example.com"] = ["451 4.3.0 Try again later"] * 10
    delivery = start(make_mail())
    drain(worker(retry_window=0), delivery)
    row = Recipient.objects.get(delivery=delivery)
    assert (row.status, row.error_kind) == ("failed", "other")
    assert row.note == (
        "Gave up after 1 attempts: temporary failures until the retry deadline. "
        "Last: 451 4.3.0 Try again later"
    )


def test_an_unreachable_relay_puts_the_batch_back_for_later(db):
    make_relay(free_port())  # nothing listens there
    make_customers(5)
    delivery = start(make_mail())
    w = worker(retry_base=60, retry_max=3600)
    assert w.step() is True
    rows = list(Recipient.objects.filter(delivery=delivery).order_by("id"))
    assert {r.status for r in rows} == {"queued"}
    assert [r.attempts for r in rows] == [1, 0, 0, 0, 0]
    assert all(r.next_attempt_at > timezone.now() + timedelta(seconds=30) for r in rows)
    assert rows[0].note.startswith("cannot connect to 127.0.0.1")
    assert w.step() is False  # nothing due: the worker idles instead of hammering the relay


def test_a_rendering_error_fails_the_row_and_the_rest_go_out(sink):
    # Renders at save time (the sample value is not a number: |int gives 1), fails for "0".
    Field.objects.create(key="code", label="Code", type="text")
    Customer.objects.create(email="bad@example.com", data={"code": "0"})
    Customer.objects.create(email="good@example.com", data={"code": "4"})
    delivery = start(make_mail(text_body="{{ 100 // (code|int(1)) }}", html_body=""))
    drain(worker(), delivery)
    bad = Recipient.objects.get(delivery=delivery, address="bad@example.com")
    good = Recipient.objects.get(delivery=delivery, address="good@example.com")
    # Nothing went out and sending again would fail the same way: failed, not unknown.
    assert (bad.status, bad.error_kind) == ("failed", "other")
    assert bad.note == "Not sent: Template error in text body: a division by zero"
    assert Customer.objects.get(email="bad@example.com").email_error_count == 0
    assert good.status == "sent" and sink.received == {"good@example.com": 1}


def test_a_customer_deleted_after_the_freeze_is_not_sent(sink):
    make_customers(2)
    delivery = start(make_mail())
    Customer.objects.filter(email="user0@example.com").delete()
    drain(worker(), delivery)
    row = Recipient.objects.get(delivery=delivery, address="user0@example.com")
    assert (row.status, row.exclusion, row.attempts) == ("excluded", "deleted", 0)
    assert row.note == "Not sent: the customer was deleted after the delivery started."
    assert sink.received == {"user1@example.com": 1}


def test_an_invalid_address_fails_as_bad_format_without_smtp(sink):
    c = Customer.objects.create(email="ok@example.com")
    delivery = start(make_mail())
    Recipient.objects.filter(delivery=delivery, customer_id=c.pk).update(
        address="x@example.com\r\nRCPT TO:<victim@example.org>"
    )
    drain(worker(), delivery)
    row = Recipient.objects.get(delivery=delivery)
    assert (row.status, row.error_kind) == ("failed", "bad_format")
    assert not sink.handler.messages


def test_the_per_domain_rate_limit_defers_what_it_cannot_send_soon(sink):
    sending.Relay.objects.update(per_domain_per_second=10)
    make_customers(30)
    make_customers(3, domain="other.example")
    delivery = start(make_mail())
    w = worker(batch_size=50, max_rate_wait=0.25)
    assert w.step() is True
    by_status = statuses(delivery)
    # A 0.25 s sleep budget at 10/s: 3 for example.com, which does not hold up other.example.
    assert 4 <= sink.received.total() <= 8
    assert sum(1 for a in sink.received if a.endswith("other.example")) >= 1
    deferred = Recipient.objects.filter(delivery=delivery, status="queued")
    assert by_status["queued"] == deferred.count() and all(r.attempts == 0 for r in deferred)
    drain(w, delivery, timeout=30)
    assert statuses(delivery) == {"sent": 33}


def test_a_lease_that_runs_out_makes_sending_rows_unknown_and_leased_rows_due_again(sink):
    make_customers(3)
    delivery = start(make_mail())
    rows = ledger.claim(delivery.pk, "dead.1", 3)
    # Leased rows stay queued, but are not due for anyone else while the lease runs.
    assert statuses(delivery) == {"queued": 3}
    assert ledger.claim(delivery.pk, "other.1", 3) == []
    flushed = ledger.flush(delivery.pk, "dead.1", [], mark=[rows[0].id, rows[1].id])
    assert (flushed.status, flushed.marked) == ("running", {rows[0].id, rows[1].id})
    assert statuses(delivery) == {"sending": 2, "queued": 1}
    # The worker dies; its lease runs out.
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Recipient.objects.filter(claim="dead.1").update(
        claimed_at=an_hour_ago, next_attempt_at=an_hour_ago
    )
    assert ledger.reap_expired(lease=300) == 2
    assert statuses(delivery) == {"unknown": 2, "queued": 1}
    # The row that was only leased was never on the wire: the next worker takes it up.
    assert [r.id for r in ledger.claim(delivery.pk, "next.1", 10)] == [rows[2].id]
    # A worker that was only slow writes its outcome: the truth wins over "unknown".
    ledger.write_outcomes(delivery.pk, "dead.1", [ledger.Outcome(rows[0].id, "sent")])
    assert Recipient.objects.get(pk=rows[0].id).status == "sent"
    # Once an operator resolved a row, a late outcome does not touch it.
    actions.resolve_unknown(delivery, None, resend=False)
    ledger.write_outcomes(delivery.pk, "dead.1", [ledger.Outcome(rows[1].id, "sent")])
    assert Recipient.objects.get(pk=rows[1].id).status == "unknown"
    # Nor does a late outcome touch a row someone else holds now.
    ledger.write_outcomes(delivery.pk, "dead.1", [ledger.Outcome(rows[2].id, "sent")])
    assert Recipient.objects.get(pk=rows[2].id).status == "queued"


def test_pause_resume_and_stop(sink):
    make_customers(30)
    delivery = start(make_mail())
    w = worker(batch_size=10)
    assert w.step() is True
    actions.pause(delivery, None)
    assert w.step() is False
    assert statuses(delivery) == {"sent": 10, "queued": 20}
    with pytest.raises(ValidationError) as e:
        actions.pause(delivery, None)
    assert e.value.messages == ["This delivery is Paused; only a running delivery can be paused."]
    actions.resume(delivery, None)
    assert w.step() is True
    actions.stop(delivery, None)
    assert w.step() is False
    delivery.refresh_from_db()
    assert delivery.status == "stopped" and statuses(delivery) == {"sent": 20, "stopped": 10}
    assert (delivery.sent_count, delivery.stopped_count) == (20, 10)
    assert sink.received.total() == 20


def test_a_reservation_fixes_the_target_conditions(sink):
    Customer.objects.create(email="a@example.com")
    mail = make_mail()
    delivery = actions.create_delivery(mail, None)
    actions.reserve(delivery, None, timezone.now() + timedelta(hours=1))
    mail.filter = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    with pytest.raises(ValidationError) as e:
        actions.save_mail(mail, None)
    assert e.value.messages == [
        "This mail has a reserved or running delivery, so its target conditions cannot be "
        "changed. Cancel the reservation or create a new mail."
    ]
    mail.refresh_from_db()
    mail.subject = "New subject"  # content may still change until the delivery starts
    actions.save_mail(mail, None)
    actions.cancel(delivery, None)
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    mail.filter = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    actions.save_mail(mail, None)
    assert not ledger.start_delivery(delivery.pk)
    assert OperationLog.objects.filter(action="delivery.cancel").count() == 1


def test_a_due_reservation_is_started_by_the_worker_and_the_content_is_frozen(sink):
    make_customers(3)
    mail = make_mail()
    delivery = actions.create_delivery(mail, None)
    actions.reserve(delivery, None, timezone.now() + timedelta(hours=1))
    w = worker()
    w.step()
    delivery.refresh_from_db()
    assert delivery.status == "reserved"
    Delivery.objects.filter(pk=delivery.pk).update(scheduled_at=timezone.now())
    w._last_housekeeping = -1e9
    w.step()
    delivery.refresh_from_db()
    assert delivery.status == "running" and delivery.recipient_count == 3
    mail.subject = "Changed after the start"
    actions.save_mail(mail, None)
    drain(w, delivery)
    assert {sink.handler.parsed(i)["Subject"].split()[0] for i in range(3)} == {"Hello"}


def test_the_connection_stays_in_step_after_a_refused_recipient(sink):
    conn = smtp.Connection(smtp.RelaySettings("127.0.0.1", sink.port, timeout=5))
    sink.handler.rules["bad@x.example"] = ["550 5.1.1 No such user"]
    message = b"Subject: x\r\n\r\nhi\r\n"
    reply = conn.send("a@b.example", "bad@x.example", message)
    assert (reply.code, reply.status, reply.text) == (550, "5.1.1", "5.1.1 No such user")
    assert reply.command == "RCPT"
    assert conn.send("a@b.example", "ok@x.example", message).accepted
    assert conn.smtp.has_extn("pipelining") == sink.handler.pipelining
    conn.close()
    assert sink.received == {"ok@x.example": 1}
