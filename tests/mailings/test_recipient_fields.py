"""Set a field on these recipients (この配信先に項目を設定): the same result as the CSV route
(export Customer IDs → add a column → import update-only keyed on Customer ID), as a job, from
the report, the API and the CLI."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts import jobs
from okuru.accounts.models import ApiToken, Job, Notification, OperationLog
from okuru.customers import importer
from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, Field
from okuru.mailings import recipient_fields, reports
from okuru.mailings.models import Delivery, Recipient
from okuru.mailings.testing import make_mail
from tests.conftest import client_for, make_operator
from tests.mailings.extraction_setup import make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    return make_source()


@pytest.fixture
def flag(db) -> Field:
    return Field.objects.create(key="haishin_flag", label="配信フラグ", type="text")


def set_field(delivery, count, value="1", *, field="haishin_flag", minus="", clear_others=False):
    choice = recipient_fields.check(
        delivery, count, field, value, minus=minus, clear_others=clear_others
    )
    job = recipient_fields.start(choice, None, enqueue=False)
    jobs.run(job.pk)
    job.refresh_from_db()
    return job


def flagged(key: str = "haishin_flag") -> list[str]:
    return sorted(
        c.email.split("@")[0]
        for c in Customer.objects.all()
        if c.data.get(key) not in (None, "", [])
    )


def csv_route(delivery, count, tmp_path, minus="", value="1") -> None:
    """Export the count's Customer IDs, add a 配信フラグ column, save as CP932, import it."""
    raw = b"".join(reports.iter_recipient_export(delivery, count, [], "cp932", minus))
    rows = list(csv.reader(io.StringIO(raw.decode("cp932"))))
    path = tmp_path / "flags.csv"
    with path.open("w", encoding="cp932", newline="") as f:
        out = csv.writer(f)
        out.writerow([rows[0][0], "配信フラグ"])
        for row in rows[1:]:
            out.writerow([row[0], value])
    result = importer.run_import(path, mode="update", key="customer_id", encoding="cp932")
    assert not result.errors


@pytest.mark.parametrize(
    "count,minus,expected",
    [
        ("all", "", "abcdef"),
        ("sent", "", "abcef"),
        ("sent", "errors", "abce"),
        ("errors", "", "df"),
        ("opened", "", "abe"),
        ("not_opened", "", "cf"),
        ("clicked", "", "ae"),
        ("not_clicked", "errors", "bc"),
    ],
)
def test_it_sets_the_field_on_exactly_the_count_minus_the_other(
    source, flag, count, minus, expected
):
    job = set_field(source["delivery"], count, minus=minus)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert flagged() == list(expected)
    assert job.result["updated"] == len(expected)


def test_a_chosen_links_count_sets_only_its_clickers(source, flag):
    set_field(source["delivery"], f"clicked:{source['new'].pk}")
    assert flagged() == ["e"]


@pytest.mark.parametrize("count,minus", [("sent", ""), ("sent", "errors"), ("opened", "")])
def test_it_gives_the_same_customers_the_same_values_as_the_csv_route(
    source, flag, tmp_path, count, minus
):
    csv_route(source["delivery"], count, tmp_path, minus)
    by_csv = {c.pk: (c.data, c.updated_at > c.created_at) for c in Customer.objects.all()}
    Customer.objects.update(data={})
    set_field(source["delivery"], count, minus=minus)
    by_job = {c.pk: (c.data, c.updated_at > c.created_at) for c in Customer.objects.all()}
    assert by_job == by_csv


@pytest.mark.parametrize(
    "ftype,raw,stored",
    [
        ("flag", "1", True),
        ("integer", "42", 42),
        ("date", "2025-04-01", "2025-04-01"),
        ("select", "B", "B"),
        ("multiselect", "A|B", ["A", "B"]),
    ],
)
def test_each_field_type_is_stored_as_the_import_stores_it(source, tmp_path, ftype, raw, stored):
    choices = ["A", "B"] if "select" in ftype else []
    Field.objects.create(key="f", label="F", type=ftype, choices=choices)
    a = source["people"]["a"]
    path = tmp_path / "one.csv"
    path.write_text(f"Customer ID,f\n{a.pk},{raw}\n", encoding="utf-8")
    importer.run_import(path, mode="update", key="customer_id")
    a.refresh_from_db()
    imported = a.data["f"]
    Customer.objects.update(data={})
    set_field(source["delivery"], "all", raw, field="f")
    a.refresh_from_db()
    assert a.data["f"] == imported
    assert imported == stored


