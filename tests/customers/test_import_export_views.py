import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import Client

from okuru.accounts import jobs
from okuru.accounts.models import Job, OperationLog
from okuru.customers import views
from okuru.customers.models import Customer, ExportSetting, Field, View
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"
    return settings.MEDIA_ROOT


@pytest.fixture
def people():
    Field.objects.create(key="name", label="Name", type="text")
    return [
        Customer.objects.create(email="a@example.com", data={"name": "Aoki"}),
        Customer.objects.create(email="b@example.com", data={"name": "=1+1"}),
    ]


def csv_upload(text: str, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")


def import_data(**changes):
    data = {
        "file": csv_upload("Customer ID,email,name\n,c@example.com,Chiba\n"),
        "mode": "upsert",
        "key": "customer_id",
        "encoding": "auto",
    }
    data.update(changes)
    return data


def export_data(fields=("customer_id", "email", "name"), conditions=(), **changes):
    data = {
        "fields": list(fields),
        "filter": json.dumps({"match": "all", "conditions": list(conditions)}),
        "view": "",
        "encoding": "utf-8-sig",
        "save_as": "",
        "action": "export",
    }
    data.update(changes)
    return data


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- authorization ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/import/", "/export/"])
def test_it_redirects_anonymous_to_login(client, url):
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", ["/import/", "/export/"])
def test_it_forbids_outsiders(outsider_client, url):
    assert outsider_client.get(url).status_code == 403


def test_it_forbids_outsiders_to_upload(outsider_client, media):
    r = outsider_client.post("/import/", import_data())
    assert r.status_code == 403
    assert not Job.objects.exists()
    assert not (media / "imports").exists()


def test_members_and_owners_open_both_pages(member_client, owner_client):
    for c in (member_client, owner_client):
        assert c.get("/import/").status_code == 200
        assert c.get("/export/").status_code == 200


def test_the_import_page_checks_csrf(member, media):
    c = Client(enforce_csrf_checks=True)
    c.force_login(member)
    r = c.post("/import/", import_data())
    assert r.status_code == 403
    assert not Job.objects.exists()


# --- import ----------------------------------------------------------------------------------


def test_it_stores_the_upload_on_disk_and_starts_an_import_job(
    member_client, member, media, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        r = member_client.post("/import/", import_data(dry_run="on"))
    job = Job.objects.get()
    assert r.status_code == 302
    assert r["Location"] == f"/accounts/jobs/{job.pk}/"
    assert job.kind == "import"
    assert job.operator == member
    path = Path(job.params["path"])
    assert path.parent == media / "imports"
    assert path.suffix == ".csv"
    assert job.input_file == str(path)
    assert path.read_bytes() == b"Customer ID,email,name\n,c@example.com,Chiba\n"
    assert {k: v for k, v in job.params.items() if k != "path"} == {
        "mode": "upsert",
        "key": "customer_id",
        "encoding": "auto",
        "dry_run": True,
        "filename": "people.csv",
    }
    log = OperationLog.objects.get(action="import_start")
    assert log.target == f"job {job.pk}"
    assert log.operator_name == "member"
    # The job ran on commit: a dry run reports and changes nothing.
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.result["inserted"], job.result["rejected"]) == (1, 0)
    assert Customer.objects.count() == 2


def test_it_imports_for_real_without_dry_run(
    member_client, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member_client.post("/import/", import_data(key="customer_id"))
    job = Job.objects.get()
    assert job.params["dry_run"] is False
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert Customer.objects.get(email="c@example.com").data == {"name": "Chiba"}


def test_it_offers_unique_fields_as_update_keys(member_client):
    Field.objects.create(key="code", label="Code", type="text", unique=True)
    Field.objects.create(key="note", label="Note", type="text")
    r = member_client.get("/import/")
    assert [k for k, _ in r.context["form"].fields["key"].choices] == ["customer_id", "code"]


@pytest.mark.parametrize(
    "changes, errors",
    [
        ({"file": ""}, {"file": ["This field is required."]}),
        ({"file": csv_upload("")}, {"file": ["The submitted file is empty."]}),
        (
            {"mode": "replace"},
            {"mode": ["Select a valid choice. replace is not one of the available choices."]},
        ),
        (
            {"key": "name"},
            {"key": ["Select a valid choice. name is not one of the available choices."]},
        ),
        (
            {"encoding": "latin-1"},
            {"encoding": ["Select a valid choice. latin-1 is not one of the available choices."]},
        ),
    ],
)
def test_it_rejects_bad_import_requests(member_client, media, people, changes, errors):
    r = member_client.post("/import/", import_data(**changes))
    assert r.status_code == 200
    assert r.context["form"].errors == errors
    assert not Job.objects.exists()
    assert not OperationLog.objects.filter(action="import_start").exists()
    assert not (media / "imports").exists() or not list((media / "imports").iterdir())


def test_the_job_result_lists_counts_and_row_errors():
    job = Job(
        kind="import",
        status=Job.Status.SUCCEEDED,
        params={"dry_run": True},
        result={
            "inserted": 3,
            "updated": 2,
            "skipped": 1,
            "rejected": 1,
            "error_count": 1,
            "errors": [[4, "age", "not a number: <b>old</b>"]],
            "ignored_columns": [],
        },
    )
    html = render_to_string("customers/_job_result.html", {"job": job})
    assert "Dry run: nothing was changed." in html
    assert "<b>3</b><span>inserted</span>" in html
    assert "<b>2</b><span>updated</span>" in html
    assert "<b>1</b><span>skipped</span>" in html
    assert "<b>1</b><span>rejected</span>" in html
    assert '<td class="num">4</td><td>age</td><td>not a number: &lt;b&gt;old&lt;/b&gt;</td>' in html


# --- export: streamed ------------------------------------------------------------------------


def test_it_streams_a_small_export_and_logs_it(member_client, people):
    r = member_client.post("/export/", export_data())
    assert r.status_code == 200
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"].startswith('attachment; filename="customers-')
    data = body(r)
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[1:] == [
        f"{people[0].pk},a@example.com,Aoki",
        f"{people[1].pk},b@example.com,'=1+1",
    ]
    log = OperationLog.objects.get(action="export")
    assert log.operator_name == "member"
    assert log.detail["rows"] == 2
    assert log.detail["fields"] == ["customer_id", "email", "name"]


def test_it_exports_a_view_narrowed_by_the_builder(member_client, people):
    Customer.objects.create(email="c@example.com", data={"name": "Chiba"})
    view = View.objects.create(
        name="With e-mail",
        fields=["email"],
        filter={
            "match": "all",
            "conditions": [{"field": "name", "op": "starts_with", "value": "A"}],
        },
    )
    r = member_client.post(
        "/export/",
        export_data(
            fields=["email"],
            view=str(view.pk),
            conditions=[{"field": "email", "op": "contains", "value": "example"}],
        ),
    )
    assert body(r).decode("utf-8-sig").splitlines()[1:] == ["a@example.com"]


def test_it_reports_a_view_whose_filter_no_longer_works(member_client, people):
    view = View.objects.create(
        name="Old",
        fields=["email"],
        filter={"match": "all", "conditions": [{"field": "gone", "op": "has_value"}]},
    )
    r = member_client.post("/export/", export_data(view=str(view.pk)))
    assert r.status_code == 200
    assert r.context["form"].errors == {"view": ["Unknown field in filter: gone"]}


def test_it_exports_in_cp932(member_client, people):
    people[0].data["name"] = "青木"
    people[0].save()
    r = member_client.post("/export/", export_data(fields=["name"], encoding="cp932"))
    assert r["Content-Type"] == "text/csv; charset=cp932"
    assert b"".join(r.streaming_content).decode("cp932").splitlines()[1] == "青木"


def test_it_reports_a_character_cp932_cannot_hold(member_client, people):
    people[0].data["name"] = "Aoki 😀"
    people[0].save()
    r = member_client.post(
        "/export/", export_data(fields=["customer_id", "name"], encoding="cp932")
    )
    assert r.status_code == 200
    assert r.context["form"].non_field_errors() == [
        f"Row 2 (Customer ID {people[0].pk}), Name: the character '😀' cannot be written in"
        " CP932 (Shift_JIS). Export in UTF-8 instead."
    ]
    assert not OperationLog.objects.filter(action="export").exists()


@pytest.mark.parametrize(
    "data, message",
    [
        (export_data(fields=[]), "Choose at least one field."),
        (export_data(fields=["email", "nope"]), "Unknown field: nope"),
        (
            export_data(conditions=[{"field": "nope", "op": "has_value"}]),
            "Unknown field in filter: nope",
        ),
        (export_data(encoding="latin-1"), "Select a valid choice."),
        (export_data(action="save"), "Give the settings a name to save them."),
    ],
)
def test_it_rejects_bad_exports(member_client, people, data, message):
    r = member_client.post("/export/", data)
    assert r.status_code == 200
    assert message in r.content.decode()
    assert not OperationLog.objects.filter(action__startswith="export").exists()
    assert not ExportSetting.objects.exists()


# --- export: as a job, download --------------------------------------------------------------


def test_a_large_export_runs_as_a_job(
    member_client, member, media, people, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(views, "STREAM_EXPORT_MAX_ROWS", 1)
    with django_capture_on_commit_callbacks(execute=True):
        r = member_client.post("/export/", export_data())
    job = Job.objects.get()
    assert r.status_code == 302
    assert r["Location"] == f"/accounts/jobs/{job.pk}/"
    assert (job.kind, job.operator) == ("export", member)
    assert job.params["fields"] == ["customer_id", "email", "name"]
    assert job.params["view_id"] is None
    assert OperationLog.objects.get(action="export_start").target == f"job {job.pk}"
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    r = member_client.get(f"/export/jobs/{job.pk}/download/")
    assert r.status_code == 200
    assert r["Content-Disposition"] == f'attachment; filename="{job.pk}.csv"'
    assert b"".join(r.streaming_content).decode("utf-8-sig").count("\n") == 3
    assert OperationLog.objects.get(action="export_download").target == f"job {job.pk}"
    html = render_to_string("customers/_job_result.html", {"job": job})
    assert "<b>2</b><span>rows exported</span>" in html


@pytest.fixture
def finished_export(member, media):
    job = Job.objects.create(kind="export", operator=member, status=Job.Status.SUCCEEDED)
    path = media / "exports" / f"{job.pk}.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"customer_id\n1\n")
    job.output_file = str(path)
    job.save()
    return job


def test_another_operators_export_is_not_found(finished_export):
    other = make_operator("other", ["customers_read", "export_data"])
    r = client_for(other).get(f"/export/jobs/{finished_export.pk}/download/")
    assert r.status_code == 404
    assert not OperationLog.objects.filter(action="export_download").exists()


def test_operators_admins_may_download_any_export(owner_client, finished_export):
    r = owner_client.get(f"/export/jobs/{finished_export.pk}/download/")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == b"customer_id\n1\n"


def test_outsiders_cannot_download(outsider_client, client, finished_export):
    assert outsider_client.get(f"/export/jobs/{finished_export.pk}/download/").status_code == 403
    r = client.get(f"/export/jobs/{finished_export.pk}/download/")
    assert r["Location"].startswith("/accounts/login/")


def test_it_serves_no_file_outside_the_media_directory(member_client, finished_export, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    finished_export.output_file = str(
        Path(finished_export.output_file).parent / ".." / ".." / "secret.txt"
    )
    finished_export.save()
    assert member_client.get(f"/export/jobs/{finished_export.pk}/download/").status_code == 404


@pytest.mark.parametrize("status", [Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.FAILED])
def test_an_unfinished_export_has_nothing_to_download(member_client, finished_export, status):
    finished_export.status = status
    finished_export.save()
    assert member_client.get(f"/export/jobs/{finished_export.pk}/download/").status_code == 404


def test_an_import_job_is_no_export(member_client, member, media):
    path = media / "imports" / "x.csv"
    path.parent.mkdir(parents=True)
    path.write_text("email\n")
    job = Job.objects.create(
        kind="import", operator=member, status=Job.Status.SUCCEEDED, output_file=str(path)
    )
    assert member_client.get(f"/export/jobs/{job.pk}/download/").status_code == 404


# --- saved export settings -------------------------------------------------------------------


def test_it_saves_loads_and_deletes_export_settings(member_client, people):
    view = View.objects.create(name="All", fields=["email"])
    cond = {"field": "email", "op": "has_value"}
    r = member_client.post(
        "/export/",
        export_data(
            fields=["name", "email"],
            conditions=[cond],
            view=str(view.pk),
            encoding="cp932",
            save_as="Monthly",
            action="save",
        ),
    )
    setting = ExportSetting.objects.get()
    assert r.status_code == 302
    assert r["Location"] == f"/export/?setting={setting.pk}"
    assert (setting.name, setting.fields, setting.view, setting.encoding) == (
        "Monthly",
        ["name", "email"],
        view,
        "cp932",
    )
    assert setting.filter == {"match": "all", "conditions": [cond]}
    assert OperationLog.objects.get(action="export_setting_save").target == "Monthly"

    r = member_client.get(f"/export/?setting={setting.pk}")
    assert [k for k, _ in r.context["chosen_fields"]] == ["name", "email"]
    assert json.loads(r.context["filter_json"]) == setting.filter
    assert r.context["form"]["encoding"].value() == "cp932"

    r = member_client.post(f"/export/settings/{setting.pk}/delete/")
    assert r.status_code == 302
    assert not ExportSetting.objects.exists()
    assert OperationLog.objects.get(action="export_setting_delete").target == "Monthly"


def test_exporting_with_a_name_saves_the_settings_too(member_client, people):
    r = member_client.post("/export/", export_data(save_as="Weekly"))
    assert r.status_code == 200
    body(r)
    assert ExportSetting.objects.get().name == "Weekly"


def test_outsiders_cannot_delete_export_settings(outsider_client):
    setting = ExportSetting.objects.create(name="Monthly", fields=["email"])
    assert outsider_client.post(f"/export/settings/{setting.pk}/delete/").status_code == 403
    assert ExportSetting.objects.filter(pk=setting.pk).exists()


def test_a_reader_without_the_export_right_cannot_export(people):
    reader = make_operator("reader", ["customers_read"])
    r = client_for(reader).post("/export/", export_data())
    assert r.status_code == 403
    assert not OperationLog.objects.filter(action="export").exists()


def test_jobs_module_is_wired(people):
    # The runners the pages start are registered.
    assert {"import", "export"} <= set(jobs.RUNNERS)
