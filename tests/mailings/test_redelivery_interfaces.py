"""Resend and Re-deliver through the REST API and the CLI: the contract integrators' scripts
rely on (outputs, exit codes, status codes), and the rights on every new action."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from okuru.mailings import redelivery
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery, Recipient
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery
from tests.api.client import api_client
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source(sink):
    """Three recipients, user0 opened."""
    d = sent_delivery(3, domain="api.example")
    recording.record_open(Recipient.objects.filter(delivery=d).order_by("id").first().pk)
    Delivery.objects.filter(pk=d.pk).update(status="completed")
    d.refresh_from_db()
    return d


def cli(*args: str) -> str:
    out = StringIO()
    call_command("deliveries", *args, stdout=out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_resend_prints_the_new_mail(source):
    out = cli("resend", str(source.pk))
    mail = Mail.objects.get(resend_of_delivery=source)
    assert out == f"mail {mail.pk} created\n"


def test_cli_preview_prints_counts_and_sends_nothing(source, sink):
    counts = json.loads(cli("redeliver", str(source.pk), "--audience", "not_opened", "--preview"))
    assert counts["matched"] == 2 and counts["after_duplicates"] == 2
    assert counts["excluded"]["refused"] == 0
    assert Delivery.objects.count() == 1 and not sink.handler.messages


def test_cli_redeliver_sends_and_guards_a_repeat(source, sink):
    out = cli("redeliver", str(source.pk), "--audience", "not_opened", "--subject", "Again")
    new = Delivery.objects.exclude(pk=source.pk).get()
    new.refresh_from_db()
    assert out == f"delivery {new.pk} reserved\n"  # the status when the action returned
    sink.wait_for(2)
    assert sorted(sink.received) == ["user1@api.example", "user2@api.example"]
    with pytest.raises(CommandError, match=r"already re-delivered .* \(use --yes\)"):
        cli("redeliver", str(source.pk), "--audience", "not_opened")
    out = cli("redeliver", str(source.pk), "--audience", "not_opened", "--yes")
    assert out.startswith("delivery ")


def test_cli_redeliver_reserves_with_at(source, sink):
    at = (timezone.now() + timedelta(hours=3)).isoformat()
    out = cli("redeliver", str(source.pk), "--audience", "all", "--at", at)
    new = Delivery.objects.exclude(pk=source.pk).get()
    assert out == f"delivery {new.pk} reserved\n" and new.scheduled_at > timezone.now()
    with pytest.raises(CommandError, match="--at needs an ISO 8601 time with an offset"):
        cli("redeliver", str(source.pk), "--audience", "opened", "--at", "tomorrow")


def test_cli_refuses_an_old_source_with_the_reason(source):
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=120))
    for args in (
        ["redeliver", "--audience", "all"],
        ["resend"],
        ["redeliver", "--audience", "all", "--preview"],
    ):
        with pytest.raises(CommandError, match="more than 3 months ago"):
            cli(args[0], str(source.pk), *args[1:])


def test_cli_plans_and_cancels(source):
    out = cli("plan", str(source.pk), "--audience", "not_clicked", "--days", "2")
    plan = PlannedRedelivery.objects.get()
    assert out == f"plan {plan.pk} planned\n"
    assert json.loads(cli("plans", str(source.pk)))[0]["days"] == 2
    assert cli("unplan", str(plan.pk)) == f"plan {plan.pk} cancelled\n"


def test_cli_refuses_an_operator_without_the_sending_right(source):
    make_operator("viewer", ["reports", "mails"])
    for args in (["resend"], ["redeliver", "--audience", "all"]):
        with pytest.raises(CommandError, match="viewer does not have the sending right"):
            cli(args[0], str(source.pk), *args[1:], "--operator", "viewer")


# ---------------------------------------------------------------------------------------------
# API


def test_api_resend_creates_a_draft(member, source):
    r = api_client(member).post(f"/api/deliveries/{source.pk}/resend")
    assert r.status_code == 201, r.content
    mail = Mail.objects.get(pk=r.json()["id"])
    assert mail.resend_of_delivery_id == source.pk and not mail.deliveries.exists()


def test_api_preview_and_redeliver_with_the_repeat_guard(member, source, sink):
    api = api_client(member)
    r = api.get(f"/api/deliveries/{source.pk}/redeliver/preview?audience=opened")
    assert r.status_code == 200 and r.json()["after_duplicates"] == 1
    url = f"/api/deliveries/{source.pk}/redeliver"
    r = api.post(url, {"audience": "opened", "subject": "Thanks"}, content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["source"] == source.pk
    sink.wait_for(1)
    assert list(sink.received) == ["user0@api.example"]
    r = api.post(url, {"audience": "opened"}, content_type="application/json")
    assert r.status_code == 409
    assert "already re-delivered" in r.json()["detail"]
    r = api.post(url, {"audience": "opened", "confirm": True}, content_type="application/json")
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"audience": "everyone"}, "Unknown audience: everyone"),
        ({"audience": "opened", "link": 999}, "only be chosen with clicked"),
        ({"audience": "clicked", "link": 999}, "has no link 999"),
        ({"audience": "all", "at": "2020-01-01T00:00:00+09:00"}, "a time in the future"),
        ({"audience": "all", "at": "2099-01-01T00:00:00"}, "at needs a time zone offset"),
        ({"audience": "all", "subject": "{{ nope"}, "subject"),
        ({}, "audience"),
    ],
)
def test_api_rejects_bad_input_with_a_400_and_the_reason(member, source, body, message):
    r = api_client(member).post(
        f"/api/deliveries/{source.pk}/redeliver", body, content_type="application/json"
    )
    assert r.status_code == 400, r.content
    assert message in r.json()["detail"]
    assert Delivery.objects.count() == 1


def test_api_refuses_an_old_source_with_a_400(member, source):
    Delivery.objects.filter(pk=source.pk).update(started_at=timezone.now() - timedelta(days=95))
    api = api_client(member)
    for r in (
        api.post(f"/api/deliveries/{source.pk}/resend"),
        api.get(f"/api/deliveries/{source.pk}/redeliver/preview?audience=all"),
        api.post(
            f"/api/deliveries/{source.pk}/redeliver",
            {"audience": "all"},
            content_type="application/json",
        ),
    ):
        assert r.status_code == 400
        assert "more than 3 months ago" in r.json()["detail"]


def test_api_plans_on_a_delivery_and_a_mail_and_cancels(member, source):
    api = api_client(member)
    r = api.post(
        f"/api/deliveries/{source.pk}/planned-redeliveries",
        {"audience": "not_opened", "days": 3, "subject": "Reminder"},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    plan_id = r.json()["id"]
    assert (
        api.get(f"/api/deliveries/{source.pk}/planned-redeliveries").json()["items"][0]["id"]
        == plan_id
    )
    assert api.delete(f"/api/planned-redeliveries/{plan_id}").json()["status"] == "cancelled"
    assert api.delete(f"/api/planned-redeliveries/{plan_id}").status_code == 409
    r = api.put(
        f"/api/mails/{source.mail_id}/planned-redelivery",
        {"audience": "not_clicked", "days": 5},
        content_type="application/json",
    )
    assert r.json()["plan"]["mail"] == source.mail_id
    r = api.post(
        f"/api/deliveries/{source.pk}/planned-redeliveries",
        {"audience": "not_opened", "days": 90},
        content_type="application/json",
    )
    assert r.status_code == 400 and "between 1 and 60" in r.json()["detail"]


# ---------------------------------------------------------------------------------------------
# Rights: a permission group without the sending right is refused on each new action


@pytest.fixture
def viewer(db):
    return make_operator("viewer", ["mails", "reports", "export_data", "customers_read"])


def test_api_refuses_each_new_action_without_the_sending_right(viewer, source):
    api = api_client(viewer)
    plan = redelivery.plan_redelivery(None, "not_opened", 2, source=source)
    calls = [
        ("post", f"/api/deliveries/{source.pk}/resend", {}),
        ("post", f"/api/deliveries/{source.pk}/redeliver", {"audience": "all"}),
        (
            "post",
            f"/api/deliveries/{source.pk}/planned-redeliveries",
            {"audience": "not_opened", "days": 1},
        ),
        ("put", f"/api/mails/{source.mail_id}/planned-redelivery", {"audience": "", "days": 1}),
        ("delete", f"/api/planned-redeliveries/{plan.pk}", None),
    ]
    for method, url, body in calls:
        kwargs = {"content_type": "application/json"} if body is not None else {}
        r = (
            getattr(api, method)(url, body or None, **kwargs)
            if body is not None
            else getattr(api, method)(url)
        )
        assert r.status_code == 403, (url, r.content)
        assert "Sending" in r.json()["detail"]
    # Seeing the counts needs the reports right only.
    assert api.get(f"/api/deliveries/{source.pk}/redeliver/preview?audience=all").status_code == 200
    assert Mail.objects.count() == 1 and Delivery.objects.count() == 1


def test_the_screens_refuse_each_new_action_without_the_sending_right(viewer, source):
    web = client_for(viewer)
    plan = redelivery.plan_redelivery(None, "not_opened", 2, source=source)
    for url, data in [
        (f"/mails/deliveries/{source.pk}/resend/", {}),
        (f"/mails/deliveries/{source.pk}/redeliver/", {"audience": "all", "action": "now"}),
        (
            f"/mails/deliveries/{source.pk}/plans/",
            {"plan-audience": "not_opened", "plan-days": "1"},
        ),
        (f"/mails/plans/{plan.pk}/cancel/", {}),
    ]:
        assert web.post(url, data).status_code == 403, url
    # The wizard and its counts can be seen with the reports right.
    assert web.get(f"/mails/deliveries/{source.pk}/redeliver/").status_code == 200
    assert (
        web.get(f"/mails/deliveries/{source.pk}/redeliver/counts/?audience=all").status_code == 200
    )
    plan.refresh_from_db()
    assert plan.status == "planned" and Mail.objects.count() == 1
