"""Jobs: the caller's long jobs (imports, exports) with their progress and result."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from ninja import Router, Schema

from okuru.accounts import jobs
from okuru.accounts.models import Job
from okuru.api.errors import bad_request, not_found

router = Router(tags=["jobs"])
MAX_LIMIT = 200


class JobOut(Schema):
    id: int
    kind: str
    status: str
    operator: str | None
    progress_done: int
    progress_total: int | None
    percent: int | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    params: dict[str, Any]
    result: dict[str, Any]
    error: str
    download_url: str | None


def job_json(job: Job) -> dict[str, Any]:
    params = {k: v for k, v in job.params.items() if k != "path"}  # server paths stay inside
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "operator": job.operator.get_username() if job.operator else None,
        "progress_done": job.progress_done,
        "progress_total": job.progress_total,
        "percent": job.percent,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "params": params,
        "result": job.result,
        "error": job.error,
        "download_url": _download_url(job),
    }


def _download_url(job: Job) -> str | None:
    if job.kind != "export" or job.status != Job.Status.SUCCEEDED:
        return None
    try:
        return reverse("api:export_download", args=[job.pk])
    except NoReverseMatch:
        return None


def get_job_for(request: HttpRequest, job_id: int, kind: str | None = None) -> Job:
    """A job of the caller's (any job for an operators admin); someone else's is a 404."""
    job = Job.objects.select_related("operator").filter(pk=job_id).first()
    if (
        job is None
        or (kind is not None and job.kind != kind)
        or (job.operator_id != request.user.pk and not request.user.has_right("operators_admin"))
    ):
        raise not_found(_("No job with ID %(id)s.") % {"id": job_id})
    return job


@router.get("/jobs", response=list[JobOut], summary="List my jobs")
def list_jobs(request: HttpRequest, kind: str | None = None, limit: int = 50):
    """The caller's own jobs, newest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(_("limit must be between 1 and %(max)s.") % {"max": MAX_LIMIT})
    qs = Job.objects.select_related("operator").filter(operator=request.user)
    if kind:
        qs = qs.filter(kind=kind)
    return [job_json(j) for j in qs[:limit]]


@router.get("/jobs/{job_id}", response=JobOut, summary="Get a job")
def get_job(request: HttpRequest, job_id: int):
    """Poll this until ``status`` is succeeded or failed."""
    job = get_job_for(request, job_id)
    job.result = jobs.result_for(job, request.user)  # shown, never saved
    return job_json(job)
