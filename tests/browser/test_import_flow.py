"""Import through the screens: upload a CSV with one bad row, watch the job page go from
queued through progress to finished, see the rejected row's reason and the notice badge."""

from __future__ import annotations

import types

import pytest
from playwright.sync_api import expect

from okuru.accounts import jobs
from okuru.accounts.models import Job
from okuru.customers.models import Customer
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

CSV = b"Customer ID,email\n,aoki@example.com\n,baba@example.com\n,not-an-email\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"


@pytest.fixture
def queued_jobs(monkeypatch):
    """Jobs stay queued until the test runs them: under pytest tasks otherwise run inline,
    inside the upload's request, and the page would never show a job in progress."""
    monkeypatch.setattr(
        "okuru.accounts.tasks.run_job", types.SimpleNamespace(enqueue=lambda pk: None)
    )


def test_an_import_shows_progress_then_its_counts_errors_and_a_notice(
    transactional_db, member, live_server, page, queued_jobs
):
    log_in(page, live_server, member)
    expect(page.locator("details.user-menu [data-unread-notices]")).to_have_count(0)

    page.goto(f"{live_server.url}/import/")
    page.set_input_files(
        "input[name=file]", {"name": "people.csv", "mimeType": "text/csv", "buffer": CSV}
    )
    page.check("input[name=mode][value=upsert]")
    page.uncheck("input[name=dry_run]")
    with page.expect_navigation():
        page.click("form[enctype] button[type=submit]")

    job = Job.objects.get(kind="import")
    assert page.url == f"{live_server.url}/accounts/jobs/{job.pk}/"
    assert job.status == Job.Status.QUEUED and job.params["dry_run"] is False
    expect(page.locator("[data-job-status]")).to_have_text("Queued")
    bar = page.locator("[data-job-progress]")
    expect(bar).to_be_visible()
    expect(bar).to_have_class("progress indeterminate")  # no total yet: a moving stripe

    # Progress as a runner reports it: the page polls and draws it.
    Job.objects.filter(pk=job.pk).update(progress_total=3, progress_done=1)
    expect(page.locator("[data-job-percent]")).to_have_text("33%")
    expect(bar).to_have_attribute("aria-valuenow", "33")
    expect(page.locator("[data-job-done]")).to_have_text("1")
    expect(page.locator("[data-job-total]")).to_have_text("3")
    assert bar.locator("div").bounding_box()["width"] > 0

    Job.objects.filter(pk=job.pk).update(progress_total=None, progress_done=0)
    jobs.run(job.pk)  # the worker's part; the page sees it finish and reloads itself

    expect(page.locator("[data-job-status]")).to_have_text("Succeeded")
    expect(page.locator("[data-job-percent]")).to_have_text("100%")
    expect(page.locator(".stat", has_text="inserted").locator("b")).to_have_text("2")
    expect(page.locator(".stat", has_text="rejected").locator("b")).to_have_text("1")
    expect(page.locator("table.list tbody tr")).to_have_text(
        ["4 email not an e-mail address (it needs the form name@example.com): not-an-email"],
        use_inner_text=True,
    )
    expect(page.locator("details.user-menu [data-unread-notices]")).to_have_text("1")
    assert sorted(Customer.objects.values_list("email", flat=True)) == [
        "aoki@example.com",
        "baba@example.com",
    ]
