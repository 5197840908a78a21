from __future__ import annotations

import socket
import time

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from okuru.accounts import jobs
from okuru.accounts.models import Job, Notification, OperationLog
from tests.conftest import client_for


@jobs.runner("acct_test", lambda: "Test job")
def _run_test_job(job: Job, progress: jobs.Progress) -> dict:
    behaviour = job.params.get("behaviour")
    if behaviour == "fail":
        raise jobs.JobError("The file has no header row.")
    if behaviour == "crash":
        raise RuntimeError("boom")
    progress.total(3)
    progress(3, force=True)
    return {"rows": 3}


def start(operator, behaviour: str = "ok") -> Job:
    return jobs.start("acct_test", operator, {"behaviour": behaviour})


def test_it_runs_a_job_on_commit_and_leaves_an_in_app_notice(
    member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = start(member)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"rows": 3}
    assert (job.progress_done, job.progress_total, job.percent) == (3, 3, 100)
    assert job.started is not None and job.finished is not None
    notice = Notification.objects.get(operator=member)
    assert notice.text == f"Test job #{job.pk} finished."
    assert notice.link == f"/accounts/jobs/{job.pk}/"
    assert not notice.read


def test_a_job_runs_only_once(member):
    job = start(member)
    assert jobs.run(job.pk) is not None
    assert jobs.run(job.pk) is None
    assert Notification.objects.filter(operator=member).count() == 1


def test_a_job_error_fails_the_job_with_its_message(member):
    job = start(member, "fail")
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == "The file has no header row."
    assert Notification.objects.get(operator=member).text == (
        f"Test job #{job.pk} failed: The file has no header row."
    )


def test_an_unexpected_error_parks_the_job_failed(member):
    job = start(member, "crash")
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == "Unexpected error: boom"


def test_it_e_mails_the_operator_on_completion(member):
    job = start(member)
    jobs.run(job.pk)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["member@example.com"]
    assert message.subject == f"[Okuru] Test job #{job.pk} finished."
    assert f"/accounts/jobs/{job.pk}/" in message.body


@override_settings(NOTIFY_BY_EMAIL=False)
def test_it_does_not_e_mail_when_turned_off(member):
    jobs.run(start(member).pk)
    assert mail.outbox == []
    assert Notification.objects.filter(operator=member).count() == 1


# --- real SMTP -------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smtp_mailers(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, recorder
    finally:
        controller.stop()


def test_it_sends_the_job_notice_over_real_smtp(member, smtp_server):
    controller, recorder = smtp_server
    job = start(member)
    with override_settings(MAILERS=smtp_mailers(controller.port)):
        jobs.run(job.pk)
    deadline = time.monotonic() + 5
    while not recorder.envelopes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(recorder.envelopes) == 1
    envelope = recorder.envelopes[0]
    assert envelope.rcpt_tos == ["member@example.com"]
    assert envelope.mail_from == "okuru@localhost"
    content = envelope.content.decode()
    assert f"Subject: [Okuru] Test job #{job.pk} finished." in content


def test_a_dead_smtp_server_does_not_fail_the_job(member):
    job = start(member)
    with override_settings(MAILERS=smtp_mailers(free_port())):
        jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert Notification.objects.filter(operator=member).count() == 1


# --- progress --------------------------------------------------------------------------------


def test_progress_writes_at_most_once_an_interval(member):
    job = start(member)
    progress = jobs.Progress(job, interval=3600)
    progress(10)
    progress(20)
    job.refresh_from_db()
    assert job.progress_done == 10
    progress(30, force=True)
    job.refresh_from_db()
    assert job.progress_done == 30


# --- pages -----------------------------------------------------------------------------------


def test_the_job_json_is_for_its_operator(owner, member, outsider):
    job = start(member)
    url = f"/accounts/jobs/{job.pk}/"
    r = client_for(member).get(url, headers={"accept": "application/json"})
    assert r.status_code == 200
    since = timezone.localtime(job.created).strftime("%H:%M:%S")
    assert r.json() == {
        "id": job.pk,
        "kind": "acct_test",
        "status": "queued",
        "status_display": f"Waiting: next in line, queued at {since}",
        "finished": False,
        "done": 0,
        "total": None,
        "percent": None,
        "result": {},
        "error": "",
    }
    assert client_for(member).get(url + "?format=json").status_code == 200
    # Another operator's job does not exist for them; operators admins see every job.
    assert client_for(outsider).get(url, headers={"accept": "application/json"}).status_code == 404
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(owner).get(url + "?format=json").status_code == 200


