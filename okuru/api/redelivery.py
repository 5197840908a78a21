"""Resend (再送信) and Re-deliver: the REST side of ``okuru.mailings.redelivery``.

Rights are the UI's: ``sending`` (and ``mails``, for the draft a resend creates) to resend,
re-deliver and plan; ``reports`` to see a re-delivery's counts and a delivery's plans. A source
that cannot be used (not sent, or started more than 3 months ago) is a 400 with the reason; a
repeat of the same audience of the same source without ``"confirm": true`` is a 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status

from okuru.api.auth import needs
from okuru.api.errors import ApiError, bad_request, not_found
from okuru.mailings import redelivery
from okuru.mailings.api import delivery_json, mail_json
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery

router = Router(tags=["re-delivery"])


class PreviewParams(Schema):
    audience: str
    link: int | None = None


class RedeliverIn(Schema):
    audience: str
    link: int | None = None
    subject: str = ""
    text_body: str | None = None
    html_body: str | None = None
    at: datetime | None = None
    confirm: bool = False


class PlanIn(Schema):
    audience: str
    days: int
    subject: str = ""


def _get_delivery(delivery_id: int) -> Delivery:
    delivery = Delivery.objects.select_related("mail").filter(pk=delivery_id).first()
    if delivery is None:
        raise not_found(_("No delivery with id %(id)s.") % {"id": delivery_id})
    return delivery


def _refused(e: ValidationError) -> ApiError:
    status = 409 if isinstance(e, redelivery.RepeatError) else 400
    return ApiError(status, " ".join(e.messages))


@router.post(
    "/deliveries/{delivery_id}/resend",
    response={201: dict},
    summary="Resend: a new draft cloned from a delivery",
    auth=needs("sending", "mails"),
)
def resend(request: HttpRequest, delivery_id: int):
    """A new draft mail with the content, sender settings, tracking, topic, duplicate rule,
    threshold and targeting the delivery used. The targeting is evaluated when the draft is
    sent; change it first with ``PATCH /mails/{id}`` to narrow it."""
    try:
        mail = redelivery.resend(_get_delivery(delivery_id), request)
    except ValidationError as e:
        raise _refused(e) from None
    return Status(201, mail_json(mail))


@router.get(
    "/deliveries/{delivery_id}/redeliver/preview",
    summary="Re-deliver: the counts before sending",
    auth=needs("reports"),
)
def preview(request: HttpRequest, delivery_id: int, params: Query[PreviewParams]):
    """``audience``: all, opened, not_opened, clicked, not_clicked, errored, not_errored,
    not_reached; ``link`` (clicked / not_clicked): a tracked link of the delivery's mail.
    Matched, excluded by reason, after exclusions, after the duplicate rule; ``previous``
    lists earlier re-deliveries of the same audience."""
    try:
        return redelivery.redeliver_preview(
            _get_delivery(delivery_id), params.audience, params.link
        )
    except ValidationError as e:
        raise _refused(e) from None


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response={201: dict},
    summary="Re-deliver to an audience of a delivery",
    auth=needs("sending"),
)
def redeliver(request: HttpRequest, delivery_id: int, payload: RedeliverIn):
    """Creates the re-delivery mail (the source's content; ``subject``, ``text_body``,
    ``html_body`` replace it) and its delivery: sent now, or reserved with ``at`` (ISO 8601
    with offset). The same audience of the same source a second time needs ``"confirm":
    true`` (409 otherwise)."""
    if payload.at is not None and payload.at.tzinfo is None:
        raise bad_request(_("at needs a time zone offset, like 2025-04-01T09:00:00+09:00."))
    delivery = _get_delivery(delivery_id)
    try:
        new = redelivery.redeliver(
            delivery,
            request,
            payload.audience,
            link=payload.link,
            subject=payload.subject,
            text_body=payload.text_body,
            html_body=payload.html_body,
            when=payload.at,
            confirm=payload.confirm,
        )
    except ValidationError as e:
        raise _refused(e) from None
    new.mail = Mail.objects.get(pk=new.mail_id)
    return Status(201, delivery_json(new) | {"source": delivery.pk})


@router.get(
    "/deliveries/{delivery_id}/planned-redeliveries",
    summary="A delivery's planned re-deliveries",
    auth=needs("reports"),
)
def list_plans(request: HttpRequest, delivery_id: int):
    delivery = _get_delivery(delivery_id)
    return {"items": [redelivery.plan_json(p) for p in delivery.planned_redeliveries.all()]}


@router.post(
    "/deliveries/{delivery_id}/planned-redeliveries",
    response={201: dict},
    summary="Plan a re-delivery N days after the send",
    auth=needs("sending"),
)
def plan(request: HttpRequest, delivery_id: int, payload: PlanIn):
    """``audience``: not_opened or not_clicked; ``days``: 1–60 after the delivery started;
    ``subject``: optional new subject."""
    try:
        created = redelivery.plan_redelivery(
            request,
            payload.audience,
            payload.days,
            payload.subject,
            source=_get_delivery(delivery_id),
        )
    except ValidationError as e:
        raise _refused(e) from None
    return Status(201, redelivery.plan_json(created))


@router.put(
    "/mails/{mail_id}/planned-redelivery",
    summary="Set a mail's planned re-delivery",
    auth=needs("mails", "sending"),
)
def set_mail_plan(request: HttpRequest, mail_id: int, payload: PlanIn):
    """Every delivery of the mail reserved from now on gets this plan. ``audience`` "" removes
    the mail's plan (deliveries already reserved keep theirs)."""
    mail = Mail.objects.filter(pk=mail_id).first()
    if mail is None:
        raise not_found(_("No mail with id %(id)s.") % {"id": mail_id})
    try:
        current = redelivery.set_mail_plan(
            mail, request, payload.audience, payload.days, payload.subject
        )
    except ValidationError as e:
        raise _refused(e) from None
    return {"plan": redelivery.plan_json(current) if current else None}


@router.delete(
    "/planned-redeliveries/{plan_id}",
    summary="Cancel a planned re-delivery",
    auth=needs("sending"),
)
def cancel_plan(request: HttpRequest, plan_id: int) -> dict[str, Any]:
    """Only a plan that has not run yet can be cancelled (409 otherwise)."""
    found = PlannedRedelivery.objects.filter(pk=plan_id).first()
    if found is None:
        raise not_found(_("No planned re-delivery with id %(id)s.") % {"id": plan_id})
    try:
        redelivery.cancel_planned(found, request)
    except ValidationError as e:
        raise ApiError(409, " ".join(e.messages)) from None
    return redelivery.plan_json(found)
