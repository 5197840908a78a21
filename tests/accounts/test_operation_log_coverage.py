"""The operation log covers every write, import and export of the customer
database (UI and API, and the jobs they start) leaves an entry with operator, group, action,
target, time and source IP."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from okuru.accounts import audit, jobs
from okuru.accounts.models import ApiToken, Job, OperationLog
from okuru.customers import design
from okuru.customers.models import Customer, ExportSetting, Topic, View
from tests.conftest import PASSWORD

# Files the jobs write go to a folder of the test's own.
pytestmark = pytest.mark.usefixtures("media")

IP = "192.0.2.44"


@pytest.fixture
def web(owner) -> Client:
    client = Client(headers={"accept-language": "en"}, REMOTE_ADDR=IP)
    client.force_login(owner)
    return client


def entry(action: str) -> OperationLog:
    return OperationLog.objects.get(action=action)


def assert_logged(action: str, target: str, operator: str = "owner") -> OperationLog:
    e = entry(action)
    assert (e.operator_name, e.group_names, e.action, e.target, e.source_ip) == (
        operator,
        "Administrators" if operator == "owner" else "Marketing",
        action,
        target,
        IP,
    )
    assert timezone.now() - e.created < timedelta(minutes=1)
    return e


def test_customer_writes_are_logged(web):
    design.add_field("note", "Note", "text")
    r = web.post("/customers/new/", {"email": "a@example.com", "note": "hi"})
    assert r.status_code == 302
    c = Customer.objects.get()
    assert_logged("customer_create", str(c.pk))
    web.post(f"/customers/{c.pk}/", {"email": "b@example.com", "note": "hi"})
    assert_logged("customer_update", str(c.pk))
    web.post(f"/customers/{c.pk}/delete/")
    assert_logged("customer_delete", str(c.pk))
    assert not Customer.objects.exists()


def test_database_design_writes_are_logged(web):
    web.post("/design/fields/new/", {"key": "shop", "label": "Shop", "type": "text"})
    assert_logged("field_add", "shop")
    web.post("/design/fields/shop/", {"label": "Store", "unique": "on"})
    assert assert_logged("field_rename", "shop").detail == {"from": "Shop", "to": "Store"}
    assert assert_logged("field_change", "shop").detail["to"]["unique"] is True
    web.post("/design/fields/shop/delete/")
    assert_logged("field_delete", "shop")
    web.post("/design/topics/new/", {"key": "news", "name": "News"})
    assert_logged("topic_add", "news")
    topic = Topic.objects.get()
    web.post(f"/design/topics/{topic.pk}/", {"name": "Newsletter"})
    assert_logged("topic_rename", "news")
    web.post(f"/design/topics/{topic.pk}/delete/")
    assert_logged("topic_delete", "news")


def test_view_writes_are_logged(web):
    data = {"name": "Buyers", "filter": "", "fields": ["customer_id", "email"]}
    web.post("/views/new/", data)
    view = View.objects.get()
    assert_logged("view_create", "Buyers")
    web.post(f"/views/{view.pk}/", {**data, "name": "Best buyers"})
    assert_logged("view_update", "Best buyers")
    web.post(f"/views/{view.pk}/delete/")
    assert_logged("view_delete", "Best buyers")


def test_an_upload_import_and_its_job_are_logged_with_the_source_ip(
    member, django_capture_on_commit_callbacks
):
    client = Client(headers={"accept-language": "en"}, REMOTE_ADDR=IP)
    client.force_login(member)
    upload = SimpleUploadedFile("people.csv", b"Customer ID,email\n,a@example.com\n")
    data = {"file": upload, "mode": "upsert", "key": "customer_id", "encoding": "auto"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/import/", data)
    job = Job.objects.get()
    assert job.source_ip == IP
    assert_logged("import_start", f"job {job.pk}", "member")
    # The job ran in the background, yet its entry says where the import was asked for.
    done = assert_logged("import", "people.csv", "member")
    assert (done.detail["inserted"], done.detail["rejected"]) == (1, 0)
    assert Customer.objects.get().email == "a@example.com"


def test_exports_settings_and_downloads_are_logged(web, owner, media):
    Customer.objects.create(email="a@example.com")
    data = {
        "fields": ["customer_id", "email"],
        "filter": "",
        "view": "",
        "encoding": "utf-8-sig",
        "save_as": "Mine",
        "action": "export",
    }
    r = web.post("/export/", data)
    assert b"".join(r.streaming_content).startswith(b"\xef\xbb\xbf")
    assert assert_logged("export", "1 customer").detail["rows"] == 1
    assert_logged("export_setting_save", "Mine")
    web.post(f"/export/settings/{ExportSetting.objects.get().pk}/delete/")
    assert_logged("export_setting_delete", "Mine")
    out = Path(media) / "exports" / "9.csv"
    out.parent.mkdir()
    out.write_bytes(b"x")
    job = Job.objects.create(kind="export", operator=owner, status="succeeded", output_file=out)
    web.get(f"/export/jobs/{job.pk}/download/")
    assert_logged("export_download", f"job {job.pk}")


def test_an_api_export_job_logs_its_file_with_the_callers_ip(
    member, django_capture_on_commit_callbacks
):
    Customer.objects.create(email="a@example.com")
    _token, key = ApiToken.issue(member, "sync")
    client = Client(headers={"authorization": f"Bearer {key}"}, REMOTE_ADDR=IP)
    body = json.dumps({"fields": ["customer_id", "email"]})
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/api/exports", body, content_type="application/json")
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert_logged("export_start", f"job {job.pk}", "member")
    assert assert_logged("export", f"job {job.pk}", "member").detail["rows"] == 1


def test_a_job_started_without_a_request_logs_no_ip(member):
    job = jobs.start("export", member, {"fields": ["customer_id"], "filter": {}})
    jobs.run(job.pk)
    e = entry("export")
    assert (e.operator_name, e.source_ip) == ("member", None)


def test_the_job_ip_does_not_leak_past_the_job(member):
    with audit.source_ip("192.0.2.1"):
        audit.log(member, "import")
    audit.log(member, "export")
    assert (entry("import").source_ip, entry("export").source_ip) == ("192.0.2.1", None)


def test_log_in_and_log_out_are_logged(member):
    client = Client(REMOTE_ADDR=IP)
    client.post("/accounts/login/", {"username": "member", "password": PASSWORD})
    assert_logged("login", "member", "member")
    client.post("/accounts/logout/")
    assert_logged("logout", "member", "member")
