"""Exclusions applied again at send time, and error counts kept at send time, against a real
SMTP server (aiosmtpd in this process).

The ledger is frozen when a delivery starts; a customer who refuses, unsubscribes, is deleted,
loses the address, has the address list-cleaned or reaches the error threshold after that must
still not get the message. Permanent failures add to the error count of the address used."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from okuru.customers.models import Customer, Topic
from okuru.mailings import actions, ledger, sending
from okuru.mailings.models import Delivery, ListCleaning, Recipient
from okuru.mailings.testing import drain, make_mail, start

pytestmark = pytest.mark.django_db

FAST = dict(batch_size=50, retry_base=0.01, retry_max=0.05, idle_sleep=0.01)


def worker(**kw) -> sending.Worker:
    return sending.Worker(sending.Config(**{**FAST, **kw}))


def row_of(delivery: Delivery, address: str) -> Recipient:
    return Recipient.objects.get(delivery=delivery, address=address)


def adds_up(delivery: Delivery) -> bool:
    d = delivery
    return (
        d.sent_count + d.failed_count + d.unknown_count + d.stopped_count
        + sum(d.excluded_at_send.values())
        == d.recipient_count
    )  # fmt: skip


def test_customers_who_became_ineligible_after_the_freeze_are_excluded_with_the_reason(sink):
    news = Topic.objects.create(key="news", name="News")
    people = {
        name: Customer.objects.create(email=f"{name}@example.com")
        for name in (
            "fine", "refuses", "unsubscribes", "other_topic", "deleted", "no_address",
            "cleaned", "errors", "below",
        )
    }  # fmt: skip
    delivery = start(make_mail(topic=news))
    assert delivery.recipient_count == 9

    # After the freeze, before sending:
    Customer.objects.filter(pk=people["refuses"].pk).update(refused=True)
    Customer.objects.filter(pk=people["unsubscribes"].pk).update(unsubscribed=["news"])
    Customer.objects.filter(pk=people["other_topic"].pk).update(unsubscribed=["offers"])
    people["deleted"].delete()
    Customer.objects.filter(pk=people["no_address"].pk).update(email="")
    ListCleaning.objects.create(address="CLEANED@example.com", reason="unknown_user")
    Customer.objects.filter(pk=people["errors"].pk).update(email_error_count=5)
    Customer.objects.filter(pk=people["below"].pk).update(email_error_count=4)

    drain(worker(), delivery)
    delivery.refresh_from_db()
    assert delivery.status == "completed"
    assert sorted(sink.received) == [
        "below@example.com", "fine@example.com", "other_topic@example.com",
    ]  # fmt: skip
    expected = {
        "refuses": ("refused", "Not sent: the customer refuses all mail (refusal flag)."),
        "unsubscribes": (
            "unsubscribed",
            "Not sent: the customer unsubscribed from this mail's topic.",
        ),
        "deleted": ("deleted", "Not sent: the customer was deleted after the delivery started."),
        "no_address": ("no_address", "Not sent: the customer no longer has an address."),
        "errors": (
            "error_count",
            "Not sent: the address's error count reached the mail's threshold.",
        ),
    }
    for name, (reason, note) in expected.items():
        row = row_of(delivery, f"{name}@example.com")
        assert (row.status, row.exclusion, row.note) == ("excluded", reason, note), name
        assert (row.attempts, row.error_kind, row.message_id, row.sent_at) == (0, "", "", None)
    # List cleaning is a delivery error of its own kind, with +99 on the address used.
    row = row_of(delivery, "cleaned@example.com")
    assert (row.status, row.error_kind, row.exclusion, row.attempts) == (
        "failed", "list_cleaning", "", 0,
    )  # fmt: skip
    assert row.note == "Not sent: the address is excluded by list cleaning."
    assert Customer.objects.get(pk=people["cleaned"].pk).email_error_count == 99
    assert delivery.sent_count == 3 and delivery.failed_count == 1
    assert delivery.excluded_at_send == {
        "refused": 1, "unsubscribed": 1, "deleted": 1, "no_address": 1, "error_count": 1,
    }  # fmt: skip
    assert adds_up(delivery)
    # An exclusion is not a delivery error: the "errored" audience holds only the cleaned row.
    failed = Recipient.objects.filter(delivery=delivery, status="failed")
    assert [r.address for r in failed] == ["cleaned@example.com"]


def test_the_mails_threshold_and_address_field_apply(sink):
    a = Customer.objects.create(mobile_email="a@m.example", email_error_count=50)
    b = Customer.objects.create(mobile_email="b@m.example")
    delivery = start(make_mail(address_field="mobile_email", error_threshold=2))
    Customer.objects.filter(pk=a.pk).update(mobile_error_count=1)  # PC count does not matter
    Customer.objects.filter(pk=b.pk).update(mobile_error_count=2)
    drain(worker(), delivery)
    assert sink.received == {"a@m.example": 1}
    assert row_of(delivery, "b@m.example").exclusion == "error_count"


def test_exclusions_are_checked_again_before_each_retry(sink):
    c = Customer.objects.create(email="later@example.com")
    sink.handler.rules["later@example.com"] = ["451 4.3.0 Try again later"]
    delivery = start(make_mail())
    w = worker(retry_base=60)
    assert w.step() is True
    row = row_of(delivery, "later@example.com")
    assert (row.status, row.attempts) == ("queued", 1)
    Customer.objects.filter(pk=c.pk).update(refused=True)
    Recipient.objects.filter(pk=row.pk).update(next_attempt_at=None)  # due now
    drain(w, delivery)
    row.refresh_from_db()
    assert (row.status, row.exclusion, row.attempts) == ("excluded", "refused", 1)
    assert row.smtp_reply == "451 4.3.0 Try again later"  # the last attempt's reply stays
    assert sink.received.total() == 0


@pytest.mark.parametrize(
    "reply,kind,added",
    [
        ("550 5.1.1 User unknown", "unknown_user", 99),
        ("553 5.1.3 Bad recipient address syntax", "bad_format", 99),
        ("552 5.2.2 Mailbox full", "mailbox_full", 1),
        ("550 5.7.1 Message rejected as spam", "spam", 1),
        ("550 5.7.1 Relaying denied", "refused", 1),
        ("550 5.1.2 Host unknown", "no_domain", 1),
        ("554 5.3.4 Message too big for system", "other", 1),
    ],
)
def test_a_permanent_failure_adds_to_the_error_count_of_the_address_used(sink, reply, kind, added):
    c = Customer.objects.create(email="x@example.com", mobile_email="x@m.example")
    Customer.objects.filter(pk=c.pk).update(email_error_count=3)
    sink.handler.rules["x@example.com"] = [reply]
    delivery = start(make_mail(error_threshold=1000))
    drain(worker(), delivery)
    assert (
        row_of(delivery, "x@example.com").status,
        row_of(delivery, "x@example.com").error_kind,
    ) == (
        "failed",
        kind,
    )
    c.refresh_from_db()
    assert (c.email_error_count, c.mobile_error_count) == (3 + added, 0)


def test_the_mobile_count_goes_up_for_a_mobile_mail(sink):
    c = Customer.objects.create(email="x@example.com", mobile_email="x@m.example")
    sink.handler.rules["x@m.example"] = ["550 5.1.1 User unknown"]
    delivery = start(make_mail(address_field="mobile_email"))
    drain(worker(), delivery)
    c.refresh_from_db()
    assert (c.email_error_count, c.mobile_error_count) == (0, 99)


def test_sent_retried_and_given_up_rows_do_not_count(sink):
    ok = Customer.objects.create(email="ok@example.com")
    retried = Customer.objects.create(email="retried@example.com")
    gave_up = Customer.objects.create(email="gaveup@example.com")
    sink.handler.rules["retried@example.com"] = ["451 4.3.0 Try again later"]
    sink.handler.rules["gaveup@example.com"] = ["451 4.3.0 Try again later"] * 5
    delivery = start(make_mail())
    drain(worker(retry_window=0.5, retry_base=0.2, retry_max=0.2), delivery)
    assert row_of(delivery, "retried@example.com").status == "sent"
    assert row_of(delivery, "gaveup@example.com").status == "failed"
    for c in (ok, retried, gave_up):
        c.refresh_from_db()
        assert c.email_error_count == 0, c.email


def test_the_count_is_left_alone_when_the_customer_changed_address(sink):
    c = Customer.objects.create(email="old@example.com")
    sink.handler.rules["old@example.com"] = ["550 5.1.1 User unknown"]
    delivery = start(make_mail())
    Customer.objects.filter(pk=c.pk).update(email="New@Example.com")
    drain(worker(), delivery)
    assert row_of(delivery, "old@example.com").status == "failed"
    c.refresh_from_db()
    assert c.email_error_count == 0

    # The same address in other letter case is the same address.
    Customer.objects.filter(pk=c.pk).update(email="old@example.com")
    sink.handler.rules["old@example.com"] = ["550 5.1.1 User unknown"]
    second = start(make_mail(name="again"))
    Customer.objects.filter(pk=c.pk).update(email="Old@Example.COM")
    drain(worker(), second)
    c.refresh_from_db()
    assert c.email_error_count == 99


def test_a_hard_failure_keeps_the_address_out_of_the_next_delivery(sink):
    Customer.objects.create(email="gone@example.com")
    Customer.objects.create(email="here@example.com")
    sink.handler.rules["gone@example.com"] = ["550 5.1.1 User unknown"]
    drain(worker(), start(make_mail()))
    assert ListCleaning.objects.filter(address="gone@example.com", reason="unknown_user").exists()
    second = start(make_mail(name="second"))
    # List cleaning comes before the error count: the address is frozen into the ledger and
    # recorded as a list-cleaning error (+99), never sent.
    assert second.recipient_count == 2 and second.excluded["error_count"] == 0
    sink.handler.rules.clear()
    drain(worker(), second)
    row = row_of(second, "gone@example.com")
    assert (row.status, row.error_kind, row.attempts) == ("failed", "list_cleaning", 0)
    assert Customer.objects.get(email="gone@example.com").email_error_count == 198
    assert dict(sink.received) == {"here@example.com": 2}  # gone@ was not tried again


def test_error_counts_are_one_update_per_flush(sink, monkeypatch):
    Customer.objects.bulk_create(Customer(email=f"bad{i}@example.com") for i in range(12))
    for i in range(12):
        sink.handler.rules[f"bad{i}@example.com"] = ["550 5.1.1 User unknown"]
    delivery = start(make_mail())
    flushes, statements = [], []
    real_flush, real_prepared = ledger.flush, ledger._execute_prepared
    monkeypatch.setattr(ledger, "flush", lambda *a: flushes.append(a[2]) or real_flush(*a))
    monkeypatch.setattr(
        ledger, "_execute_prepared", lambda *a: statements.append(a[0]) or real_prepared(*a)
    )
    # The first group is one row (the relay's speed is not known yet), then groups of 11 at most.
    w = worker(group_size=11, flush_interval=60)
    with CaptureQueriesContext(connection) as queries:
        assert w.step() is True
    # Flushes: none to write (marks the first group), the first outcome, the other eleven.
    assert [len(outcomes) for outcomes in flushes] == [0, 1, 11]
    if connection.vendor == "postgresql":
        assert len(statements) == 3  # each flush is one statement, error counts included
    else:
        updates = [q["sql"] for q in queries if "UPDATE customers_customer" in q["sql"]]
        assert len(updates) == 2  # one per flush that has failures
    assert set(Customer.objects.values_list("email_error_count", flat=True)) == {99}
    actions.stop(delivery, None)
