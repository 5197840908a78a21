from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from okuru.accounts.models import OperationLog
from okuru.customers import design
from okuru.customers.models import Customer, Field

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.fixture
def fields(db):
    design.add_field("note", "Note", "text")
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_prints_a_summary(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    path = tmp_path / "in.csv"
    path.write_text(f"Customer ID,Note,created\n{c.id},x,\n,y,\n")
    out, _err = run("import", str(path), "--mode", "upsert", "--key", "customer_id")
    assert out.splitlines() == [
        "Encoding: utf-8",
        "Rows: 2",
        "Inserted: 1",
        "Updated: 1",
        "Skipped: 0",
        "Rejected: 0",
        "Ignored columns (Okuru sets them): created",
    ]
    c.refresh_from_db()
    assert c.data == {"note": "x"}
    entry = OperationLog.objects.get(action="import")
    assert (entry.operator, entry.target, entry.detail["inserted"]) == (None, "in.csv", 1)


def test_import_fails_with_rejected_rows_and_lists_them(fields, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("Customer ID,Plan\n,gold\n,pro\n,silver\n")
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command(
            "import", str(path), "--mode=insert", "--key=customer_id", stdout=out, stderr=out
        )
    assert str(info.value) == "2 rows were rejected."
    assert out.getvalue().splitlines()[-3:] == [
        "Errors (the first 2 of 2):",
        "  Row 2, Plan: not one of the choices: gold",
        "  Row 4, Plan: not one of the choices: silver",
    ]
    assert Customer.objects.count() == 1


def test_import_dry_run_changes_nothing(fields, tmp_path, owner):
    path = tmp_path / "in.csv"
    path.write_text("Customer ID,Note\n,x\n")
    out, _err = run(
        "import", str(path), "--mode", "insert", "--key", "customer_id", "--dry-run",
        "--operator", "owner",
    )  # fmt: skip
    assert out.splitlines()[:4] == [
        "Dry run: nothing was changed.",
        "Encoding: utf-8",
        "Rows: 1",
        "Inserted: 1",
    ]
    assert Customer.objects.count() == 0
    assert OperationLog.objects.get(action="import_dry_run").operator == owner


def test_import_refuses_a_bad_file(fields, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("Nickname\nx\n")
    with pytest.raises(CommandError) as info:
        run("import", str(path), "--mode", "update", "--key", "note")
    assert str(info.value) == (
        "Note cannot be the key: the key is Customer ID or a unique field (make the field unique"
        " first)."
    )
    with pytest.raises(CommandError) as info:
        run("import", str(tmp_path / "missing.csv"), "--mode", "update", "--key", "customer_id")
    assert str(info.value) == f"No such file: {tmp_path / 'missing.csv'}"
    with pytest.raises(CommandError) as info:
        run("import", str(path), "--mode", "update", "--key", "customer_id", "--operator", "zz")
    assert str(info.value) == "No such operator: zz"


def test_export_writes_the_file(fields, tmp_path, owner):
    c = Customer.objects.create(email="a@example.com", data={"plan": "pro", "note": "=x"})
    Customer.objects.create(email="b@example.com", data={"plan": "free"})
    path = tmp_path / "out.csv"
    tree = json.dumps(
        {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]}
    )
    out, _err = run(
        "export", str(path), "--fields", "customer_id,email,note", "--filter", tree,
        "--operator", "owner",
    )  # fmt: skip
    assert out == f"Exported 1 customer to {path}.\n"
    assert path.read_bytes().decode("utf-8-sig").splitlines() == [
        "Customer ID,PC e-mail,Note",
        f"{c.id},a@example.com,'=x",
    ]
    entry = OperationLog.objects.get(action="export")
    assert (entry.operator, entry.detail["rows"]) == (owner, 1)
    assert not (tmp_path / "out.csv.part").exists()


def test_export_in_cp932_and_by_view(fields, tmp_path):
    from okuru.customers.models import View

    Customer.objects.create(email="a@example.com", data={"note": "漢字"})
    View.objects.create(name="All", filter={}, fields=["email", "note"])
    path = tmp_path / "out.csv"
    run("export", str(path), "--view", "All", "--encoding", "cp932")
    assert path.read_bytes().decode("cp932").splitlines() == [
        "PC e-mail,Note",
        "a@example.com,漢字",
    ]


def test_export_refuses_bad_requests(fields, tmp_path):
    path = str(tmp_path / "out.csv")
    with pytest.raises(CommandError) as info:
        run("export", path, "--fields", "email,nope")
    assert str(info.value) == "Unknown field: nope"
    with pytest.raises(CommandError) as info:
        run("export", path, "--fields", "email", "--filter", "{bad")
    assert str(info.value).startswith("The filter is not valid JSON: ")
    with pytest.raises(CommandError) as info:
        run("export", path, "--view", "Nope")
    assert str(info.value) == "No such database view: Nope"
    assert not (tmp_path / "out.csv").exists()


def test_fields_add_list_rename_delete(db, owner):
    out, _err = run(
        "fields", "add", "member_no", "--type", "text", "--label", "Member number", "--unique",
        "--required", "--operator", "owner",
    )  # fmt: skip
    assert out == "Added the field member_no (Member number).\n"
    run("fields", "add", "plan", "--type", "select", "--label", "Plan", "--choices", "free, pro")
    field = Field.objects.get(key="member_no")
    assert (field.unique, field.required, field.type) == (True, True, "text")
    assert Field.objects.get(key="plan").choices == ["free", "pro"]
    out, _err = run("fields", "list")
    lines = out.splitlines()
    assert lines[0] == "customer_id\tinteger\tCustomer ID\tstandard unique"
    assert lines[-2:] == [
        "member_no\ttext\tMember number\trequired unique",
        "plan\tselect\tPlan\t\tfree,pro",
    ]
    out, _err = run("fields", "rename", "plan", "Price plan")
    assert out == "Renamed the field plan to Price plan.\n"
    Customer.objects.create(email="a@example.com", data={"plan": "pro", "member_no": "1"})
    with pytest.raises(CommandError) as info:
        run("fields", "delete", "plan")
    assert (
        str(info.value)
        == "Deleting plan deletes its data from every customer: add --yes to confirm."
    )
    out, _err = run("fields", "delete", "plan", "--yes")
    assert out == "Deleted the field plan and its data.\n"
    assert Customer.objects.get().data == {"member_no": "1"}
    actions = list(OperationLog.objects.order_by("id").values_list("action", "operator__username"))
    assert actions == [
        ("field_add", "owner"),
        ("field_add", None),
        ("field_rename", None),
        ("field_delete", None),
    ]


def test_fields_add_refuses_bad_input(db):
    with pytest.raises(CommandError) as info:
        run("fields", "add", "Bad Key", "--type", "text", "--label", "X")
    assert str(info.value) == "key: Use lower-case letters, digits and _ ; start with a letter."
    with pytest.raises(CommandError) as info:
        run("fields", "add", "email", "--type", "text", "--label", "X")
    assert str(info.value) == "key: This key is reserved for a standard field."
    with pytest.raises(CommandError) as info:
        run("fields", "add", "plan", "--type", "select", "--label", "Plan")
    assert str(info.value) == "choices: A select field needs at least one choice."
    with pytest.raises(CommandError) as info:
        run("fields", "delete", "nope", "--yes")
    assert str(info.value) == "No such field: nope"
    assert not Field.objects.exists()


def test_customers_count(fields):
    Customer.objects.create(email="a@example.com", data={"plan": "pro"})
    Customer.objects.create(email="b@example.com", data={"plan": "free"})
    assert run("customers", "count") == ("2\n", "")
    tree = json.dumps(
        {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]}
    )
    assert run("customers", "count", "--filter", tree) == ("1\n", "")
    with pytest.raises(CommandError) as info:
        run("customers", "count", "--filter", '{"match": "some"}')
    assert str(info.value) == "match must be all or any, not some"
