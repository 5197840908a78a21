"""Set a field on these recipients: the REST side of ``okuru.mailings.recipient_fields``.

Needs ``reports`` (the counts are a report's) and ``customers_write`` (the value is written on
customers). The job runs in the background: poll ``GET /jobs/{id}``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status

from okuru.api.auth import needs
from okuru.api.errors import bad_request, not_found
from okuru.api.jobs import job_json
from okuru.mailings import recipient_fields
from okuru.mailings.models import Delivery

router = Router(tags=["recipient fields"])


class SetFieldIn(Schema):
    count: str
    field: str
    value: str = ""
    minus: str = ""
    clear_others: bool = False
    dry_run: bool = False


@router.post(
    "/deliveries/{delivery_id}/set-field",
    response={200: dict, 202: dict},
    summary="Set a field on the recipients of a report count",
    auth=needs("reports", "customers_write"),
)
def set_field(request: HttpRequest, delivery_id: int, payload: SetFieldIn):
    """``count``: all, sent, errors, error:<kind>, opened, not_opened, clicked, not_clicked,
    clicked:<link> …; ``minus``: another count whose recipients are left out (route 3: sent
    minus errors); ``value`` as an import file writes it (empty clears the field on them);
    ``clear_others``: first clear the field on every other customer. ``dry_run``: only the
    number of customers it would set (200). Otherwise 202 with the job."""
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise not_found(_("No delivery with id %(id)s.") % {"id": delivery_id})
    try:
        choice = recipient_fields.check(
            delivery,
            payload.count,
            payload.field,
            payload.value,
            minus=payload.minus,
            clear_others=payload.clear_others,
        )
    except ValidationError as e:
        raise bad_request(" ".join(e.messages)) from None
    expected = recipient_fields.expected(choice)
    if payload.dry_run:
        return Status(200, {"expected": expected, **choice.params()})
    job = recipient_fields.start(choice, request)
    return Status(202, {"job": job_json(job), "expected": expected})
