"""Resend (route 5): a new draft cloned from what a delivery sent, its targeting re-evaluated
when the draft is sent (and narrowable before), lineage both ways, the original untouched."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from okuru.customers import design
from okuru.customers.models import Customer, Topic
from okuru.mailings import actions, redelivery, sending, testing
from okuru.mailings.models import Delivery, Mail

pytestmark = pytest.mark.django_db(transaction=True)
DOMAIN = "resend.example"
EVERYONE = {
    "match": "all",
    "conditions": [{"field": "email", "op": "contains", "value": "@" + DOMAIN}],
}


@pytest.fixture
def source(sink):
    topic = Topic.objects.create(key="news", name="News")
    testing.make_customers(3, domain=DOMAIN)
    mail = testing.make_mail(
        name="Autumn sale",
        filter=EVERYONE,
        topic=topic,
        reply_to="help@shop.example",
        duplicate_rule="newest",
        error_threshold=3,
        open_tracking=False,
    )
    link = mail.links.get()
    link.name = "Sale page"
    link.save()
    delivery = testing.start(mail)
    testing.drain(sending.Worker(), delivery)
    # The mail is edited after the delivery: the resend clones what was sent, not this.
    mail.subject = "Edited later"
    mail.text_body = "Edited body"
    actions.save_mail(mail, None)
    sink.handler.messages.clear()
    sink.handler.received.clear()
    delivery.refresh_from_db()
    return delivery


def test_the_draft_clones_the_content_snapshot_and_settings(source):
    mail = redelivery.resend(source, None)
    assert mail.name == "Autumn sale (resend)"
    assert mail.subject == "Hello {{ customer_id }}"
    assert mail.text_body == source.content["text_body"]
    assert mail.html_body == source.content["html_body"]
    assert (mail.from_address, mail.from_name, mail.reply_to) == (
        "news@shop.example",
        "Shop",
        "help@shop.example",
    )
    assert mail.return_path_domain == "bounce.shop.example"
    assert (mail.open_tracking, mail.click_tracking) == (False, True)
    assert mail.topic.key == "news"
    assert (mail.duplicate_rule, mail.error_threshold) == ("newest", 3)
    assert mail.filter == EVERYONE and mail.kind == "basic"
    assert (mail.resend_of_id, mail.resend_of_delivery_id, mail.resend_audience) == (
        source.mail_id,
        source.pk,
        "",
    )
    assert mail.links.get().name == "Sale page"
    assert not mail.deliveries.exists()  # a draft: nothing is sent
    original = Mail.objects.get(pk=source.mail_id)
    assert (original.name, original.subject) == ("Autumn sale", "Edited later")


def test_the_name_is_japanese_for_a_japanese_operator(source):
    from django.utils import translation

    with translation.override("ja"):
        mail = redelivery.resend(source, None)
    assert mail.name == "Autumn sale（再送信）"


def test_the_targeting_is_evaluated_when_the_draft_is_sent(source, sink):
    mail = redelivery.resend(source, None)
    Customer.objects.create(email=f"late@{DOMAIN}")  # joined after the source was sent
    Customer.objects.filter(email=f"user0@{DOMAIN}").update(refused=True)
    actions.send_now(mail, None)
    sink.wait_for(3)
    assert sorted(sink.received) == [f"late@{DOMAIN}", f"user1@{DOMAIN}", f"user2@{DOMAIN}"]


def test_the_draft_can_be_narrowed_before_sending(source, sink):
    design.add_field("flag", "配信フラグ", "text")
    Customer.objects.filter(email=f"user2@{DOMAIN}").update(data={"flag": "1"})
    mail = redelivery.resend(source, None)
    mail.filter = {
        "match": "all",
        "conditions": [*EVERYONE["conditions"], {"field": "flag", "op": "has_value"}],
    }
    actions.save_mail(mail, None)
    actions.send_now(mail, None)
    sink.wait_for(1)
    assert sorted(sink.received) == [f"user2@{DOMAIN}"]


def test_both_reports_link_to_each_other(source):
    mail = redelivery.resend(source, None)
    new = actions.send_now(mail, None)
    children = redelivery.lineage(source)["children"]
    assert [(c["mail"].pk, [d.pk for d in c["deliveries"]]) for c in children] == [
        (mail.pk, [new.pk])
    ]
    assert redelivery.lineage(Delivery.objects.get(pk=new.pk))["source"].pk == source.pk


def test_a_source_older_than_three_months_or_not_sent_is_refused(source):
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=100))
    source.refresh_from_db()
    with pytest.raises(ValidationError, match="more than 3 months ago"):
        redelivery.resend(source, None)
    reserved = actions.create_delivery(source.mail, None)
    with pytest.raises(ValidationError, match="has not been sent yet"):
        redelivery.resend(reserved, None)
    assert Mail.objects.count() == 1


def test_a_resend_of_a_redelivery_keeps_its_audience(source, sink):
    again = redelivery.redeliver(source, None, "all", confirm=True)
    again.refresh_from_db()
    mail = redelivery.resend(again, None)
    assert mail.audience == {"delivery": source.pk, "audience": "all", "link": None}
    assert mail.resend_of_delivery_id == again.pk and mail.resend_audience == ""


def test_a_resend_of_a_million_recipient_source_does_not_read_the_ledger(source):
    """The clone never touches the ledger: its time does not depend on the source's size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        redelivery.resend(source, None)
        elapsed = time.perf_counter() - started
    assert not [q for q in queries if "mailings_recipient" in q["sql"]]
    assert elapsed < 0.2
