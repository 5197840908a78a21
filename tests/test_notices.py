"""Notices tell the whole story: an import's (operator, time, counts, dry run), a finished
delivery's (sent, errors, unknown; in the app and by e-mail), and a reserved delivery shown as
reserved rather than as too old to be a source."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail as outbox
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from okuru.accounts.models import Job, Notification
from okuru.customers.models import Customer
from okuru.mailings import sending
from okuru.mailings.models import Delivery
from okuru.mailings.testing import Sink, drain, make_customers, make_mail, make_relay, start
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"
    settings.NOTIFY_BY_EMAIL = True


def run_import(client, capture, dry_run: bool) -> Job:
    Customer.objects.create(email="old@example.com")
    old = Customer.objects.get().pk
    text = f"Customer ID,PC e-mail\n{old},old2@example.com\n,new@example.com\n999,x@example.com\n"
    data = {
        "file": SimpleUploadedFile("people.csv", text.encode(), content_type="text/csv"),
        "mode": "upsert",
        "key": "customer_id",
        "encoding": "auto",
        "dry_run": "on" if dry_run else "",
    }
    with capture(execute=True):
        client.post("/import/", data)
    return Job.objects.get()


def test_an_import_notice_gives_operator_time_file_and_counts(
    member, member_client, django_capture_on_commit_callbacks
):
    job = run_import(member_client, django_capture_on_commit_callbacks, dry_run=False)
    notice = Notification.objects.get(operator=member)
    assert re.fullmatch(
        f"Import #{job.pk} \\(people.csv\\) by {member.username} finished at {TIME}:"
        " 1 inserted, 1 updated, 0 skipped, 1 rejected.",
        notice.text,
    ), notice.text
    assert notice.link == f"/accounts/jobs/{job.pk}/"
    assert [m.subject for m in outbox.outbox] == [f"[Okuru] {notice.text}"]


def test_a_dry_run_notice_says_it_was_a_dry_run(
    member, member_client, django_capture_on_commit_callbacks
):
    job = run_import(member_client, django_capture_on_commit_callbacks, dry_run=True)
    notice = Notification.objects.get(operator=member)
    assert re.fullmatch(
        f"Dry run of import #{job.pk} \\(people.csv\\) by {member.username} at {TIME},"
        " nothing was changed: 1 would be inserted, 1 updated, 0 skipped, 1 rejected.",
        notice.text,
    ), notice.text


def test_the_import_notice_is_in_the_operators_language(member, django_capture_on_commit_callbacks):
    member.language = "ja"
    member.save(update_fields=["language"])
    job = run_import(client_for(member, "ja"), django_capture_on_commit_callbacks, dry_run=True)
    text = Notification.objects.get(operator=member).text
    assert text.startswith(f"インポート #{job.pk} (people.csv) のテスト実行")
    assert "何も変更していません" in text and "新規登録 1 件" in text


@pytest.mark.parametrize("language, expected", [("en", "finished at"), ("ja", "が終了")])
def test_a_finished_delivery_tells_its_operator(
    member, settings, language, expected, django_capture_on_commit_callbacks
):
    member.language = language
    member.email = "op@shop.example"
    member.save(update_fields=["language", "email"])
    make_customers(5, domain="notice.example")
    with Sink() as sink:
        make_relay(sink.port)
        sink.handler.rules["user3@notice.example"] = ["550 5.1.1 No such user"]
        delivery = start(make_mail(name="Autumn"))
        Delivery.objects.filter(pk=delivery.pk).update(created_by=member)
        w = sending.Worker(sending.Config(batch_size=10, idle_sleep=0.01))
        with django_capture_on_commit_callbacks(execute=True) as told:
            drain(w, delivery)
        w.close()
    assert len(told) == 1
    delivery.refresh_from_db()
    assert delivery.status == "completed"
    notice = Notification.objects.get(operator=member)
    assert notice.link == f"/mails/deliveries/{delivery.pk}/"
    assert expected in notice.text
    numbers = (delivery.sent_count, delivery.failed_count, delivery.unknown_count)
    assert numbers == (4, 1, 0)
    if language == "en":
        assert re.fullmatch(
            f"Delivery #{delivery.pk} “Autumn” finished at {TIME}: sent 4, errors 1, unknown 0.",
            notice.text,
        ), notice.text
    assert [m.to for m in outbox.outbox] == [["op@shop.example"]]
    assert notice.text in outbox.outbox[0].subject


def test_no_delivery_e_mail_when_notices_by_e_mail_are_off(
    member, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFY_BY_EMAIL = False
    member.email = "op@shop.example"
    member.save(update_fields=["email"])
    make_customers(2, domain="quiet.example")
    with Sink() as sink:
        make_relay(sink.port)
        delivery = start(make_mail())
        Delivery.objects.filter(pk=delivery.pk).update(created_by=member)
        w = sending.Worker(sending.Config(batch_size=10, idle_sleep=0.01))
        with django_capture_on_commit_callbacks(execute=True) as told:
            drain(w, delivery)
        w.close()
    assert len(told) == 1
    assert Notification.objects.filter(operator=member).count() == 1
    assert outbox.outbox == []


def test_a_reserved_delivery_is_shown_as_reserved_not_too_old(member_client):
    make_customers(1, domain="resv.example")
    mail = make_mail(name="Later")
    d = Delivery.objects.create(
        mail=mail, status="reserved", scheduled_at=timezone.now() + timedelta(days=1)
    )
    for url in ("/mails/deliveries/", f"/mails/deliveries/{d.pk}/"):
        page = member_client.get(url).content.decode()
        assert "Reserved: not sent yet" in page, url
        assert "Sent more than 3 months ago" not in page, url
        assert "not sent, or sent more than 3 months" not in page, url
