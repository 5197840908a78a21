"""Imports: upload a CSV file; the import runs as a job (poll ``/jobs/{id}``)."""

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile

from okuru.accounts import audit, jobs
from okuru.api.auth import needs
from okuru.api.errors import form_errors
from okuru.api.jobs import JobOut, job_json
from okuru.customers.forms import ImportForm

router = Router(tags=["imports"])


def _store(upload: UploadedFile) -> Path:
    """Put the upload at imports/<uuid>.csv: a rename when Django already spooled it to disk,
    else a chunked copy (only small files are kept in memory by the upload handlers)."""
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


@router.post(
    "/imports", auth=needs("import_data"), response={202: JobOut}, summary="Import a CSV file"
)
def start_import(
    request: HttpRequest,
    file: File[UploadedFile],
    mode: Form[str] = "upsert",
    key: Form[str] = "customer_id",
    encoding: Form[str] = "auto",
    dry_run: Form[bool] = False,
):
    """``mode``: insert, update or upsert. ``key``: customer_id or a unique field's key.
    ``encoding``: auto, utf-8 or cp932. ``dry_run``: check and report, change nothing."""
    data = QueryDict(mutable=True)
    data.update({"mode": mode, "key": key, "encoding": encoding})
    if dry_run:
        data["dry_run"] = "on"
    form = ImportForm(data, MultiValueDict({"file": [file]}))
    if not form.is_valid():
        raise form_errors(form)
    d = form.cleaned_data
    path = _store(d["file"])
    params = {
        "path": str(path),
        "mode": d["mode"],
        "key": d["key"],
        "encoding": d["encoding"],
        "dry_run": d["dry_run"],
        "filename": d["file"].name,
    }
    job = jobs.start(
        "import",
        request.user,
        params=params,
        input_file=str(path),
        source_ip=audit.client_ip(request),
    )
    audit.log(request, "import_start", f"job {job.pk}", params)
    return Status(202, job_json(job))
