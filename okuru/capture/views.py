"""The capture box: mail the local capture SMTP server received. Deliveries that go through it
carry customers' addresses and merged fields, so reading it needs Customers: read as well as
Mails (``okuru.accounts.access``)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from okuru.accounts.access import CUSTOMER_DATA_RIGHT, require_right
from okuru.capture.models import CapturedMessage, body_parts
from okuru.lib import signing
from okuru.tracking import recording

PAGE_SIZE = 50

# Okuru's own tracking URLs in a captured message, on whatever host sent it: /t/o/… (pixel),
# /t/c/… (click), /t/u/… (unsubscribe), /t/v/… (view in browser).
TRACKING_URL = re.compile(r"""https?://[^/"'\s<>]+/t/([ocuv])/([^"'\s<>]+)""")


def _untracked(html: str) -> str:
    """``html`` with its tracking URLs taken out: an operator looking at a captured message is
    not the customer opening it, and an open or click recorded here would change who the
    history filters and customer sets select. Pixels load nothing; tracked links point at their
    destination; unsubscribe and view links go nowhere."""

    def replace(match: re.Match) -> str:
        kind, token = match.group(1), match.group(2)
        if kind == "c":
            try:
                t = signing.read_token("click", token)
            except signing.BadToken:
                return "#"
            return recording.find_click(t.recipient_id, t.link_id or 0) or "#"
        return "data:," if kind == "o" else "#"

    return TRACKING_URL.sub(replace, html)


def _get_message(message_id: int) -> CapturedMessage:
    message = CapturedMessage.objects.filter(pk=message_id).first()
    if message is None:
        raise Http404
    return message


@require_right("mails", CUSTOMER_DATA_RIGHT)
def message_list(request: HttpRequest) -> HttpResponse:
    # The raw bytes can be megabytes each: the list never loads them.
    messages = CapturedMessage.objects.defer("raw")
    page = Paginator(messages, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "capture/list.html", {"page": page, "port": settings.CAPTURE_SMTP_PORT})


@require_right("mails", CUSTOMER_DATA_RIGHT)
def message_detail(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _get_message(message_id)
    parsed = message.parsed()
    text, html = body_parts(parsed)
    ctx = {
        "message": message,
        "headers": [(name, str(value)) for name, value in parsed.items()],
        "text": text,
        "html": _untracked(html) if html else html,
    }
    return render(request, "capture/detail.html", ctx)


@require_right("mails", CUSTOMER_DATA_RIGHT)
def message_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _get_message(message_id)
    response = HttpResponse(bytes(message.raw), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="captured-{message.pk}.eml"'
    return response