def test_clear_others_removes_old_flags_and_leaves_the_rest_untouched(source, flag):
    people = source["people"]
    outsider = Customer.objects.create(email="z@example.com", data={"haishin_flag": "old"})
    for k in "bd":  # an earlier campaign's flags on recipients who are not in this count
        Customer.objects.filter(pk=people[k].pk).update(data={"haishin_flag": "old"})
    untouched = Customer.objects.create(email="y@example.com", data={"other": "x"})
    before = Customer.objects.get(pk=untouched.pk).updated_at
    job = set_field(source["delivery"], "clicked", "spring", clear_others=True)
    assert flagged() == ["a", "e"]
    assert Customer.objects.get(pk=people["a"].pk).data == {"haishin_flag": "spring"}
    assert "haishin_flag" not in Customer.objects.get(pk=outsider.pk).data
    assert job.result["cleared"] == 3
    assert Customer.objects.get(pk=untouched.pk).updated_at == before


def test_without_clear_others_old_flags_stay(source, flag):
    old = Customer.objects.create(email="z@example.com", data={"haishin_flag": "old"})
    set_field(source["delivery"], "clicked")
    assert Customer.objects.get(pk=old.pk).data == {"haishin_flag": "old"}


def test_deleted_customers_are_skipped(source, flag):
    source["people"]["a"].delete()
    job = set_field(source["delivery"], "opened")
    assert flagged() == ["b", "e"]
    assert job.result["updated"] == 2


def test_it_works_range_by_range(source, flag, monkeypatch):
    monkeypatch.setattr(recipient_fields, "CHUNK_IDS", 2)
    set_field(source["delivery"], "sent", minus="errors", clear_others=True)
    assert flagged() == list("abce")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["sent", "failed", "unknown", "excluded"]),
            st.booleans(),  # bounced later
            st.booleans(),  # opened
            st.booleans(),  # had a flag before
            st.booleans(),  # deleted since
        ),
        max_size=12,
    ),
    count=st.sampled_from(["all", "sent", "errors", "opened", "not_opened"]),
    minus=st.sampled_from(["", "errors", "opened"]),
    chunk=st.integers(1, 5),
)
def test_the_flagged_customers_are_the_count_minus_the_other_whatever_the_ledger(
    flag, rows, count, minus, chunk, monkeypatch
):
    monkeypatch.setattr(recipient_fields, "CHUNK_IDS", chunk)
    Recipient.objects.all().delete()
    Delivery.objects.all().delete()
    Customer.objects.all().delete()
    mail = make_mail(name="Hypothesis")
    d = Delivery.objects.create(mail=mail, status="completed", started_at=timezone.now())
    expected, kept_flags = set(), set()
    for i, (status, bounced, opened, had_flag, deleted) in enumerate(rows):
        c = Customer.objects.create(
            email=f"c{i}@example.com", data={"haishin_flag": "old"} if had_flag else {}
        )
        Recipient.objects.create(
            delivery=d,
            customer_id=c.pk,
            address=c.email,
            status=status,
            error_kind="mailbox_full" if bounced and status == "sent" else "",
            first_open_at=timezone.now() if opened and status == "sent" else None,
        )
        sent = status == "sent"
        is_open = opened and sent
        errored = status == "failed" or (bounced and sent)
        member = {
            "all": True,
            "sent": sent,
            "errors": errored,
            "opened": is_open,
            "not_opened": sent and not is_open,
        }
        in_minus = {"": False, "errors": errored, "opened": is_open}[minus]
        if deleted:
            c.delete()
            continue
        if member[count] and not (minus and minus != count and in_minus):
            expected.add(c.pk)
        elif had_flag:
            kept_flags.add(c.pk)
    if minus == count:
        with pytest.raises(ValidationError):
            recipient_fields.check(d, count, "haishin_flag", "new", minus=minus)
        return
    set_field(d, count, "new", minus=minus)
    got = {c.pk: c.data.get("haishin_flag") for c in Customer.objects.all()}
    assert {pk for pk, v in got.items() if v == "new"} == expected
    assert {pk for pk, v in got.items() if v == "old"} == kept_flags


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"count": "nonsense"}, "Unknown count: nonsense"),
        ({"count": "sent", "minus": "sent"}, "The count to subtract must differ"),
        ({"field": "no_such"}, "No such field: no_such"),
        ({"field": "customer_id"}, "cannot be set on many customers at once"),
        ({"field": "updated_at"}, "cannot be set on many customers at once"),
        ({"field": "refused", "value": "maybe"}, "Not a valid value for refusal flag"),
    ],
)
def test_it_refuses_bad_requests_with_the_reason(source, flag, kwargs, message):
    args = {"count": "sent", "field": "haishin_flag", "value": "1", **kwargs}
    with pytest.raises(ValidationError) as e:
        recipient_fields.check(
            source["delivery"], args["count"], args["field"], args["value"],
            minus=args.get("minus", ""),
        )  # fmt: skip
    assert message in " ".join(e.value.messages)


