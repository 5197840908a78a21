"""Long jobs: a ``Job`` row says what is to do and how far it got; a Django task runs it.

``start`` creates the row and enqueues ``run_job`` on commit. ``run_job`` claims the row with a
conditional update, so a repeated task finds nothing to do. A job kind is a function
``runner(job, progress) -> result dict`` registered with ``@runner("kind")``; it raises
``JobError`` with a message for the operator to fail cleanly. A kind whose completion says more
than "finished" (an extraction's ready notice) registers its own ``notify``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.accounts.access import sees_customer_data
from okuru.accounts.models import Job, Notification, Operator

log = logging.getLogger(__name__)
Runner = Callable[[Job, "Progress"], dict[str, Any]]
RUNNERS: dict[str, Runner] = {}
KIND_LABELS: dict[str, Callable[[], str]] = {}
NOTIFIERS: dict[str, Callable[[Job], None]] = {}


class JobError(Exception):
    """A failure to report to the operator as is (already translated)."""


def runner(
    kind: str, label: Callable[[], str], notify: Callable[[Job], None] | None = None
) -> Callable[[Runner], Runner]:
    def decorator(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        KIND_LABELS[kind] = label
        if notify is not None:
            NOTIFIERS[kind] = notify
        return fn

    return decorator


class Progress:
    """Progress reporting that writes at most about once a second."""

    def __init__(self, job: Job, interval: float = 1.0, echo: Callable[[int], None] | None = None):
        self.job = job
        self.interval = interval
        self.echo = echo  # a command running the job in the foreground prints it too
        self._last = float("-inf")  # the first report always writes

    def total(self, total: int | None) -> None:
        self.job.progress_total = total
        Job.objects.filter(pk=self.job.pk).update(progress_total=total)

    def __call__(self, done: int, force: bool = False) -> None:
        self.job.progress_done = done
        if self.echo is not None:
            self.echo(done)
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            Job.objects.filter(pk=self.job.pk).update(progress_done=done)


def start(
    kind: str,
    operator: Operator | None,
    params: dict[str, Any],
    input_file: str = "",
    *,
    source_ip: str | None = None,
    enqueue: bool = True,
) -> Job:
    """Queue a job. ``source_ip`` (``audit.client_ip(request)``) goes on the operation log
    entries that the job writes. ``enqueue=False``: the caller runs it in the foreground
    (``run``), so no worker can claim it first."""
    from okuru.accounts.tasks import run_job

    job = Job.objects.create(
        kind=kind, operator=operator, params=params, input_file=input_file, source_ip=source_ip
    )
    if enqueue:
        transaction.on_commit(lambda: run_job.enqueue(job.pk))
    return job


def run(job_id: int, echo: Callable[[int], None] | None = None) -> Job | None:
    """Run a queued job to its end. Returns None when someone else already claimed it.
    ``echo`` gets every progress report (a command's progress line)."""
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started=timezone.now()
    )
    if claimed != 1:
        return None
    job = Job.objects.select_related("operator").get(pk=job_id)
    lang = (job.operator.language if job.operator else "") or settings.LANGUAGE_CODE
    with translation.override(lang), audit.source_ip(job.source_ip):
        try:
            result = RUNNERS[job.kind](job, Progress(job, echo=echo))
        except JobError as e:
            finish(job, Job.Status.FAILED, error=str(e))
        except Exception as e:  # never lose the job: park it failed, with the reason
            log.exception("job %s failed", job.pk)
            finish(job, Job.Status.FAILED, error=_("Unexpected error: %(error)s") % {"error": e})
        else:
            finish(job, Job.Status.SUCCEEDED, result=result)
    return job


def finish(job: Job, status: str, result: dict | None = None, error: str = "") -> None:
    job.status = status
    job.finished = timezone.now()
    job.result = result or {}
    job.error = error
    if status == Job.Status.SUCCEEDED and job.progress_total:
        job.progress_done = job.progress_total
    job.save(update_fields=["status", "finished", "result", "error", "progress_done"])
    notify(job)


def kind_label(kind: str) -> str:
    """The translated name of a job kind ("Import", "Export"...)."""
    label = KIND_LABELS.get(kind)
    return str(label()) if label else kind


def result_for(job: Job, user: Operator) -> dict[str, Any]:
    """The job's result as ``user`` may see it. An import's row errors repeat values of its
    file: customer data for anyone but the operator who imported it (an operators admin reads
    everyone's jobs, and sees those rows only with Customers: read)."""
    result = job.result or {}
    if "errors" not in result or job.operator_id == user.pk or sees_customer_data(user):
        return result
    return {k: v for k, v in result.items() if k != "errors"}


def describe(job: Job) -> str:
    label = kind_label(job.kind)
    if job.status == Job.Status.SUCCEEDED:
        return _("%(kind)s #%(id)s finished.") % {"kind": label, "id": job.pk}
    return _("%(kind)s #%(id)s failed: %(error)s") % {
        "kind": label,
        "id": job.pk,
        "error": job.error,
    }


def notify(job: Job) -> None:
    if job.operator is None:
        return
    custom = NOTIFIERS.get(job.kind)
    if custom is not None:
        custom(job)
    else:
        notify_finished(job)


def notify_finished(job: Job) -> None:
    """The plain notice: "<kind> #N finished." (or failed) in the app and by e-mail."""
    from django.urls import reverse

    text = describe(job)
    link = reverse("accounts:job", args=[job.pk])
    Notification.objects.create(operator=job.operator, text=text[:500], link=link)
    if settings.NOTIFY_BY_EMAIL and job.operator.email:
        try:
            send_mail(
                f"[Okuru] {text}"[:200],
                f"{text}\n\n{settings.SITE_ROOT}{link}\n",
                None,
                [job.operator.email],
            )
        except OSError:
            log.warning("could not e-mail job notice for job %s", job.pk, exc_info=True)
