"""Progress that moves: a long import reports its count while its one transaction is still
open, and a queued job is shown as waiting, with the jobs ahead of it and since when."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from okuru.accounts import jobs
from okuru.accounts.models import Job
from okuru.customers import jobs as customer_jobs  # noqa: F401  (registers the import runner)
from tests.api.test_jobs import api_client
from tests.conftest import client_for
from tests.customers.test_import import set_limit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"


def test_a_long_import_reports_its_count_while_its_transaction_is_open(
    member, member_client, monkeypatch, django_capture_on_commit_callbacks
):
    set_limit(monkeypatch, "CHUNK_ROWS", 100)
    monkeypatch.setattr(jobs.Progress, "__init__", _every_call(jobs.Progress.__init__))
    seen: list[tuple[int, int, str]] = []
    write = jobs._write_progress

    def observe(job_id: int, done: int) -> None:
        write(job_id, done)
        # What the job page shows at this moment to a request that sees only committed rows:
        # the row as it was when the job started, plus the progress file.
        job = Job.objects.get(pk=job_id)
        job.progress_done = 0
        shown = jobs.live(job)
        seen.append((done, shown.progress_done, str(connection.in_atomic_block)))

    monkeypatch.setattr(jobs, "_write_progress", observe)
    text = "PC e-mail\n" + "".join(f"p{i}@example.com\n" for i in range(1000))
    data = {
        "file": SimpleUploadedFile("big.csv", text.encode(), content_type="text/csv"),
        "mode": "insert",
        "key": "customer_id",
        "encoding": "auto",
    }
    with django_capture_on_commit_callbacks(execute=True):
        member_client.post("/import/", data)
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED, job.error
    counts = [done for done, _shown, _atomic in seen]
    assert sorted(set(counts)) == list(range(100, 1001, 100))  # the last chunk may repeat
    assert [shown for _done, shown, _atomic in seen] == counts
    assert {atomic for _done, _shown, atomic in seen} == {"True"}
    assert not jobs.progress_path(job.pk).exists()  # cleaned up when the job finished


def _every_call(init):
    def patched(self, job, interval=1.0, echo=None):
        init(self, job, interval=0, echo=echo)

    return patched


def test_the_job_page_shows_the_count_from_the_progress_file(member, member_client):
    job = Job.objects.create(
        kind="import", operator=member, status="running", progress_total=1000, progress_done=0
    )
    jobs._write_progress(job.pk, 400)
    body = member_client.get(f"/accounts/jobs/{job.pk}/?format=json").json()
    assert (body["done"], body["percent"]) == (400, 40)
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert 'aria-valuenow="40"' in page
    assert api_client(member).get(f"/api/jobs/{job.pk}").json()["progress_done"] == 400


def test_a_queued_job_is_shown_as_waiting_with_the_jobs_ahead(member, member_client):
    Job.objects.create(kind="import", operator=member, status="running")
    Job.objects.create(kind="import", operator=member)
    mine = Job.objects.create(kind="import", operator=member)
    since = timezone.localtime(mine.created).strftime("%H:%M:%S")
    body = member_client.get(f"/accounts/jobs/{mine.pk}/?format=json").json()
    assert body["status"] == "queued"
    assert body["status_display"] == f"Waiting: 2 jobs ahead, queued at {since}"
    for url in (f"/accounts/jobs/{mine.pk}/", "/accounts/jobs/", "/import/"):
        page = member_client.get(url).content.decode()
        assert f"Waiting: 2 jobs ahead, queued at {since}" in page, url


def test_the_first_queued_job_is_next_in_line_in_japanese(member):
    job = Job.objects.create(kind="import", operator=member)
    since = timezone.localtime(job.created).strftime("%H:%M:%S")
    body = client_for(member, "ja").get(f"/accounts/jobs/{job.pk}/?format=json").json()
    assert body["status_display"] == f"待機中: 次に実行します（{since} から待機）"