def test_a_missing_job_is_404(member_client):
    assert member_client.get("/accounts/jobs/999999/").status_code == 404


def test_the_job_page_polls_until_finished(member, member_client):
    job = start(member)
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert 'data-finished="0"' in page
    assert f"/accounts/jobs/{job.pk}/?format=json" in page
    assert '<script src="/static/job.js" defer></script>' in page
    jobs.run(job.pk)
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert 'data-finished="1"' in page
    assert 'data-job-bar data-width="100"' in page


def test_the_job_page_of_a_finished_export_links_the_file(member, member_client):
    job = Job.objects.create(
        kind="export", operator=member, status=Job.Status.SUCCEEDED, result={"rows": 7}
    )
    r = member_client.get(f"/accounts/jobs/{job.pk}/")
    assert r.status_code == 200
    page = r.content.decode()
    assert f'href="{reverse("customers:export_download", args=[job.pk])}"' in page
    assert r.context["result_template"] == "customers/_job_result.html"
    assert "rows exported" in page


def test_the_job_page_without_the_result_partial(member, member_client, monkeypatch):
    from okuru.accounts import views

    monkeypatch.setattr(views, "_result_template", lambda job: "")
    job = Job.objects.create(kind="import", operator=member, status=Job.Status.FAILED, error="x")
    r = member_client.get(f"/accounts/jobs/{job.pk}/")
    assert r.status_code == 200
    assert '<p class="error" role="alert">x</p>' in r.content.decode()


def test_a_running_export_has_no_download_link(member, member_client):
    job = Job.objects.create(kind="export", operator=member, status=Job.Status.RUNNING)
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert "Download the file" not in page


def test_the_job_list_shows_own_jobs_and_all_to_admins(owner, member, owner_client, member_client):
    mine = start(member)
    theirs = start(owner)
    member_ids = [j.pk for j in member_client.get("/accounts/jobs/").context["page"]]
    assert member_ids == [mine.pk]
    owner_ids = [j.pk for j in owner_client.get("/accounts/jobs/").context["page"]]
    assert owner_ids == [theirs.pk, mine.pk]


def test_the_job_list_does_not_query_per_row(owner, owner_client, django_assert_max_num_queries):
    # Two of them tell the queued jobs how many are ahead of them, whatever the page length.
    for _ in range(30):
        start(owner)
    with django_assert_max_num_queries(10):
        r = owner_client.get("/accounts/jobs/")
    assert len(r.context["page"]) == 30


# --- notices ---------------------------------------------------------------------------------


def test_the_nav_shows_the_unread_count(member, member_client):
    for _ in range(2):
        jobs.run(start(member).pk)
    page = member_client.get("/accounts/notices/").content.decode()
    assert 'title="Unread notices">2</span>' in page


def test_it_marks_one_notice_read(member, member_client):
    jobs.run(start(member).pk)
    jobs.run(start(member).pk)
    first, second = Notification.objects.filter(operator=member).order_by("id")
    r = member_client.post("/accounts/notices/read/", {"id": first.pk})
    assert r.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.read and not second.read
    assert OperationLog.objects.get(action="notices_read").detail == {"count": 1}


def test_it_marks_all_notices_read(member, member_client, owner):
    jobs.run(start(member).pk)
    jobs.run(start(member).pk)
    jobs.run(start(owner).pk)
    member_client.post("/accounts/notices/read/")
    assert not Notification.objects.filter(operator=member, read=False).exists()
    assert Notification.objects.filter(operator=owner, read=False).count() == 1


def test_opening_a_notice_marks_it_read_and_follows_its_link(member, member_client, owner):
    job = start(member)
    jobs.run(job.pk)
    notice = Notification.objects.get(operator=member)
    r = member_client.get(f"/accounts/notices/{notice.pk}/")
    assert r.url == f"/accounts/jobs/{job.pk}/"
    notice.refresh_from_db()
    assert notice.read
    # Someone else's notice does not exist for them.
    jobs.run(start(owner).pk)
    theirs = Notification.objects.get(operator=owner)
    assert member_client.get(f"/accounts/notices/{theirs.pk}/").status_code == 404


def test_a_notice_never_redirects_off_site(member, member_client):
    notice = Notification.objects.create(operator=member, text="x", link="//evil.example/")
    r = member_client.get(f"/accounts/notices/{notice.pk}/")
    assert r.url == "/accounts/notices/"