def test_it_refuses_a_unique_field_and_clearing_a_required_one(source):
    Field.objects.create(key="code", label="Code", type="text", unique=True)
    Field.objects.create(key="shop", label="Shop", type="text", required=True)
    with pytest.raises(ValidationError, match="system's own or unique"):
        recipient_fields.check(source["delivery"], "sent", "code", "x")
    with pytest.raises(ValidationError, match="is required"):
        recipient_fields.check(source["delivery"], "sent", "shop", "x", clear_others=True)
    assert "code" not in [s.key for s in recipient_fields.settable_fields(catalogue())]


def test_a_purged_delivery_is_refused(source, flag):
    reports.purge_delivery(source["delivery"])
    with pytest.raises(ValidationError, match="purged"):
        recipient_fields.check(source["delivery"], "sent", "haishin_flag", "1")


# ---------------------------------------------------------------------------------------------
# The screen


def test_the_screen_counts_then_starts_the_job_and_logs_it(source, flag):
    operator = make_operator("kato", ["reports", "customers_read", "customers_write"])
    client = client_for(operator)
    url = f"/mails/deliveries/{source['delivery'].pk}/set-field/"
    page = client.get(url + "?count=sent&minus=errors")
    assert page.status_code == 200
    data = {
        "count": "sent",
        "minus": "errors",
        "field": "haishin_flag",
        "value": "1",
        "clear_others": "on",
    }
    checked = client.post(url, {**data, "action": "check"})
    assert "will be set on 4 customers" in checked.content.decode()
    assert flagged() == []
    started = client.post(url, {**data, "action": "start"})
    job = Job.objects.get(kind="set_field")
    assert started.status_code == 302 and started["Location"] == f"/accounts/jobs/{job.pk}/"
    jobs.run(job.pk)  # nothing to do when the task backend already ran it
    assert flagged() == list("abce")
    entry = OperationLog.objects.get(action="delivery.set_field")
    assert entry.operator == operator
    assert entry.detail["minus"] == "errors" and entry.detail["job"] == job.pk
    assert Notification.objects.filter(operator=operator).exists()


def test_the_screen_shows_a_bad_value_on_the_form(source, flag):
    client = client_for(make_operator("kato", ["reports", "customers_read", "customers_write"]))
    url = f"/mails/deliveries/{source['delivery'].pk}/set-field/"
    page = client.post(
        url, {"count": "sent", "minus": "sent", "field": "haishin_flag", "action": "start"}
    )
    assert page.status_code == 400
    assert "The count to subtract must differ" in page.content.decode()
    assert not Job.objects.exists()


@pytest.mark.parametrize("rights", [["reports", "customers_read"], ["customers_write"]])
def test_the_screen_needs_reports_and_customers_write(source, flag, rights):
    client = client_for(make_operator("sato", rights))
    url = f"/mails/deliveries/{source['delivery'].pk}/set-field/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"count": "sent", "field": "haishin_flag"}).status_code == 403


