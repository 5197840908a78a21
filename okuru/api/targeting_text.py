"""A mail's or a delivery's targeting in words (``okuru.mailings.describe``), as the mail page
and the delivery report show it: ``{"targeting_text": "…", "lines": […]}`` in the caller's
language."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router

from okuru.api.auth import needs
from okuru.api.errors import not_found
from okuru.mailings import describe
from okuru.mailings.models import Delivery, Mail

router = Router(tags=["targeting"])


def _out(lines: list[str]) -> dict:
    return {"targeting_text": "\n".join(lines), "lines": lines}


@router.get(
    "/mails/{mail_id}/targeting-text", summary="A mail's targeting in words", auth=needs("mails")
)
def mail_targeting(request: HttpRequest, mail_id: int):
    mail = Mail.objects.select_related("topic").filter(pk=mail_id).first()
    if mail is None:
        raise not_found(_("No mail with id %(id)s.") % {"id": mail_id})
    return _out(describe.of_mail(mail))


@router.get(
    "/deliveries/{delivery_id}/targeting-text",
    summary="A delivery's frozen targeting in words",
    auth=needs("reports"),
)
def delivery_targeting(request: HttpRequest, delivery_id: int):
    delivery = Delivery.objects.select_related("mail").filter(pk=delivery_id).first()
    if delivery is None:
        raise not_found(_("No delivery with id %(id)s.") % {"id": delivery_id})
    return _out(describe.of_delivery(delivery))
