"""The ``okuru mails`` and ``okuru deliveries`` commands."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.mailings import testing
from okuru.mailings.models import Delivery, Mail, Recipient
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery
from tests.conftest import make_operator

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def delivery():
    d = sent_delivery(3)
    rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    recording.record_open(rows[1].pk)
    Recipient.objects.filter(pk=rows[2].pk).update(status="unknown", sent_at=None)
    from okuru.mailings.ledger import refresh_counts

    refresh_counts(d.pk)
    Delivery.objects.filter(pk=d.pk).update(status="completed")
    d.refresh_from_db()
    d.rows = rows
    return d


def test_create_list_show_preview_and_send_a_mail(tmp_path):
    testing.make_relay(testing.free_port())
    testing.make_customers(2)
    spec = {
        "name": "CLI mail",
        "from_address": "news@shop.example",
        "subject": "Hi {{ customer_id }}",
        "text_body": "Hello",
    }
    path = tmp_path / "mail.json"
    path.write_text(json.dumps(spec))
    assert run("mails", "create", str(path)).startswith("mail ")
    mail = Mail.objects.get(name="CLI mail")
    assert f"{mail.pk}\tbasic\tCLI mail" in run("mails", "list")
    assert json.loads(run("mails", "show", str(mail.pk)))["subject"] == "Hi {{ customer_id }}"
    assert json.loads(run("mails", "preview", str(mail.pk)))["after_duplicates"] == 2
    at = (timezone.now() + timedelta(days=1)).isoformat()
    out = run("mails", "send", str(mail.pk), "--at", at)
    d = Delivery.objects.get(mail=mail)
    assert out.strip() == f"delivery {d.pk} reserved"
    assert run("deliveries", "cancel", str(d.pk)).strip() == f"delivery {d.pk} cancelled"


def test_create_refuses_bad_files(tmp_path):
    path = tmp_path / "mail.json"
    path.write_text(
        json.dumps(
            {"name": "x", "from_address": "a@b.example", "subject": "{{ nope }}", "text_body": "t"}
        )
    )
    with pytest.raises(CommandError, match="Unknown merge field in subject: nope"):
        run("mails", "create", str(path))
    path.write_text("{not json")
    with pytest.raises(CommandError, match="is not valid JSON"):
        run("mails", "create", str(path))
    path.write_text(json.dumps({"name": "x"}))
    with pytest.raises(CommandError, match="Invalid mail: from_address: This field is required."):
        run("mails", "create", str(path))
    assert not Mail.objects.exists()


def test_operator_needs_the_right(tmp_path):
    make_operator("viewer", ["reports"])
    testing.make_customers(1)
    mail = testing.make_mail()
    with pytest.raises(CommandError, match="viewer does not have the sending right."):
        run("mails", "send", str(mail.pk), "--operator", "viewer")
    assert not Delivery.objects.exists()


def test_list_and_show_deliveries(delivery):
    out = run("deliveries", "list")
    assert f"{delivery.pk}\tcompleted" in out and "sent=2" in out and "\tsource" in out
    report = json.loads(run("deliveries", "show", str(delivery.pk)))
    assert report["sent"] == 2 and report["opens"]["unique"] == 1


def test_export_a_count_and_events(delivery, tmp_path):
    out = tmp_path / "opened.csv"
    call_command(
        "deliveries", "export", str(delivery.pk), "opened", "--fields", "email", "-o", str(out)
    )
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["Customer ID", "PC e-mail"],
        [str(delivery.rows[1].customer_id), delivery.rows[1].address],
    ]
    events = tmp_path / "events.csv"
    call_command("deliveries", "events", str(delivery.pk), "-o", str(events))
    with events.open(encoding="utf-8-sig", newline="") as f:
        assert [r[1] for r in list(csv.reader(f))[1:]] == ["sent", "sent", "open"]
    assert OperationLog.objects.filter(action="delivery.export_recipients").exists()
    with pytest.raises(CommandError, match="Unknown count: bogus"):
        call_command("deliveries", "export", str(delivery.pk), "bogus", "-o", str(out))


def test_unknown_rows_and_purge(delivery, settings):
    assert run("deliveries", "unknown", str(delivery.pk), "--no-resend").strip() == (
        "1 unknown rows left unsent"
    )
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=200))
    assert run("deliveries", "purge").strip() == "purged 4 rows of 1 deliveries"
    assert not Recipient.objects.filter(delivery=delivery).exists()


def test_state_change_errors_are_reported(delivery):
    with pytest.raises(CommandError, match="only a paused delivery can be resumed"):
        run("deliveries", "resume", str(delivery.pk))
    with pytest.raises(CommandError, match="No such delivery: 999"):
        run("deliveries", "show", "999")
