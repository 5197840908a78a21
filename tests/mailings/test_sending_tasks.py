"""Send now through the task, the reconciler, the ``send`` command, preview and test sends."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone, translation

from okuru.accounts.models import OperationLog
from okuru.customers.models import Customer, Field
from okuru.mailings import actions, sending
from okuru.mailings.models import Delivery, Recipient
from okuru.mailings.testing import make_customers, make_mail, start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    # Messages are asserted in English; the default language is Japanese.
    with translation.override("en"):
        yield


def test_send_now_kicks_a_task_that_sends_everything(
    sink, owner, django_capture_on_commit_callbacks
):
    make_customers(30)
    mail = make_mail()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = actions.send_now(mail, owner)
    delivery.refresh_from_db()
    assert delivery.status == "completed" and delivery.sent_count == 30
    assert delivery.created_by == owner
    assert sink.received.total() == 30
    assert OperationLog.objects.filter(action="delivery.reserve", operator=owner).count() == 1


def test_reconcile_starts_due_reservations_and_kicks_stalled_deliveries(sink):
    make_customers(3)
    mail = make_mail()
    due = actions.create_delivery(mail, None)
    actions.reserve(due, None, timezone.now() + timedelta(hours=1))
    Delivery.objects.filter(pk=due.pk).update(scheduled_at=timezone.now())
    stalled = start(make_mail(name="other"))
    Delivery.objects.filter(pk=stalled.pk).update(
        last_activity_at=timezone.now() - timedelta(hours=1)
    )
    finished = start(make_mail(name="done"))
    Recipient.objects.filter(delivery=finished).update(status="sent")
    Delivery.objects.filter(pk=finished.pk).update(
        last_activity_at=timezone.now() - timedelta(hours=1)
    )

    assert sorted(sending.reconcile()) == sorted([due.pk, stalled.pk])
    due.refresh_from_db()
    finished.refresh_from_db()
    assert due.status == "running" and due.recipient_count == 3
    assert finished.status == "completed"
    assert sending.reconcile() == [stalled.pk]  # repeatable: the database says what is left


def test_the_send_command_previews_and_reserves(sink, owner):
    make_customers(4)
    mail = make_mail()
    out = StringIO()
    call_command("send", mail.pk, "--preview", stdout=out)
    assert json.loads(out.getvalue())["after_duplicates"] == 4
    out = StringIO()
    call_command(
        "send", mail.pk, "--at", "2099-01-01T09:00:00+09:00", "--operator", "owner", stdout=out
    )
    delivery = Delivery.objects.get(mail=mail)
    assert out.getvalue().strip() == f"delivery {delivery.pk} reserved"
    assert delivery.scheduled_at.year == 2099 and delivery.created_by == owner
    with pytest.raises(CommandError, match="No such mail: 999"):
        call_command("send", 999)
    with pytest.raises(CommandError, match="--at needs an ISO 8601 time with an offset."):
        call_command("send", mail.pk, "--at", "tomorrow")


def test_preview_renders_as_a_chosen_customer(db):
    Field.objects.create(key="name", label="Name", type="text")
    c = Customer.objects.create(email="a@example.com", data={"name": "Aoki"})
    mail = make_mail(subject="Hi {{ name }}", text_body="{{ name }} / {{ customer_id }}")
    r = actions.preview_message(mail, c)
    assert r.subject == "Hi Aoki" and r.text == f"Aoki / {c.pk}"
    assert actions.preview_message(mail).subject == "Hi"


def test_a_test_send_goes_to_the_given_addresses_only(sink, member):
    make_customers(3)
    mail = make_mail()
    assert actions.send_test_message(mail, ["qa@example.org", "boss@example.org"], member) == 2
    assert sink.received == {"qa@example.org": 1, "boss@example.org": 1}
    assert not Delivery.objects.exists()
    assert OperationLog.objects.get(action="mail.test_send").detail == {
        "addresses": ["qa@example.org", "boss@example.org"]
    }
    with pytest.raises(ValidationError) as e:
        actions.send_test_message(mail, ["not an address"], member)
    assert e.value.messages == ["Not a valid e-mail address: not an address"]
    sink.handler.rules["gone@example.org"] = ["550 5.1.1 No such user"]
    with pytest.raises(ValidationError) as e:
        actions.send_test_message(mail, ["gone@example.org"], member)
    assert e.value.messages == [
        "The relay refused the test message to gone@example.org: 550 5.1.1 No such user"
    ]
