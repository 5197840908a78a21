"""Targeting: filters, behaviour-history conditions, exclusions, the duplicate rule, freezing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from okuru.customers import filters
from okuru.customers.filters import FilterError
from okuru.customers.models import Customer, Topic, View
from okuru.mailings import actions, targeting
from okuru.mailings.models import (
    Delivery,
    Event,
    FrozenList,
    FrozenListMember,
    ListCleaning,
    Mail,
    Recipient,
)
from okuru.mailings.testing import make_mail, make_relay, start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    # Messages are asserted in English; the default language is Japanese.
    with translation.override("en"):
        yield


@pytest.fixture
def relay():
    return make_relay(2525)


@pytest.fixture
def news():
    return Topic.objects.create(key="news", name="News")


@pytest.fixture
def crowd(news):
    c = Customer.objects.create
    return {
        "ok": c(email="ok@example.com"),
        "ok_low_errors": c(email="low@example.com", email_error_count=4),
        "no_address": c(email="", mobile_email="m@example.jp"),
        "refused": c(email="refused@example.com", refused=True),
        "unsubscribed": c(email="unsub@example.com", unsubscribed=["news"]),
        "other_topic": c(email="other@example.com", unsubscribed=["other"]),
        "cleaned": c(email="Cleaned@Example.com"),
        "errors": c(email="errors@example.com", email_error_count=5),
    }


def test_it_counts_and_freezes_with_one_reason_per_customer(crowd, news, relay):
    ListCleaning.objects.create(address="cleaned@example.com", reason="unknown_user")
    mail = make_mail(topic=news)
    assert targeting.preview(mail) == {
        "matched": 8,
        "excluded": {
            "deleted": 0,
            "no_address": 1,
            "refused": 1,
            "unsubscribed": 1,
            "list_cleaning": 0,
            "error_count": 1,
            "duplicate": 0,
        },
        "after_exclusions": 4,
        "after_duplicates": 4,
    }
    delivery = start(mail)
    assert delivery.status == "running"
    assert delivery.matched_count == 8 and delivery.recipient_count == 4
    # List cleaning is not a freeze-time exclusion: the row is frozen, and sending records it
    # as a list-cleaning delivery error (test_bounces_list_cleaning.py).
    assert delivery.excluded["list_cleaning"] == 0
    rows = Recipient.objects.filter(delivery=delivery).order_by("customer_id")
    assert [r.customer_id for r in rows] == [
        crowd["ok"].pk,
        crowd["ok_low_errors"].pk,
        crowd["other_topic"].pk,
        crowd["cleaned"].pk,
    ]
    assert {r.status for r in rows} == {"queued"}
    assert delivery.content["subject"] == mail.subject


def test_the_error_threshold_is_per_mail(crowd, relay):
    mail = make_mail(error_threshold=4)
    assert targeting.preview(mail)["excluded"]["error_count"] == 2


def test_the_newest_rule_keeps_one_record_per_address(relay):
    now = timezone.now()
    old = Customer.objects.create(email="dup@example.com", updated_at=now - timedelta(days=2))
    new = Customer.objects.create(email="DUP@example.com", updated_at=now)
    Customer.objects.create(email="solo@example.com")
    mail = make_mail(duplicate_rule="newest")
    counts = targeting.preview(mail)
    assert counts["after_exclusions"] == 3 and counts["after_duplicates"] == 2
    assert counts["excluded"]["duplicate"] == 1
    delivery = start(mail)
    ids = set(Recipient.objects.filter(delivery=delivery).values_list("customer_id", flat=True))
    assert new.pk in ids and old.pk not in ids
    mail.duplicate_rule = "ignore"
    assert targeting.preview(mail)["after_duplicates"] == 3


def test_mobile_mails_use_the_mobile_address_and_its_error_count(relay):
    Customer.objects.create(email="pc@example.com", mobile_email="")
    Customer.objects.create(email="", mobile_email="m@example.jp", mobile_error_count=1)
    Customer.objects.create(
        email="x@example.com", mobile_email="bad@example.jp", mobile_error_count=9
    )
    mail = make_mail(address_field="mobile_email")
    counts = targeting.preview(mail)
    assert counts["excluded"]["no_address"] == 1 and counts["excluded"]["error_count"] == 1
    delivery = start(mail)
    assert list(Recipient.objects.filter(delivery=delivery).values_list("address", flat=True)) == [
        "m@example.jp"
    ]


def test_a_filter_narrows_the_basic_mail(crowd, relay):
    mail = make_mail(
        filter={
            "match": "all",
            "conditions": [{"field": "email", "op": "starts_with", "value": "ok"}],
        }
    )
    assert targeting.preview(mail)["matched"] == 1


# -- behaviour history -------------------------------------------------------------------------


@pytest.fixture
def past(relay):
    """A delivery sent yesterday: a opened and clicked link 1, b opened, c nothing, d failed."""
    people = {k: Customer.objects.create(email=f"{k}@example.com") for k in "abcde"}
    mail = make_mail()
    delivery = Delivery.objects.create(
        mail=mail, status="completed", started_at=timezone.now() - timedelta(days=1)
    )
    link = mail.links.get()
    now = timezone.now()
    rows = {
        "a": dict(status="sent", first_open_at=now, open_count=2, click_count=1),
        "b": dict(status="sent", first_open_at=now, open_count=1),
        "c": dict(status="sent"),
        "d": dict(status="failed", error_kind="unknown_user"),
    }
    recipients = {
        k: Recipient.objects.create(
            delivery=delivery, customer_id=people[k].pk, address=f"{k}@example.com", **v
        )
        for k, v in rows.items()
    }
    Event.objects.create(
        delivery=delivery,
        recipient=recipients["a"],
        customer_id=people["a"].pk,
        kind="click",
        link=link,
    )
    return delivery, people, link


def who(tree) -> list[str]:
    return sorted(e.split("@")[0] for e in filters.filtered(tree).values_list("email", flat=True))


def history(**kw) -> dict:
    return {"match": "all", "conditions": [{"kind": "delivery_history", **kw}]}


@pytest.mark.parametrize(
    "event,expected",
    [
        ("sent", ["a", "b", "c"]),
        ("opened", ["a", "b"]),
        ("not_opened", ["c"]),
        ("clicked", ["a"]),
        ("not_clicked", ["b", "c"]),
        ("errored", ["d"]),
        ("not_errored", ["a", "b", "c"]),
    ],
)
def test_delivery_history_events(past, event, expected):
    delivery, _people, _link = past
    assert who(history(delivery=delivery.pk, event=event)) == expected


def test_delivery_history_by_link_and_by_mail(past):
    delivery, _people, link = past
    assert who(history(delivery=delivery.pk, event="clicked", link=link.pk)) == ["a"]
    assert who(history(delivery=delivery.pk, event="not_clicked", link=link.pk)) == ["b", "c"]
    assert who(history(mail=delivery.mail_id, event="opened")) == ["a", "b"]


def test_it_refuses_a_source_older_than_3_months(past):
    delivery, _people, _link = past
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=95))
    with pytest.raises(FilterError) as e:
        who(history(delivery=delivery.pk, event="sent"))
    assert str(e.value) == (
        f"Delivery #{delivery.pk} was sent more than 3 months ago and cannot be used as a source."
    )
    with pytest.raises(FilterError, match="has no delivery in the last 3 months"):
        who(history(mail=delivery.mail_id, event="sent"))


def test_it_refuses_an_unknown_event(past):
    delivery, _people, _link = past
    with pytest.raises(FilterError, match="Unknown delivery history event: bought"):
        who(history(delivery=delivery.pk, event="bought"))


def test_a_mail_with_a_stale_source_cannot_be_saved(past):
    delivery, _people, _link = past
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=95))
    with pytest.raises(ValidationError) as e:
        make_mail(name="again", filter=history(delivery=delivery.pk, event="opened"))
    assert "cannot be used as a source" in e.value.message_dict["filter"][0]


def test_re_delivery_to_non_openers_reaches_only_them(past):
    delivery, people, _link = past
    mail = make_mail(name="reminder", filter=history(delivery=delivery.pk, event="not_opened"))
    new = start(mail)
    assert list(Recipient.objects.filter(delivery=new).values_list("customer_id", flat=True)) == [
        people["c"].pk
    ]


# -- spot --------------------------------------------------------------------------------------

ELIGIBLE = ["email", "email_error_count", "refused", "unsubscribed"]


def test_spot_needs_a_delivery_eligible_view(relay):
    view = View.objects.create(name="Thin", fields=["email"])
    with pytest.raises(ValidationError) as e:
        make_mail(kind="spot", view=view)
    assert e.value.message_dict["filter"] == [
        "The view Thin cannot be used for delivery: it lacks an address, its error count, "
        "the refusal flag or the unsubscribe flags."
    ]


def test_spot_view_with_a_customer_set(past):
    delivery, people, _link = past
    view = View.objects.create(
        name="Not e",
        fields=ELIGIBLE,
        filter={
            "match": "all",
            "conditions": [{"field": "email", "op": "ne", "value": "a@example.com"}],
        },
    )
    mail = make_mail(
        kind="spot", view=view, customer_set=history(delivery=delivery.pk, event="opened")
    )
    assert targeting.preview(mail)["after_duplicates"] == 1  # b


def test_a_customer_set_holds_only_delivery_history(past):
    view = View.objects.create(name="All", fields=ELIGIBLE)
    with pytest.raises(ValidationError, match="may only hold delivery history"):
        make_mail(
            kind="spot",
            view=view,
            customer_set={"match": "all", "conditions": [{"field": "email", "op": "has_value"}]},
        )


def test_spot_to_a_frozen_list_counts_deleted_customers(relay):
    people = [Customer.objects.create(email=f"p{i}@example.com") for i in range(3)]
    frozen = FrozenList.objects.create(name="x", size=3)
    for p in people:
        FrozenListMember.objects.create(list=frozen, customer_id=p.pk)
    people[0].delete()
    mail = make_mail(kind="spot", recipient_list=frozen)
    counts = targeting.preview(mail)
    assert counts["matched"] == 3 and counts["excluded"]["deleted"] == 1
    assert counts["after_duplicates"] == 2
    delivery = start(mail)
    assert delivery.recipient_count == 2 and delivery.excluded["deleted"] == 1


def test_a_spot_draft_can_be_saved_before_its_view_is_chosen(relay):
    mail = make_mail(kind="spot")
    assert Mail.objects.filter(pk=mail.pk).exists()
    with pytest.raises(ValidationError):
        actions.reserve(actions.create_delivery(mail, None), None)
