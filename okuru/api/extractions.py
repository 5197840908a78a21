"""Use of measurement results (効果測定結果の利用): extract a delivery list from past deliveries,
poll it, list, show and discard. The list's id (``recipient_list_id``) is a spot mail's target
(``POST /api/mails``).

Rights: ``sending`` and ``reports`` to extract (a list of who did what in past deliveries, made
to be sent to), ``reports`` to read, ``sending`` to discard. The work is in
``okuru.mailings.extraction``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status

from okuru.api.auth import needs
from okuru.api.errors import ApiError, bad_request, not_found
from okuru.mailings import extraction
from okuru.mailings.models import Extraction

router = Router(tags=["extractions"])
MAX_LIMIT = 200


class ExtractionIn(Schema):
    deliveries: list[int]
    view: int | str
    conditions: list[str] = []
    match: str = "all"
    link: int | None = None


def _validation(e: ValidationError) -> ApiError:
    errors = e.message_dict if hasattr(e, "error_dict") else None
    return ApiError(400, " ".join(e.messages), errors)


def _choice(payload: ExtractionIn) -> extraction.Choice:
    try:
        return extraction.check(
            payload.deliveries, payload.view, payload.conditions, payload.match, payload.link
        )
    except ValidationError as e:
        raise _validation(e) from None


def _get(extraction_id: int) -> Extraction:
    found = extraction.get(extraction_id)
    if found is None:
        raise not_found(_("No extraction with id %(id)s.") % {"id": extraction_id})
    return found


@router.post(
    "/extractions/preview",
    summary="Preview an extraction's count",
    auth=needs("sending", "reports"),
)
def preview_extraction(request: HttpRequest, payload: ExtractionIn) -> dict[str, Any]:
    """``count``: the customers the list would hold; ``excluded_now``: how many of them an
    exclusion would stop if sent now (applied again at send time)."""
    return extraction.expected(_choice(payload))


@router.post(
    "/extractions",
    response={202: dict},
    summary="Extract a delivery list",
    auth=needs("sending", "reports"),
)
def create_extraction(request: HttpRequest, payload: ExtractionIn):
    """``deliveries``: source delivery ids, each started within the last 3 months. ``view``: a
    delivery-eligible database view (id or name). ``conditions``: any of opened, not_opened,
    clicked, not_clicked, errored, not_errored (none: every recipient), combined by ``match``
    (all / any). ``link``: a tracked link of those deliveries' mails, for clicked /
    not_clicked. Runs in the background: poll ``GET /api/extractions/{id}`` until ``status``
    is ready (or failed); the caller also gets an in-app notice and an e-mail."""
    started = extraction.start_extraction(_choice(payload), request)
    return Status(202, extraction.as_json(_get(started.pk)))


@router.get("/extractions", summary="List extractions", auth=needs("reports"))
def list_extractions(request: HttpRequest, status: str | None = None, limit: int = 50):
    """Newest first, with their state, operator, time, count and the mails they fed."""
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(_("limit must be between 1 and %(max)s.") % {"max": MAX_LIMIT})
    qs = extraction.extractions()
    if status:
        if status not in Extraction.Status.values:
            raise bad_request(_("Unknown status: %(status)s") % {"status": status})
        qs = qs.filter(status=status)
    return {"items": [extraction.as_json(e) for e in qs[:limit]]}


@router.get("/extractions/{extraction_id}", summary="Get an extraction", auth=needs("reports"))
def get_extraction(request: HttpRequest, extraction_id: int):
    return extraction.as_json(_get(extraction_id))


@router.post(
    "/extractions/{extraction_id}/discard",
    summary="Discard an unused extraction",
    auth=needs("sending"),
)
def discard_extraction(request: HttpRequest, extraction_id: int):
    """Drops the list; refused (409, with the reason) while a mail uses it."""
    try:
        found = extraction.discard_extraction(_get(extraction_id), request)
    except ValidationError as e:
        raise ApiError(409, " ".join(e.messages)) from None
    return extraction.as_json(_get(found.pk))
