"""Re-deliver (route 6): each audience of a real delivery reaches exactly its customers over
SMTP; chains, the 3-month rule, deleted customers, exclusions that arrived after the source,
the repeat guard, reservations and planned re-deliveries run by the scheduler."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.customers.models import Customer
from okuru.mailings import actions, ledger, redelivery, sending, testing
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery, Recipient
from okuru.tracking import recording

pytestmark = pytest.mark.django_db(transaction=True)
DOMAIN = "r.example"


def addr(i: int) -> str:
    return f"user{i}@{DOMAIN}"


@pytest.fixture
def source(sink):
    """Six recipients: user0 opened, user1 clicked, user2 opened, user3 did nothing, user4 was
    refused by the server (unknown user), user5 is "unknown" (may not have gone out)."""
    testing.make_customers(6, domain=DOMAIN)
    sink.handler.rules[addr(4)] = ["550 5.1.1 No such user"]
    mail = testing.make_mail(
        name="Spring sale",
        filter={
            "match": "all",
            "conditions": [{"field": "email", "op": "contains", "value": "@" + DOMAIN}],
        },
    )
    delivery = testing.start(mail)
    testing.drain(sending.Worker(), delivery)
    rows = {r.address: r for r in Recipient.objects.filter(delivery=delivery)}
    link = mail.links.get()
    recording.record_open(rows[addr(0)].pk)
    recording.record_click(rows[addr(1)].pk, link.pk)
    recording.record_open(rows[addr(2)].pk)
    Recipient.objects.filter(pk=rows[addr(5)].pk).update(status="unknown")
    ledger.refresh_counts(delivery.pk)
    delivery.refresh_from_db()
    delivery.link = link
    sink.handler.messages.clear()
    sink.handler.received.clear()
    return delivery


def received(sink) -> list[str]:
    return sorted(sink.received)


# Who receives a message. user4's hard error put the address into list cleaning: an audience
# that holds it (CLEANED) freezes it into the ledger, where it is recorded as a list-cleaning
# error (+99) and never sent.
CLEANED = {"all", "errored", "not_reached"}
EXPECTED = {
    "all": [0, 1, 2, 3, 5],
    "opened": [0, 1, 2],
    "not_opened": [3],
    "clicked": [1],
    "not_clicked": [0, 2, 3],
    "errored": [],
    "not_errored": [0, 1, 2, 3],
    "not_reached": [5],
}


@pytest.mark.parametrize("audience", list(EXPECTED))
def test_each_audience_reaches_exactly_its_customers(source, sink, audience):
    preview = redelivery.redeliver_preview(source, audience)
    new = redelivery.redeliver(source, None, audience, subject="Last chance")
    sink.wait_for(len(EXPECTED[audience]))
    new.refresh_from_db()
    assert received(sink) == [addr(i) for i in EXPECTED[audience]]
    frozen = len(EXPECTED[audience]) + (audience in CLEANED)
    assert preview["after_duplicates"] == frozen == new.recipient_count
    assert all(
        sink.handler.parsed(i)["Subject"] == "Last chance"
        for i in range(len(sink.handler.messages))
    )
    mail = new.mail
    assert (mail.resend_of_id, mail.resend_of_delivery_id, mail.resend_audience) == (
        source.mail_id,
        source.pk,
        audience,
    )
    assert mail.kind == Mail.Kind.BASIC


def test_the_preview_counts_the_error_count_exclusion_and_sends_nothing(source, sink):
    counts = redelivery.redeliver_preview(source, "errored")
    assert counts["matched"] == 1
    # List cleaning comes before the error count: the row is frozen, then fails as list-cleaned.
    assert counts["excluded"]["error_count"] == 0
    assert counts["after_duplicates"] == 1
    assert counts["previous"] == [] and counts["chain"] == [source.pk]
    assert not Delivery.objects.exclude(pk=source.pk).exists()
    assert received(sink) == []


def test_a_link_narrows_clicked_and_must_belong_to_the_source(source, sink):
    counts = redelivery.redeliver_preview(source, "clicked", source.link.pk)
    assert counts["after_duplicates"] == 1
    counts = redelivery.redeliver_preview(source, "not_clicked", source.link.pk)
    assert counts["after_duplicates"] == 3
    other = testing.make_mail(name="Other", text_body="https://other.example/x")
    with pytest.raises(ValidationError, match="has no link"):
        redelivery.redeliver_preview(source, "clicked", other.links.first().pk)
    with pytest.raises(ValidationError, match="only be chosen with clicked"):
        redelivery.redeliver_preview(source, "opened", source.link.pk)
    with pytest.raises(ValidationError, match="Unknown audience: maybe"):
        redelivery.redeliver_preview(source, "maybe")


def test_the_content_can_be_edited_and_the_source_mail_is_untouched(source, sink):
    before = Mail.objects.filter(pk=source.mail_id).values().get()
    redelivery.redeliver(
        source, None, "not_opened", subject="New {{ customer_id }}", text_body="Text only"
    )
    sink.wait_for(1)
    msg = sink.handler.parsed(0)
    customer = Customer.objects.get(email=addr(3))
    assert msg["Subject"] == f"New {customer.pk}"
    assert msg.get_body(("plain",)).get_content().strip().startswith("Text only")
    assert Mail.objects.filter(pk=source.mail_id).values().get() == before


def test_not_opened_over_a_chain_leaves_out_who_opened_any_message(source, sink):
    first = redelivery.redeliver(source, None, "not_errored")  # user0..user3
    sink.wait_for(4)
    first.refresh_from_db()
    rows = {r.address: r for r in Recipient.objects.filter(delivery=first)}
    recording.record_open(rows[addr(3)].pk)  # user3 opens the second message only
    counts = redelivery.redeliver_preview(first, "not_opened")
    assert counts["chain"] == [first.pk, source.pk]
    assert counts["origin"] == source.pk
    sink.handler.received.clear()
    redelivery.redeliver(first, None, "not_opened")
    assert received(sink) == []  # 0 and 2 opened the first, 1 clicked, 3 opened the second
    lineage = redelivery.lineage(first)
    assert lineage["source"].pk == source.pk
    assert [c["mail"].resend_audience for c in redelivery.lineage(source)["children"]] == [
        "not_errored"
    ]


def test_a_source_older_than_three_months_is_refused_with_the_reason(source, sink):
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=95))
    source.refresh_from_db()
    message = (
        f"Delivery #{source.pk} was sent more than 3 months ago and cannot be used as a source."
    )
    with pytest.raises(ValidationError) as e:
        redelivery.redeliver(source, None, "all")
    assert e.value.messages == [message]
    with pytest.raises(ValidationError):
        redelivery.redeliver_preview(source, "all")
    assert redelivery.source_problem(source) == message
    assert Delivery.objects.count() == 1


def test_a_reserved_redelivery_stops_if_its_source_leaves_the_window(source, sink):
    new = redelivery.redeliver(source, None, "all", when=timezone.now() + timedelta(hours=1))
    assert new.status == "reserved"
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=95))
    Delivery.objects.filter(pk=new.pk).update(scheduled_at=timezone.now())
    assert not ledger.start_delivery(new.pk)
    new.refresh_from_db()
    assert new.status == "stopped" and "more than 3 months ago" in new.note
    assert received(sink) == []


def test_deleted_customers_are_counted_and_get_nothing(source, sink):
    Customer.objects.filter(email=addr(3)).delete()
    counts = redelivery.redeliver_preview(source, "not_opened")
    assert counts["matched"] == 1 and counts["excluded"]["deleted"] == 1
    new = redelivery.redeliver(source, None, "not_opened")
    new.refresh_from_db()
    assert new.recipient_count == 0 and new.excluded["deleted"] == 1
    assert received(sink) == []


def test_refusal_and_unsubscribe_after_the_source_apply(source, sink):
    Customer.objects.filter(email=addr(0)).update(refused=True)
    counts = redelivery.redeliver_preview(source, "opened")
    assert counts["excluded"]["refused"] == 1
    redelivery.redeliver(source, None, "opened")
    sink.wait_for(2)
    assert received(sink) == [addr(1), addr(2)]


def test_refusal_between_reservation_and_send_applies_at_send_time(source, sink):
    new = redelivery.redeliver(source, None, "opened", when=timezone.now() + timedelta(hours=1))
    Delivery.objects.filter(pk=new.pk).update(scheduled_at=timezone.now())
    assert ledger.start_delivery(new.pk)
    Customer.objects.filter(email=addr(2)).update(refused=True)
    new.refresh_from_db()
    testing.drain(sending.Worker(), new)
    assert received(sink) == [addr(0), addr(1)]
    new.refresh_from_db()
    assert new.excluded_at_send == {"refused": 1}


def test_a_repeat_of_the_same_audience_needs_confirmation(source, sink):
    first = redelivery.redeliver(source, None, "not_opened")
    with pytest.raises(redelivery.RepeatError) as e:
        redelivery.redeliver(source, None, "not_opened")
    assert e.value.messages == [
        f"The audience “Not opened” of delivery #{source.pk} was already re-delivered "
        f"(delivery #{first.pk}). Confirm to re-deliver it again."
    ]
    assert redelivery.redeliver_preview(source, "not_opened")["previous"] == [first.pk]
    # Another audience, or the same with a link, is not a repeat.
    redelivery.redeliver(source, None, "opened")
    redelivery.redeliver(source, None, "not_clicked", source.link.pk)
    again = redelivery.redeliver(source, None, "not_opened", confirm=True)
    again.refresh_from_db()
    assert again.status == "completed"
    log = OperationLog.objects.filter(action="delivery.redeliver").order_by("id").last()
    assert log.detail["confirmed"] is True


def test_a_cancelled_redelivery_is_not_a_repeat(source, sink):
    new = redelivery.redeliver(source, None, "all", when=timezone.now() + timedelta(days=1))
    actions.cancel(new, None)
    redelivery.redeliver(source, None, "all")
    sink.wait_for(5)
    assert received(sink) == [addr(i) for i in EXPECTED["all"]]


def test_a_reservation_in_the_past_is_refused(source, sink):
    with pytest.raises(ValidationError, match="Choose a time in the future"):
        redelivery.redeliver(source, None, "all", when=timezone.now() - timedelta(minutes=1))
    assert Delivery.objects.count() == 1


def test_a_reserved_redelivery_is_sent_when_due(source, sink):
    new = redelivery.redeliver(source, None, "clicked", when=timezone.now() + timedelta(hours=2))
    assert new.status == "reserved" and received(sink) == []
    Delivery.objects.filter(pk=new.pk).update(scheduled_at=timezone.now())
    assert ledger.start_due_deliveries() == [new.pk]
    new.refresh_from_db()
    testing.drain(sending.Worker(), new)
    assert received(sink) == [addr(1)]


# ---------------------------------------------------------------------------------------------
# Planned re-delivery


def test_a_planned_redelivery_runs_when_due_from_the_scheduler(source, sink):
    plan = redelivery.plan_redelivery(None, "not_opened", 3, "Did you miss it?", source=source)
    assert redelivery.run_due_planned(timezone.now() + timedelta(days=2)) == []
    from okuru.mailings import tasks

    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=3))
    tasks.run_planned_redeliveries.enqueue()  # what the periodic task does every minute
    plan.refresh_from_db()
    assert plan.status == "done" and plan.result is not None
    sink.wait_for(1)
    assert received(sink) == [addr(3)]
    assert sink.handler.parsed(0)["Subject"] == "Did you miss it?"
    assert redelivery.lineage(plan.result)["planned_from"] == plan
    assert redelivery.run_due_planned(timezone.now() + timedelta(days=9)) == []  # once only


def test_a_cancelled_plan_never_runs(source, sink):
    plan = redelivery.plan_redelivery(None, "not_clicked", 1, source=source)
    redelivery.cancel_planned(plan, None)
    assert redelivery.run_due_planned(timezone.now() + timedelta(days=5)) == []
    with pytest.raises(ValidationError, match="only a planned one can be cancelled"):
        redelivery.cancel_planned(plan, None)
    assert received(sink) == []


def test_a_plan_after_a_manual_redelivery_of_the_same_audience_is_skipped(source, sink):
    plan = redelivery.plan_redelivery(None, "not_opened", 1, source=source)
    first = redelivery.redeliver(source, None, "not_opened")
    sink.handler.received.clear()
    assert redelivery.run_due_planned(timezone.now() + timedelta(days=2)) == []
    plan.refresh_from_db()
    assert plan.status == "skipped" and f"(delivery #{first.pk})" in plan.note
    assert received(sink) == []


def test_a_mail_plan_is_given_to_each_delivery_reserved(sink):
    testing.make_customers(2, domain=DOMAIN)
    mail = testing.make_mail()
    redelivery.set_mail_plan(mail, None, "not_opened", 2, "Reminder")
    d1 = testing.start(mail)
    plans = list(PlannedRedelivery.objects.filter(source=d1))
    assert [(p.audience, p.days, p.subject) for p in plans] == [("not_opened", 2, "Reminder")]
    redelivery.set_mail_plan(mail, None, "", 0)
    assert redelivery.mail_plan(mail) is None
    d2 = testing.start(mail)
    assert not PlannedRedelivery.objects.filter(source=d2).exists()
    testing.drain(sending.Worker(), d1)
    sink.handler.received.clear()
    assert redelivery.run_due_planned(timezone.now() + timedelta(days=2, minutes=1))
    sink.wait_for(2)
    assert received(sink) == [addr(0), addr(1)]


@pytest.mark.parametrize(
    ("audience", "days", "message"),
    [
        ("opened", 3, "goes to those who have not opened or not clicked"),
        ("not_opened", 0, "between 1 and 60"),
        ("not_opened", 61, "between 1 and 60"),
        ("not_opened", "x", "between 1 and 60"),
    ],
)
def test_a_plan_is_checked(source, audience, days, message):
    with pytest.raises(ValidationError, match=message):
        redelivery.plan_redelivery(None, audience, days, source=source)
