"""Exports: start an export job; download its file once it has succeeded."""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, QueryDict
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status

from okuru.accounts import audit, jobs
from okuru.accounts.access import CUSTOMER_DATA_RIGHT
from okuru.accounts.models import Job
from okuru.api.auth import needs
from okuru.api.errors import ApiError, bad_request, form_errors, not_found
from okuru.api.jobs import JobOut, get_job_for, job_json
from okuru.customers import filters
from okuru.customers.fields import catalogue
from okuru.customers.forms import ExportForm

router = Router(tags=["exports"])


class ExportIn(Schema):
    fields: list[str]
    filter: dict[str, Any] | None = None
    view_id: int | None = None
    encoding: str = "utf-8-sig"


@router.post(
    "/exports",
    auth=needs("customers_read", "export_data"),
    response={202: JobOut},
    summary="Start an export",
)
def start_export(request: HttpRequest, payload: ExportIn):
    """``fields``: keys in column order. ``filter``: a filter tree; with ``view_id`` it narrows
    the view's own filter. ``encoding``: utf-8-sig (or utf-8: UTF-8 with BOM) or cp932."""
    data = QueryDict(mutable=True)
    data["filter"] = json.dumps(payload.filter or {})
    # "utf-8" is what the CLI calls it; the file is UTF-8 with a BOM either way.
    data["encoding"] = "utf-8-sig" if payload.encoding in ("utf-8", "utf8") else payload.encoding
    if payload.view_id is not None:
        data["view"] = str(payload.view_id)
    data.setlist("fields", payload.fields)
    specs = catalogue()
    form = ExportForm(specs, data)
    if not form.is_valid():
        raise form_errors(form)
    tree = form.tree()
    try:
        # The view's own filter is checked only now: it may name a field deleted since.
        rows = filters.count(tree, specs)
    except filters.FilterError as e:
        raise bad_request(str(e)) from None
    d = form.cleaned_data
    params = {"fields": d["fields"], "filter": tree, "encoding": d["encoding"], "rows": rows}
    job = jobs.start("export", request.user, params=params, source_ip=audit.client_ip(request))
    audit.log(request, "export_start", f"job {job.pk}", params)
    return Status(202, job_json(job))


@router.get(
    "/exports/{job_id}/file",
    # The file holds customer data: having exported it once is not enough to fetch it later.
    auth=needs(CUSTOMER_DATA_RIGHT, "export_data"),
    url_name="export_download",
    summary="Download an export's file",
    response={200: None},
)
def download_export(request: HttpRequest, job_id: int):
    job = get_job_for(request, job_id, kind="export")
    if job.status != Job.Status.SUCCEEDED:
        raise ApiError(
            409,
            _("The export has no file: its status is %(status)s.")
            % {"status": job.get_status_display()},
        )
    # The path comes from the export runner, never from a caller; it must lie under MEDIA_ROOT.
    path = Path(job.output_file).resolve() if job.output_file else None
    media = Path(settings.MEDIA_ROOT).resolve()
    if path is None or not path.is_relative_to(media) or not path.is_file():
        raise not_found(_("The export's file is gone."))
    audit.log(request, "export_download", f"job {job.pk}", {"file": path.name})
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
