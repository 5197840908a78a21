"""A first import of new people: a file without any key column inserts every row, on the
screen, in the engine and from ``okuru import``."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import translation

from okuru.accounts.models import Job
from okuru.customers import design
from okuru.customers.importer import ImportFailed, run_import
from okuru.customers.models import Customer

pytestmark = pytest.mark.django_db

NEW_PEOPLE = "PCメールアドレス,氏名\na@example.com,青木\nb@example.com,馬場\nc@example.com,千葉\n"


@pytest.fixture
def fields(db):
    design.add_field("name", "氏名", "text")
    design.add_field("code", "Member code", "text", unique=True)


@pytest.fixture
def new_people(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text(NEW_PEOPLE, encoding="utf-8")
    return path


@pytest.mark.parametrize("key", ["customer_id", "code"])
def test_insert_without_a_key_column_inserts_every_row(fields, new_people, key):
    Customer.objects.create(email="old@example.com", data={"name": "古川"})
    result = run_import(new_people, mode="insert", key=key)
    assert (result.rows, result.inserted, result.updated, result.skipped, result.rejected) == (
        3,
        3,
        0,
        0,
        0,
    )
    assert list(Customer.objects.order_by("id").values_list("email", "data")) == [
        ("old@example.com", {"name": "古川"}),
        ("a@example.com", {"name": "青木"}),
        ("b@example.com", {"name": "馬場"}),
        ("c@example.com", {"name": "千葉"}),
    ]


def test_a_dry_run_counts_the_same_and_writes_nothing(fields, new_people):
    result = run_import(new_people, mode="insert", key="customer_id", dry_run=True)
    assert (result.inserted, result.rejected) == (3, 0)
    assert not Customer.objects.exists()


@pytest.mark.parametrize("mode", ["update", "upsert"])
def test_it_still_needs_the_key_column_to_match_existing_customers(fields, new_people, mode):
    with translation.override("ja"), pytest.raises(ImportFailed) as info:
        run_import(new_people, mode=mode, key="customer_id")
    assert str(info.value) == (
        "1 行目、顧客ID: キーの列がありません。ファイルには 顧客ID の列が必要です。"
    )
    assert not Customer.objects.exists()


def test_a_required_field_missing_from_the_file_still_rejects_new_rows(new_people):
    design.add_field("name", "氏名", "text")
    design.add_field("shop", "Shop", "text", required=True)
    result = run_import(new_people, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (0, 3)
    assert str(result.errors[0]) == "Row 2, Shop: a value is required"


def test_the_cli_inserts_a_file_without_key_and_without_key_option(fields, new_people):
    out, err = io.StringIO(), io.StringIO()
    call_command("import", str(new_people), "--mode", "insert", stdout=out, stderr=err)
    assert "Inserted: 3" in out.getvalue().splitlines()
    assert Customer.objects.count() == 3


def test_the_cli_tells_update_without_key_column_what_is_missing(fields, new_people):
    with pytest.raises(CommandError) as info:
        call_command("import", str(new_people), "--mode", "update", stdout=io.StringIO())
    assert "The key column is missing: the file needs a column Customer ID." in str(info.value)


def test_the_screen_defaults_to_insert_and_explains_the_key(member_client):
    r = member_client.get("/import/")
    form = r.context["form"]
    assert form["mode"].value() == "insert"
    body = r.content.decode()
    assert "New people have no Customer ID yet: leave the column out" in body
    assert 'id="import-key-headers"' in body
    headers = r.context["key_headers"]
    assert headers["customer id"] == "customer_id"
    assert headers["顧客id"] == "customer_id"
    assert "pcメールアドレス" not in headers  # e-mail is not an update key


def test_the_screen_imports_new_people_with_the_default_settings(
    member_client, fields, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "files"
    page = member_client.get("/import/").context["form"]
    data = {name: page[name].value() for name in ("mode", "key", "encoding")}
    data["file"] = SimpleUploadedFile("new.csv", NEW_PEOPLE.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        r = member_client.post("/import/", data)
    assert r.status_code == 302
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["inserted"] == 3
    assert Customer.objects.count() == 3