def test_the_report_names_both_counts_and_links_the_shortcut(source, flag):
    client = client_for(make_operator("kato", ["reports", "customers_write", "export_data"]))
    body = client.get(f"/mails/deliveries/{source['delivery'].pk}/").content.decode()
    assert "Recipients: every recipient of the delivery, errors included." in body
    assert "take Sent minus Errors" in body
    assert 'data-set-field="sent-errors"' in body
    assert 'data-export="sent-errors"' in body


def test_the_report_reads_in_japanese(source, flag):
    client = client_for(make_operator("kato", ["reports", "customers_write", "export_data"]), "ja")
    body = client.get(f"/mails/deliveries/{source['delivery'].pk}/").content.decode()
    assert "配信対象" in body and "配信済み" in body
    assert "この配信先に項目を設定" in body


def test_the_export_with_minus_leaves_the_other_counts_recipients_out(source):
    client = client_for(make_operator("kato", ["reports", "export_data"]))
    d = source["delivery"]
    got = client.get(f"/mails/deliveries/{d.pk}/recipients/sent/export/?minus=errors")
    text = b"".join(got.streaming_content).decode("utf-8-sig")
    ids = [line.split(",")[0] for line in text.splitlines()[1:]]
    people = source["people"]
    assert sorted(int(i) for i in ids) == sorted(people[k].pk for k in "abce")


# ---------------------------------------------------------------------------------------------
# API and CLI


def _token(operator) -> str:
    return ApiToken.issue(operator, "test")[1]


def test_the_api_starts_the_job_and_a_dry_run_only_counts(source, flag):
    operator = make_operator("api", ["reports", "customers_write"])
    client = client_for(operator)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {_token(operator)}"}
    url = f"/api/deliveries/{source['delivery'].pk}/set-field"
    body = {"count": "sent", "minus": "errors", "field": "haishin_flag", "value": "1"}
    dry = client.post(url, {**body, "dry_run": True}, content_type="application/json", **auth)
    assert dry.status_code == 200 and dry.json()["expected"] == 4
    assert not Job.objects.exists()
    started = client.post(url, body, content_type="application/json", **auth)
    assert started.status_code == 202, started.content
    job_id = started.json()["job"]["id"]
    jobs.run(job_id)
    assert flagged() == list("abce")
    bad = client.post(url, {**body, "count": "nope"}, content_type="application/json", **auth)
    assert bad.status_code == 400 and "Unknown count: nope" in bad.json()["detail"]


def test_the_api_refuses_a_caller_without_customers_write(source, flag):
    operator = make_operator("api", ["reports"])
    client = client_for(operator)
    r = client.post(
        f"/api/deliveries/{source['delivery'].pk}/set-field",
        {"count": "sent", "field": "haishin_flag", "value": "1"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {_token(operator)}",
    )
    assert r.status_code == 403
    assert not Job.objects.exists()


def test_the_cli_sets_the_field_in_the_foreground(source, flag):
    out = io.StringIO()
    call_command(
        "deliveries", "set-field", str(source["delivery"].pk), "--count", "sent",
        "--minus", "errors", "--field", "haishin_flag", "--value", "1", stdout=out,
    )  # fmt: skip
    assert out.getvalue().strip().startswith("haishin_flag set on 4 customers, cleared on 0")
    assert flagged() == list("abce")


def test_the_cli_refuses_with_the_reason(source, flag):
    with pytest.raises(CommandError, match="Unknown count: nope"):
        call_command(
            "deliveries", "set-field", str(source["delivery"].pk), "--count", "nope",
            "--field", "haishin_flag", "--value", "1",
        )  # fmt: skip
    make_operator("reader", ["reports"])
    with pytest.raises(CommandError, match="customers_write"):
        call_command(
            "deliveries", "set-field", str(source["delivery"].pk), "--count", "sent",
            "--field", "haishin_flag", "--value", "1", "--operator", "reader",
        )  # fmt: skip


def test_a_delivery_older_than_3_months_is_refused_with_the_reason(source, flag):
    Delivery.objects.filter(pk=source["delivery"].pk).update(
        started_at=timezone.now() - timedelta(days=100)
    )
    source["delivery"].refresh_from_db()
    with pytest.raises(ValidationError, match="more than 3 months ago"):
        recipient_fields.check(source["delivery"], "sent", "haishin_flag", "1")
