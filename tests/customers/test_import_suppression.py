"""The import rules that matter most to users: the suppression
columns (refusal flag, unsubscribe flags, error counts) change only when the file has them, an
import never re-subscribes anyone; "Synergy!ID" means the Customer ID; a Customer ID column is
refused unless it is the key (also through the API's job); and the 配信フラグ (delivery flag)
route of DESIGN.md: export Customer IDs, add a text field, import "update existing only" keyed
on Customer ID, filter "has a value"."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import translation

from okuru.accounts.models import ApiToken, Job
from okuru.customers import design, filters
from okuru.customers.importer import run_import
from okuru.customers.models import Customer, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def suppressed():
    Topic.objects.create(key="news", name="News")
    Topic.objects.create(key="sale", name="Sale")
    design.add_field("member_no", "Member number", "text", unique=True)
    return Customer.objects.create(
        email="a@example.com",
        refused=True,
        email_error_count=5,
        mobile_error_count=99,
        unsubscribed=["news"],
        data={"member_no": "M1"},
    )


def suppression(c: Customer) -> tuple:
    c.refresh_from_db()
    return (c.refused, c.email_error_count, c.mobile_error_count, c.unsubscribed)


@pytest.mark.parametrize("mode", ["update", "upsert"])
def test_a_file_without_the_suppression_columns_leaves_them_alone(suppressed, tmp_path, mode):
    path = tmp_path / "in.csv"
    path.write_text("Member number,PC e-mail\nM1,new@example.com\n")
    result = run_import(path, mode=mode, key="member_no")
    assert result.updated == 1
    assert suppression(suppressed) == (True, 5, 99, ["news"])
    assert suppressed.email == "new@example.com"


def test_synergy_id_keyed_upsert_leaves_them_alone_too(suppressed, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"Synergy!ID,Member number\n{suppressed.pk},M2\n")
    assert run_import(path, mode="upsert", key="customer_id").updated == 1
    assert suppression(suppressed) == (True, 5, 99, ["news"])
    assert suppressed.data == {"member_no": "M2"}


def test_each_suppression_column_changes_only_itself(suppressed, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"Customer ID,unsubscribed\n{suppressed.pk},news|sale\n")
    run_import(path, mode="update", key="customer_id")
    assert suppression(suppressed) == (True, 5, 99, ["news", "sale"])
    path.write_text(f"Customer ID,mobile_error_count\n{suppressed.pk},0\n")
    run_import(path, mode="update", key="customer_id")
    assert suppression(suppressed) == (True, 5, 0, ["news", "sale"])
    # Present and empty is a choice the operator made in the file: it clears.
    path.write_text(f"Customer ID,refused,unsubscribed\n{suppressed.pk},0,\n")
    run_import(path, mode="update", key="customer_id")
    assert suppression(suppressed) == (False, 5, 0, [])


def test_new_customers_start_unsuppressed(suppressed, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("Member number,PC e-mail\nM9,b@example.com\n")
    assert run_import(path, mode="upsert", key="member_no").inserted == 1
    assert suppression(Customer.objects.get(email="b@example.com")) == (False, 0, 0, [])


def test_the_api_import_job_refuses_a_customer_id_column_when_the_key_is_a_field(
    suppressed, member, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    _token, key = ApiToken.issue(member, "sync")
    client = Client(headers={"authorization": f"Bearer {key}", "accept-language": "en"})
    upload = SimpleUploadedFile(
        "in.csv", f"Customer ID,Member number\n{suppressed.pk},M5\n".encode()
    )
    with override_settings(MEDIA_ROOT=tmp_path), django_capture_on_commit_callbacks(execute=True):
        r = client.post("/api/imports", {"file": upload, "mode": "update", "key": "member_no"})
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == Job.Status.FAILED
    assert job.error == (
        "Row 1, Customer ID: A Customer ID column is only allowed when Customer ID is the key:"
        " choose Customer ID as the key or remove the column."
    )
    suppressed.refresh_from_db()
    assert suppressed.data == {"member_no": "M1"}


def test_the_delivery_flag_route_round_trips_through_the_cli(tmp_path, suppressed):
    """DESIGN.md route 2, as an operator does it in Japanese: export the Customer IDs, add a
    text field 配信フラグ, add the column to the file, import it "update existing only" keyed on
    Customer ID, then filter 配信フラグ has a value. Nobody's suppression changes."""
    others = [Customer.objects.create(email=f"u{i}@example.com") for i in range(3)]
    out = tmp_path / "recipients.csv"
    with translation.override("ja"):
        call_command("export", str(out), "--fields", "customer_id", stdout=io.StringIO())
        call_command(
            "fields", "add", "flag", "--type", "text", "--label", "配信フラグ",
            stdout=io.StringIO(),
        )  # fmt: skip
    lines = out.read_bytes().decode("utf-8-sig").splitlines()
    assert lines[0] == "顧客ID"
    # The operator keeps the first two recipients and adds the flag column in a spreadsheet.
    flagged = [lines[0] + ",配信フラグ"] + [f"{line},1" for line in lines[1:3]]
    back = tmp_path / "flagged.csv"
    back.write_bytes(("\r\n".join(flagged) + "\r\n").encode("utf-8-sig"))
    with translation.override("ja"):
        call_command(
            "import", str(back), "--mode", "update", "--key", "customer_id", stdout=io.StringIO()
        )
    tree = {"match": "all", "conditions": [{"field": "flag", "op": "has_value"}]}
    assert sorted(filters.filtered(tree).values_list("pk", flat=True)) == sorted(
        [suppressed.pk, others[0].pk]
    )
    count = io.StringIO()
    call_command("customers", "count", "--filter", json.dumps(tree), stdout=count)
    assert count.getvalue() == "2\n"
    assert suppression(suppressed) == (True, 5, 99, ["news"])
