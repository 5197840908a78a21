"""Long jobs: an import or export started from a screen runs as
a job, and on completion the operator gets an in-app notice and an e-mail, success or failure."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from okuru.accounts.models import Job, Notification
from okuru.customers.models import Customer

# Files the jobs write go to a folder of the test's own.
pytestmark = pytest.mark.usefixtures("media")


def upload(text: str):
    return {
        "file": SimpleUploadedFile("people.csv", text.encode()),
        "mode": "upsert",
        "key": "customer_id",
        "encoding": "auto",
    }


def test_a_finished_import_leaves_a_notice_and_an_e_mail(
    member_client, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member_client.post("/import/", upload("Customer ID,email\n,a@example.com\n"))
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED
    notice = Notification.objects.get(operator=member)
    assert notice.text.startswith(f"Import #{job.pk} (people.csv) by member finished at ")
    assert notice.text.endswith(": 1 inserted, 0 updated, 0 skipped, 0 rejected.")
    assert (notice.link, notice.read) == (f"/accounts/jobs/{job.pk}/", False)
    assert [m.subject for m in mail.outbox] == [f"[Okuru] {notice.text}"]
    assert mail.outbox[0].to == ["member@example.com"]
    # The job page shows the counts the notice points at.
    r = member_client.get(notice.link)
    assert r.context["job"].result["inserted"] == 1
    assert Customer.objects.get().email == "a@example.com"


def test_a_failed_import_says_why_in_the_notice_and_the_e_mail(
    member_client, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member_client.post("/import/", upload("Nickname\nx\n"))
    job = Job.objects.get()
    expected = (
        f"Import #{job.pk} failed: The header row has 2 problems: Row 1, Customer ID: The key"
        " column is missing: the file needs a column Customer ID.; Row 1, Nickname: Unknown"
        " column: no field has this key or label."
    )
    assert job.status == Job.Status.FAILED
    assert Notification.objects.get(operator=member).text == expected
    assert [m.subject for m in mail.outbox] == [f"[Okuru] {expected}"[:200]]


def test_a_large_export_job_notifies_with_its_download(
    member_client, member, monkeypatch, django_capture_on_commit_callbacks
):
    from okuru.customers import views

    monkeypatch.setattr(views, "STREAM_EXPORT_MAX_ROWS", 0)
    Customer.objects.create(email="a@example.com")
    data = {
        "fields": ["customer_id", "email"],
        "filter": "",
        "view": "",
        "encoding": "utf-8-sig",
        "save_as": "",
        "action": "export",
    }
    with django_capture_on_commit_callbacks(execute=True):
        r = member_client.post("/export/", data)
    job = Job.objects.get()
    assert r["Location"] == f"/accounts/jobs/{job.pk}/"
    assert Notification.objects.get(operator=member).text == f"Export #{job.pk} finished."
    assert [m.subject for m in mail.outbox] == [f"[Okuru] Export #{job.pk} finished."]
    download = member_client.get(f"/export/jobs/{job.pk}/download/")
    assert (
        b"".join(download.streaming_content)
        .decode("utf-8-sig")
        .splitlines()[1]
        .endswith(",a@example.com")
    )
