"""The Re-deliver and resend screens: the wizard with its counts and confirmation step, the
report's lineage and plans, the compose screen's plan, and the 3-month rule shown with its
reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from okuru.mailings import redelivery
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery, Recipient
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source(sink):
    d = sent_delivery(3, domain="ui.example")
    recording.record_open(Recipient.objects.filter(delivery=d).order_by("id").first().pk)
    Delivery.objects.filter(pk=d.pk).update(status="completed")
    d.refresh_from_db()
    return d


def test_the_report_offers_redeliver_and_resend(member_client, source):
    page = member_client.get(f"/mails/deliveries/{source.pk}/").content.decode()
    assert f'href="/mails/deliveries/{source.pk}/redeliver/"' in page
    assert f'action="/mails/deliveries/{source.pk}/resend/"' in page
    assert 'id="plan-form"' in page
    listing = member_client.get("/mails/deliveries/").content.decode()
    assert f'href="/mails/deliveries/{source.pk}/redeliver/"' in listing


def test_an_old_source_is_shown_disabled_with_the_reason(member_client, source):
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=100))
    reason = (
        f"Delivery #{source.pk} was sent more than 3 months ago and cannot be used as a source."
    )
    page = member_client.get(f"/mails/deliveries/{source.pk}/").content.decode()
    assert f'disabled title="{reason}"' in page
    wizard = member_client.get(f"/mails/deliveries/{source.pk}/redeliver/").content.decode()
    assert 'id="redeliver-disabled"' in wizard and reason in wizard
    r = member_client.post(
        f"/mails/deliveries/{source.pk}/redeliver/",
        {"audience": "all", "subject": "x", "action": "now"},
    )
    assert Delivery.objects.count() == 1 and r.status_code == 200
    r = member_client.post(f"/mails/deliveries/{source.pk}/resend/", follow=True)
    assert reason in r.content.decode() and Mail.objects.count() == 1


def test_the_wizard_shows_counts_sends_and_asks_before_a_repeat(member_client, source, sink):
    url = f"/mails/deliveries/{source.pk}/redeliver/"
    page = member_client.get(url).content.decode()
    assert 'id="rd-after-duplicates">2<' in page  # not opened, the default audience
    counts = member_client.get(url + "counts/?audience=opened").json()
    assert counts["after_duplicates"] == 1
    assert member_client.get(url + "counts/?audience=nope").status_code == 400
    data = {"audience": "not_opened", "subject": "Still there?", "action": "now"}
    r = member_client.post(url, data)
    new = Delivery.objects.exclude(pk=source.pk).get()
    assert r.status_code == 302 and r["Location"] == f"/mails/deliveries/{new.pk}/"
    sink.wait_for(2)
    assert sorted(sink.received) == ["user1@ui.example", "user2@ui.example"]
    r = member_client.post(url, data)
    assert r.status_code == 400 and 'id="redeliver-repeat"' in r.content.decode()
    assert Delivery.objects.count() == 2
    r = member_client.post(url, data | {"confirm": "True"})
    assert r.status_code == 302 and Delivery.objects.count() == 3
    report = member_client.get(f"/mails/deliveries/{new.pk}/").content.decode()
    assert f"Re-delivery of delivery #{source.pk} to: Not opened" in report
    assert (
        'id="lineage-children"'
        in member_client.get(f"/mails/deliveries/{source.pk}/").content.decode()
    )


def test_the_wizard_reserves_and_checks_the_time(member_client, source):
    url = f"/mails/deliveries/{source.pk}/redeliver/"
    base = {"audience": "all", "subject": "Later", "action": "reserve"}
    r = member_client.post(url, base)
    assert r.status_code == 400 and "Choose the time to reserve" in r.content.decode()
    when = timezone.localtime(timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = member_client.post(url, base | {"when": when})
    new = Delivery.objects.exclude(pk=source.pk).get()
    assert r.status_code == 302 and new.status == "reserved"


def test_resend_opens_the_new_draft_for_narrowing(member_client, source):
    r = member_client.post(f"/mails/deliveries/{source.pk}/resend/")
    mail = Mail.objects.get(resend_of_delivery=source)
    assert r.status_code == 302 and r["Location"] == f"/mails/{mail.pk}/edit/"
    page = member_client.get(f"/mails/{mail.pk}/").content.decode()
    assert f"Resend of delivery #{source.pk}" in page


def test_plans_on_the_report_and_on_the_compose_screen(member_client, source):
    r = member_client.post(
        f"/mails/deliveries/{source.pk}/plans/",
        {"plan-audience": "not_clicked", "plan-days": "4", "plan-subject": "Psst"},
    )
    plan = PlannedRedelivery.objects.get(source=source)
    assert r.status_code == 302 and (plan.audience, plan.days, plan.subject) == (
        "not_clicked",
        4,
        "Psst",
    )
    page = member_client.get(f"/mails/deliveries/{source.pk}/").content.decode()
    assert "those who have not clicked" in page and "Cancel plan" in page
    member_client.post(f"/mails/plans/{plan.pk}/cancel/")
    plan.refresh_from_db()
    assert plan.status == "cancelled"

    mail = source.mail
    form = member_client.get(f"/mails/{mail.pk}/edit/").content.decode()
    assert 'id="compose-plan"' in form
    data = {
        "name": mail.name,
        "kind": "basic",
        "from_address": mail.from_address,
        "subject": mail.subject,
        "text_body": mail.text_body,
        "html_body": mail.html_body,
        "error_threshold": "5",
        "duplicate_rule": "ignore",
        "address_field": "email",
        "open_tracking": "on",
        "click_tracking": "on",
        "filter": "",
        "h-TOTAL_FORMS": "0",
        "h-INITIAL_FORMS": "0",
        "plan-audience": "not_opened",
        "plan-days": "0",
    }
    r = member_client.post(f"/mails/{mail.pk}/edit/", data)
    assert r.status_code == 400 and redelivery.mail_plan(mail) is None
    r = member_client.post(f"/mails/{mail.pk}/edit/", data | {"plan-days": "2"})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert redelivery.mail_plan(mail).days == 2
    assert (
        "Planned re-delivery: to those who have not opened, 2 days"
        in member_client.get(f"/mails/{mail.pk}/").content.decode()
    )


def test_the_japanese_screens_are_translated(member, source):
    ja = client_for(member, "ja")
    page = ja.get(f"/mails/deliveries/{source.pk}/redeliver/").content.decode()
    assert "再配信" in page and "未開封" in page
