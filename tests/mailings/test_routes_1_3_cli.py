"""Routes 1–3 through the CLI, with real sends to an aiosmtpd sink.

The source is a real delivery of a basic mail to six customers: ``ok1``–``ok4`` accepted,
``bad`` refused at RCPT (an error at send time), ``late`` accepted and bounced later; ``ok1``
and ``ok2`` opened it. Then one customer is deleted. Each route must reach exactly its
customers, never a deleted one, and refuse a source older than 3 months.

1. basic mail + mail delivery history filter (``okuru mails create`` JSON);
2. export the recipients (Customer ID only) → add a 配信フラグ column in a file saved as CP932
   → ``okuru import`` update-only keyed on Customer ID → a mail filtered on "配信フラグ has a
   value" → send;
3. the same from the report's counts: "sent" minus "errors", by the CSV route and by the
   ``okuru deliveries set-field`` shortcut.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from okuru.customers.models import Customer, Field
from okuru.mailings.models import Delivery, Mail, Recipient
from okuru.tracking import recording

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ("ok1", "ok2", "ok3", "ok4", "bad", "late")


def run(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def mail_file(tmp_path, name: str, tree: dict) -> str:
    path = tmp_path / f"{name}.json"
    spec = {
        "name": name,
        "kind": "basic",
        "from_address": "news@shop.example",
        "subject": f"{name} {{{{ customer_id }}}}",
        "text_body": "Hello",
        "filter": tree,
    }
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return str(path)


def create_and_send(tmp_path, sink, name: str, tree: dict) -> set[str]:
    """``okuru mails create`` then ``okuru mails send``; who received the mail."""
    out = run("mails", "create", mail_file(tmp_path, name, tree))
    mail = Mail.objects.get(name=name)
    assert out == f"mail {mail.pk} created\n"
    before = len(sink.handler.messages)
    out = run("mails", "send", str(mail.pk))
    delivery = Delivery.objects.get(mail=mail)
    assert out.startswith(f"delivery {delivery.pk} ")
    delivery.refresh_from_db()
    sink.wait_for(before + delivery.sent_count)
    got = {rcpt for _from, rcpt, data in sink.handler.messages[before:]}
    assert all(name.encode() in data for *_x, data in sink.handler.messages[before:])
    return {a.split("@")[0] for a in got}


@pytest.fixture
def flag(db) -> Field:
    return Field.objects.create(key="haishin_flag", label="配信フラグ", type="text")


@pytest.fixture
def source(sink, tmp_path, flag) -> Delivery:
    people = {n: Customer.objects.create(email=f"{n}@routes.example") for n in NAMES}
    people["other"] = Customer.objects.create(email="other@elsewhere.example")
    sink.handler.rules["bad@routes.example"] = ["550 5.1.1 No such user"]
    tree = {
        "match": "all",
        "conditions": [{"field": "email", "op": "contains", "value": "@routes."}],
    }
    assert create_and_send(tmp_path, sink, "Source", tree) == {"ok1", "ok2", "ok3", "ok4", "late"}
    delivery = Delivery.objects.get(mail__name="Source")
    rows = {r.address.split("@")[0]: r for r in Recipient.objects.filter(delivery=delivery)}
    assert rows["bad"].status == "failed" and rows["bad"].error_kind == "unknown_user"
    for n in ("ok1", "ok2"):
        recording.record_open(rows[n].pk)
    # An asynchronous bounce marks an accepted row (the bounces app does this on a real DSN).
    Recipient.objects.filter(pk=rows["late"].pk).update(error_kind="mailbox_full")
    people["ok4"].delete()  # deleted since: never a recipient again
    delivery.refresh_from_db()
    return delivery


def make_old(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=100))


# ---------------------------------------------------------------------------------------------
# Route 1: basic mail + mail delivery history filter


@pytest.mark.parametrize(
    "event,expected",
    [
        ("sent", {"ok1", "ok2", "ok3", "late"}),
        ("opened", {"ok1", "ok2"}),
        ("not_opened", {"ok3", "late"}),
        # "bad" had a hard error (error count 99): the send-time exclusion keeps it out.
        ("errored", {"late"}),
        ("not_errored", {"ok1", "ok2", "ok3"}),
    ],
)
def test_route_1_reaches_exactly_the_history_filters_customers(
    source, sink, tmp_path, event, expected
):
    tree = {
        "match": "all",
        "conditions": [{"kind": "delivery_history", "delivery": source.pk, "event": event}],
    }
    assert create_and_send(tmp_path, sink, f"Route 1 {event}", tree) == expected


def test_route_1_refuses_a_source_older_than_3_months(source, tmp_path):
    make_old(source)
    tree = {
        "match": "all",
        "conditions": [{"kind": "delivery_history", "delivery": source.pk, "event": "sent"}],
    }
    with pytest.raises(CommandError, match="more than 3 months ago"):
        run("mails", "create", mail_file(tmp_path, "Too old", tree))
    assert not Mail.objects.filter(name="Too old").exists()


# ---------------------------------------------------------------------------------------------
# Routes 2 and 3: the delivery flag (配信フラグ) by CSV


HAS_FLAG = {"match": "all", "conditions": [{"field": "haishin_flag", "op": "has_value"}]}


def flag_by_csv(source: Delivery, tmp_path, count: str, minus: str = "") -> None:
    """Export Customer IDs (CP932), add a 配信フラグ column in Excel's encoding, import it
    update-only keyed on Customer ID."""
    exported = tmp_path / f"export-{count}.csv"
    args = ["deliveries", "export", str(source.pk), count, "--encoding", "cp932"]
    run(*args, *(["--minus", minus] if minus else []), "-o", str(exported))
    with exported.open(encoding="cp932", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Customer ID"]
    edited = tmp_path / f"flags-{count}.csv"
    with edited.open("w", encoding="cp932", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Customer ID", "配信フラグ"])
        out.writerows([row[0], "対象"] for row in rows[1:])
    assert "配信フラグ".encode("cp932") in edited.read_bytes()
    out = run("import", str(edited), "--mode", "update", "--key", "customer_id", "--encoding",
              "cp932")  # fmt: skip
    assert "error" not in out.lower() or "0 error" in out.lower()


def test_route_2_flags_the_recipients_by_csv_and_reaches_exactly_them(source, sink, tmp_path):
    flag_by_csv(source, tmp_path, "all")
    flagged = Customer.objects.filter(data__haishin_flag="対象")
    assert sorted(c.email.split("@")[0] for c in flagged) == ["bad", "late", "ok1", "ok2", "ok3"]
    # The refused address stays a customer with the flag; its error keeps it from nothing here
    # (error count 99 ≥ threshold): the send-time exclusions still apply.
    got = create_and_send(tmp_path, sink, "Route 2", HAS_FLAG)
    assert got == {"ok1", "ok2", "ok3", "late"}
    assert "other" not in got and "ok4" not in got


def test_route_3_sent_minus_errors_by_csv_removes_the_error_recipients(source, sink, tmp_path):
    flag_by_csv(source, tmp_path, "sent", minus="errors")
    assert create_and_send(tmp_path, sink, "Route 3", HAS_FLAG) == {"ok1", "ok2", "ok3"}


def test_route_3_by_the_set_field_shortcut_gives_the_same_recipients(source, sink, tmp_path):
    Customer.objects.filter(email="other@elsewhere.example").update(data={"haishin_flag": "old"})
    out = run(
        "deliveries", "set-field", str(source.pk), "--count", "sent", "--minus", "errors",
        "--field", "haishin_flag", "--value", "対象", "--clear-others",
    )  # fmt: skip
    assert out.startswith("haishin_flag set on 3 customers, cleared on 1")
    assert create_and_send(tmp_path, sink, "Route 3 shortcut", HAS_FLAG) == {"ok1", "ok2", "ok3"}


def test_without_clearing_an_old_flag_widens_the_target(source, sink, tmp_path):
    Customer.objects.filter(email="other@elsewhere.example").update(data={"haishin_flag": "old"})
    flag_by_csv(source, tmp_path, "sent", minus="errors")
    got = create_and_send(tmp_path, sink, "Route 3 widened", HAS_FLAG)
    assert got == {"ok1", "ok2", "ok3", "other"}  # the trap clear-others removes


def test_routes_2_and_3_refuse_a_source_older_than_3_months(source):
    make_old(source)
    listed = run("deliveries", "list")
    assert f"{source.pk}\tcompleted" in listed and "summary-only" in listed
    with pytest.raises(CommandError, match="more than 3 months ago"):
        run(
            "deliveries", "set-field", str(source.pk), "--count", "sent",
            "--field", "haishin_flag", "--value", "1",
        )  # fmt: skip
    assert not Customer.objects.filter(data__has_key="haishin_flag").exists()
