"""API imports, exports and jobs: starting the jobs, reading them, downloading exports.
(What the import and export runners do is tested with them.)"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from okuru.accounts.models import Job, OperationLog, Operator
from okuru.customers import design
from okuru.customers.models import Customer, View
from tests.api.client import api_client as token_client

# Files the jobs write go to a folder of the test's own.
pytestmark = pytest.mark.usefixtures("media")

# Calls from their own address: the operation log's entries below name it.
api_client = partial(token_client, ip="203.0.113.5")


def send(client: Client, method: str, url: str, data=None):
    return getattr(client, method)(url, json.dumps(data), content_type="application/json")


def csv_file(text: str = "customer_id,email\n1,a@example.com\n") -> SimpleUploadedFile:
    return SimpleUploadedFile("customers.csv", text.encode(), content_type="text/csv")


# --- imports ---------------------------------------------------------------------------------


def test_import_rights_per_persona(owner, member, outsider):
    for persona, status in ((owner, 202), (member, 202), (outsider, 403)):
        r = api_client(persona).post("/api/imports", {"file": csv_file()})
        assert r.status_code == status
    assert Job.objects.filter(kind="import").count() == 2


def test_it_starts_an_import_job_with_its_parameters(member, media):
    r = api_client(member).post(
        "/api/imports",
        {
            "file": csv_file(),
            "mode": "update",
            "key": "customer_id",
            "encoding": "cp932",
            "dry_run": "true",
        },
    )
    assert r.status_code == 202
    body = r.json()
    job = Job.objects.get(pk=body["id"])
    assert (job.kind, job.operator_id, job.status) == ("import", member.pk, "queued")
    assert job.params["mode"] == "update"
    assert job.params["encoding"] == "cp932"
    assert job.params["dry_run"] is True
    assert job.params["filename"] == "customers.csv"
    stored = Path(job.input_file)
    assert stored.parent == media / "imports"
    assert stored.read_text() == "customer_id,email\n1,a@example.com\n"
    # The server path is not shown to the caller.
    assert "path" not in body["params"]
    entry = OperationLog.objects.get(action="import_start")
    assert (entry.target, entry.source_ip, entry.operator_id) == (
        f"job {job.pk}",
        "203.0.113.5",
        member.pk,
    )


def test_it_accepts_a_unique_field_as_key(member):
    design.add_field("member_no", "Member number", "text", unique=True)
    r = api_client(member).post("/api/imports", {"file": csv_file(), "key": "member_no"})
    assert r.status_code == 202
    assert Job.objects.get().params["key"] == "member_no"


@pytest.mark.parametrize(
    "data, detail",
    [
        (
            {"mode": "merge"},
            "mode: Select a valid choice. merge is not one of the available choices.",
        ),
        (
            {"key": "email"},
            "key: Select a valid choice. email is not one of the available choices.",
        ),
        (
            {"encoding": "latin-1"},
            "encoding: Select a valid choice. latin-1 is not one of the available choices.",
        ),
    ],
)
def test_it_rejects_bad_import_parameters(member, data, detail):
    r = api_client(member).post("/api/imports", {"file": csv_file(), **data})
    assert r.status_code == 400
    assert r.json()["detail"] == detail
    assert not Job.objects.exists()


def test_it_rejects_an_empty_file_or_none(member):
    client = api_client(member)
    r = client.post("/api/imports", {"file": csv_file("")})
    assert r.status_code == 400
    assert r.json()["detail"] == "file: The submitted file is empty."
    r = client.post("/api/imports", {"mode": "upsert"})
    assert r.status_code == 400
    assert r.json()["detail"] == "Invalid request: file: Field required"
    assert not Job.objects.exists()


# --- exports ---------------------------------------------------------------------------------


def test_export_rights_per_persona(owner, member, outsider):
    for persona, status in ((owner, 202), (member, 202), (outsider, 403)):
        r = send(api_client(persona), "post", "/api/exports", {"fields": ["customer_id"]})
        assert r.status_code == status
    assert Job.objects.filter(kind="export").count() == 2


def test_it_starts_an_export_job(member):
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    Customer.objects.create(email="a@example.com", data={"plan": "pro"})
    Customer.objects.create(email="b@example.com", data={"plan": "free"})
    view = View.objects.create(
        name="Pro",
        filter={"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]},
        fields=["customer_id", "email"],
    )
    narrow = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    r = send(
        api_client(member),
        "post",
        "/api/exports",
        {
            "fields": ["customer_id", "email", "plan"],
            "filter": narrow,
            "view_id": view.pk,
            "encoding": "cp932",
        },
    )
    assert r.status_code == 202
    job = Job.objects.get(pk=r.json()["id"])
    assert job.kind == "export"
    assert job.params["fields"] == ["customer_id", "email", "plan"]
    assert job.params["encoding"] == "cp932"
    assert job.params["rows"] == 1
    assert job.params["filter"] == {"match": "all", "conditions": [view.filter, narrow]}
    entry = OperationLog.objects.get(action="export_start")
    assert (entry.target, entry.source_ip) == (f"job {job.pk}", "203.0.113.5")


@pytest.mark.parametrize(
    "payload, detail",
    [
        ({"fields": ["nope"]}, "Unknown field: nope"),
        ({"fields": []}, "Choose at least one field."),
        (
            {"fields": ["email"], "encoding": "utf-16"},
            "encoding: Select a valid choice. utf-16 is not one of the available choices.",
        ),
        (
            {"fields": ["email"], "view_id": 999},
            "view: Select a valid choice. That choice is not one of the available choices.",
        ),
        (
            {
                "fields": ["email"],
                "filter": {"match": "all", "conditions": [{"field": "x", "op": "eq"}]},
            },
            "filter: Unknown field in filter: x",
        ),
    ],
)
def test_it_rejects_a_bad_export(member, payload, detail):
    r = send(api_client(member), "post", "/api/exports", payload)
    assert r.status_code == 400
    assert r.json()["detail"] == detail
    assert not Job.objects.exists()


def finished_export(operator: Operator, media: Path) -> Job:
    out = media / "exports" / "customers.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes("\ufeffcustomer_id\n1\n".encode())
    return Job.objects.create(
        kind="export", operator=operator, status=Job.Status.SUCCEEDED, output_file=str(out)
    )


def test_it_downloads_a_finished_export(member, media):
    job = finished_export(member, media)
    client = api_client(member)
    assert client.get(f"/api/jobs/{job.pk}").json()["download_url"] == f"/api/exports/{job.pk}/file"
    r = client.get(f"/api/exports/{job.pk}/file")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == "\ufeffcustomer_id\n1\n".encode()
    assert r.headers["Content-Disposition"] == 'attachment; filename="customers.csv"'
    entry = OperationLog.objects.get(action="export_download")
    assert (entry.target, entry.source_ip) == (f"job {job.pk}", "203.0.113.5")


def test_download_rights_and_states(owner, member, outsider, media):
    job = finished_export(member, media)
    assert api_client(outsider).get(f"/api/exports/{job.pk}/file").status_code == 403
    assert api_client(owner).get(f"/api/exports/{job.pk}/file").status_code == 200
    from tests.conftest import make_operator

    other = make_operator("other", ["customers_read", "export_data"])
    r = api_client(other).get(f"/api/exports/{job.pk}/file")
    assert r.status_code == 404
    assert r.json() == {"detail": f"No job with ID {job.pk}."}
    # Exporting once is not enough: the file is customer data, so it needs customers read.
    reader_no_more = make_operator("exporter", ["export_data"])
    own = finished_export(reader_no_more, media)
    r = api_client(reader_no_more).get(f"/api/exports/{own.pk}/file")
    assert r.status_code == 403
    assert r.json() == {"detail": "You do not have the right to do this (needs: Customers: read)."}
    running = Job.objects.create(kind="export", operator=member, status=Job.Status.RUNNING)
    r = api_client(member).get(f"/api/exports/{running.pk}/file")
    assert r.status_code == 409
    assert r.json() == {"detail": "The export has no file: its status is Running."}


def test_it_never_serves_a_file_outside_media(member, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.csv"
    outside.write_text("secret")
    job = Job.objects.create(
        kind="export", operator=member, status=Job.Status.SUCCEEDED, output_file=str(outside)
    )
    r = api_client(member).get(f"/api/exports/{job.pk}/file")
    assert r.status_code == 404
    assert r.json() == {"detail": "The export's file is gone."}


# --- jobs ------------------------------------------------------------------------------------


def test_it_lists_only_the_callers_jobs(owner, member, outsider):
    mine = Job.objects.create(kind="import", operator=member)
    Job.objects.create(kind="export", operator=owner)
    body = api_client(member).get("/api/jobs").json()
    assert [j["id"] for j in body] == [mine.pk]
    assert body[0]["operator"] == "member"
    assert api_client(outsider).get("/api/jobs").json() == []
    assert len(api_client(owner).get("/api/jobs", {"kind": "export"}).json()) == 1


def test_another_operators_job_is_a_404(owner, member, outsider):
    job = Job.objects.create(kind="import", operator=member, progress_total=10, progress_done=4)
    body = api_client(member).get(f"/api/jobs/{job.pk}").json()
    assert (body["status"], body["percent"], body["progress_done"]) == ("queued", 40, 4)
    r = api_client(outsider).get(f"/api/jobs/{job.pk}")
    assert r.status_code == 404
    assert r.json() == {"detail": f"No job with ID {job.pk}."}
    # An operators admin sees every job, as in the UI.
    assert api_client(owner).get(f"/api/jobs/{job.pk}").status_code == 200
