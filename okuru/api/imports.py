"""Imports: upload a CSV file; the import runs as a job (poll ``/jobs/{id}``)."""

from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile

from okuru.api.auth import needs
from okuru.api.errors import form_errors
from okuru.api.jobs import JobOut, job_json
from okuru.customers import jobs as customer_jobs
from okuru.customers.forms import ImportForm

router = Router(tags=["imports"])


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
    job = customer_jobs.start_import(request, form.cleaned_data)
    return Status(202, job_json(job))
