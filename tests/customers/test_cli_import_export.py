"""The import/export CLI in the exact forms users' scripts call:
``okuru import FILE --mode insert|update|upsert --key customer_id|FIELD [--encoding
auto|utf-8|cp932] [--dry-run]`` (summary and progress), ``okuru export FILE --fields ...
[--filter JSON] [--view NAME] [--encoding ...]``, ``okuru fields add KEY --type TYPE --label
LABEL`` and ``okuru customers count [--filter JSON]``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from okuru.customers import design
from okuru.customers.management import cli
from okuru.customers.models import Customer, Field, View

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def every_progress_line(monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 0)


def test_import_shows_progress_and_a_summary(db, tmp_path, every_progress_line):
    path = tmp_path / "in.csv"
    path.write_text("Customer ID,PC e-mail\n,a@example.com\n,b@example.com\n")
    out, err = run("import", str(path), "--mode", "insert", "--key", "customer_id")
    assert err.splitlines()[-1] == "… 2 rows read"
    assert out.splitlines()[1:6] == [
        "Rows: 2",
        "Inserted: 2",
        "Updated: 0",
        "Skipped: 0",
        "Rejected: 0",
    ]


def test_export_shows_progress(db, tmp_path, every_progress_line):
    Customer.objects.create(email="a@example.com")
    out, err = run("export", str(tmp_path / "out.csv"), "--fields", "customer_id,email")
    assert err.splitlines()[-1] == "… 1 rows written"
    assert out == f"Exported 1 customer to {tmp_path / 'out.csv'}.\n"


@pytest.mark.parametrize("encoding", ["auto", "cp932"])
def test_import_reads_cp932_detected_or_named(db, tmp_path, encoding):
    design.add_field("shop", "店舗", "text", unique=True)
    path = tmp_path / "sjis.csv"
    path.write_bytes("店舗,PCメールアドレス\n渋谷店,a@example.com\n".encode("cp932"))
    out, _err = run(
        "import", str(path), "--mode", "upsert", "--key", "shop", "--encoding", encoding
    )
    assert out.splitlines()[:3] == ["Encoding: cp932", "Rows: 1", "Inserted: 1"]
    assert Customer.objects.get().data == {"shop": "渋谷店"}


def test_import_with_a_wrong_named_encoding_fails_clearly(db, tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes("Customer ID,PC e-mail\n,あ@example.com\n".encode("cp932"))
    with pytest.raises(CommandError) as info:
        run("import", str(path), "--mode", "insert", "--key", "customer_id", "--encoding", "utf-8")
    assert str(info.value) == (
        "Line 2 is not valid UTF-8 (bytes 82). Choose the file's encoding (UTF-8 or CP932)"
        " or save it again as UTF-8."
    )
    assert not Customer.objects.exists()


def test_update_by_a_unique_field_with_a_dry_run(db, tmp_path):
    design.add_field("member_no", "Member number", "text", unique=True)
    c = Customer.objects.create(email="a@example.com", data={"member_no": "M1"})
    path = tmp_path / "in.csv"
    path.write_text("member_no,email\nM1,new@example.com\nM9,x@example.com\n")
    args = ["import", str(path), "--mode", "update", "--key", "member_no"]
    out, _err = run(*args, "--dry-run")
    assert out.splitlines()[:6] == [
        "Dry run: nothing was changed.",
        "Encoding: utf-8",
        "Rows: 2",
        "Inserted: 0",
        "Updated: 1",
        "Skipped: 1",
    ]
    c.refresh_from_db()
    assert c.email == "a@example.com"
    run(*args)
    c.refresh_from_db()
    assert c.email == "new@example.com"


def test_export_narrows_a_view_with_a_filter(db, tmp_path):
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    a = Customer.objects.create(email="a@example.com", data={"plan": "pro"})
    Customer.objects.create(email="b@example.com", data={"plan": "free"})
    Customer.objects.create(mobile_email="c@example.jp", data={"plan": "pro"})
    View.objects.create(
        name="With PC mail",
        filter={"match": "all", "conditions": [{"field": "email", "op": "has_value"}]},
        fields=["customer_id", "email"],
    )
    pro = json.dumps(
        {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]}
    )
    path = tmp_path / "out.csv"
    run("export", str(path), "--view", "With PC mail", "--filter", pro)
    # The view gives the fields; the filter narrows the view's customers.
    assert path.read_bytes().decode("utf-8-sig").splitlines() == [
        "Customer ID,PC e-mail",
        f"{a.pk},a@example.com",
    ]
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM by default
    run("export", str(path), "--view", "With PC mail", "--fields", "email,plan", "--filter", pro)
    assert path.read_bytes().decode("utf-8-sig").splitlines() == [
        "PC e-mail,Plan",
        "a@example.com,pro",
    ]


@pytest.mark.parametrize(
    "key, type_, extra",
    [
        ("shop", "text", []),
        ("points", "number", []),
        ("born", "date", []),
        ("seen", "datetime", []),
        ("work_mail", "email", []),
        ("plan", "select", ["--choices", "free,pro"]),
        ("hobbies", "multiselect", ["--choices", "golf,tennis"]),
    ],
)
def test_fields_add_makes_each_type(db, key, type_, extra):
    out, _err = run("fields", "add", key, "--type", type_, "--label", key.title(), *extra)
    assert out == f"Added the field {key} ({key.title()}).\n"
    field = Field.objects.get(key=key)
    assert (field.type, field.label) == (type_, key.title())


def test_fields_add_refuses_an_unknown_type(db):
    with pytest.raises(CommandError) as info:
        run("fields", "add", "x", "--type", "colour", "--label", "X")
    assert "argument --type: invalid choice: 'colour'" in str(info.value)


def test_customers_count_counts_with_and_without_a_filter(db):
    Customer.objects.create(email="a@example.com", email_error_count=7)
    Customer.objects.create(email="b@example.com")
    assert run("customers", "count") == ("2\n", "")
    many = {
        "match": "all",
        "conditions": [{"field": "email_error_count", "op": "gt", "value": "5"}],
    }
    assert run("customers", "count", "--filter", json.dumps(many)) == ("1\n", "")
