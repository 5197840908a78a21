"""The customer job runners: "import" and "export" (registered with okuru.accounts.jobs).

Params as the UI and the API start them:

* import: ``{path, mode, key, encoding, dry_run, filename}`` (``path`` or the job's input file).
* export: ``{fields, filter, view_id, encoding}``; the file goes to
  ``MEDIA_ROOT/exports/<job id>.csv`` and ``job.output_file`` holds its absolute path.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.accounts import audit, jobs
from okuru.accounts.jobs import JobError, Progress, runner
from okuru.accounts.models import Job
from okuru.customers import exporter, filters, importer
from okuru.customers.models import View
from okuru.lib import csvio

COUNTS = ("inserted", "updated", "skipped", "rejected")


def store_upload(upload: UploadedFile) -> Path:
    """Put an uploaded CSV at ``MEDIA_ROOT/imports/<uuid>.csv``: a rename when Django spooled
    it to disk, else a chunked copy (never the whole file in memory)."""
    folder = Path(settings.MEDIA_ROOT) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4()}.csv"
    if hasattr(upload, "temporary_file_path"):
        shutil.move(upload.temporary_file_path(), target)
    else:
        with target.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    return target


def start_import(request: HttpRequest, cleaned: dict[str, Any]) -> Job:
    """Store the upload of a valid ``ImportForm`` and start its import job (UI and API)."""
    path = store_upload(cleaned["file"])
    params = {
        "path": str(path),
        "mode": cleaned["mode"],
        "key": cleaned["key"],
        "encoding": cleaned["encoding"],
        "dry_run": cleaned["dry_run"],
        "filename": cleaned["file"].name,
    }
    job = jobs.start(
        "import",
        request.user,
        params=params,
        input_file=str(path),
        source_ip=audit.client_ip(request),
    )
    # The stored upload's path is the server's business, not the log reader's.
    audit.log(
        request, "import_start", f"job {job.pk}", {k: v for k, v in params.items() if k != "path"}
    )
    return job


def import_text(job: Job) -> str:
    """The import's notice: who, when, which file and every count; a dry run says so."""
    r = job.result or {}
    values = {
        "id": job.pk,
        "file": job.params.get("filename") or "—",
        "operator": job.operator.get_username() if job.operator else "—",
        "time": timezone.localtime(job.finished or timezone.now()).strftime("%Y-%m-%d %H:%M"),
        **{k: number_format(r.get(k, 0), force_grouping=True) for k in COUNTS},
    }
    if job.params.get("dry_run"):
        text = _(
            "Dry run of import #%(id)s (%(file)s) by %(operator)s at %(time)s, nothing was"
            " changed: %(inserted)s would be inserted, %(updated)s updated, %(skipped)s"
            " skipped, %(rejected)s rejected."
        )
    else:
        text = _(
            "Import #%(id)s (%(file)s) by %(operator)s finished at %(time)s: %(inserted)s"
            " inserted, %(updated)s updated, %(skipped)s skipped, %(rejected)s rejected."
        )
    return text % values


def import_notice(job: Job) -> None:
    if job.status != Job.Status.SUCCEEDED:
        jobs.notify_finished(job)  # the plain notice, with the reason
        return
    jobs.notify_finished(job, import_text(job))


@runner("import", lambda: str(gettext_lazy("Import")), notify=import_notice)
def import_job(job: Job, progress: Progress) -> dict[str, Any]:
    p = job.params
    path = p.get("path") or job.input_file
    if not path or not Path(path).is_file():
        raise JobError(_("The uploaded file is gone."))
    # Lines, not rows (a quoted cell may hold line breaks): close enough for a progress bar.
    progress.total(max(0, csvio.count_lines(path) - 1))
    try:
        result = importer.run_import(
            path,
            mode=p.get("mode", "upsert"),
            key=p.get("key", "customer_id"),
            encoding=p.get("encoding", "auto"),
            dry_run=bool(p.get("dry_run")),
            operator=job.operator,
            progress=progress,
            name=p.get("filename") or "",
        )
    except importer.ImportFailed as e:
        listed = {"errors": [list(error) for error in e.errors], "error_count": len(e.errors)}
        raise JobError(str(e), listed if e.errors else None) from None
    progress.total(result.rows)
    return result.as_dict()


def export_path(job: Job) -> Path:
    return Path(settings.MEDIA_ROOT) / "exports" / f"{job.pk}.csv"


@runner("export", lambda: str(gettext_lazy("Export")))
def export_job(job: Job, progress: Progress) -> dict[str, Any]:
    p = job.params
    view = None
    if p.get("view_id"):
        view = View.objects.filter(pk=p["view_id"]).first()
        if view is None:
            raise JobError(_("The database view of this export was deleted."))
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    try:
        tree = exporter.combined_filter(p.get("filter"), view)
        progress.total(filters.count(tree))
        with partial.open("wb") as out:
            rows = exporter.write_export(
                out,
                list(p.get("fields") or []),
                p.get("filter"),
                p.get("encoding") or "utf-8-sig",
                view=view,
                progress=progress,
            )
        os.replace(partial, path)
    except (exporter.ExportError, filters.FilterError) as e:
        raise JobError(str(e)) from None
    finally:
        partial.unlink(missing_ok=True)
    job.output_file = str(path.resolve())
    job.save(update_fields=["output_file"])
    audit.log(
        job.operator,
        "export",
        f"job {job.pk}",
        {"rows": rows, "fields": p.get("fields"), "filter": p.get("filter"), "file": path.name},
    )
    return {"rows": rows, "file": path.name}
