from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from okuru.accounts.access import require_right
from okuru.capture.models import CapturedMessage, body_parts
from okuru.lib import mailframe

PAGE_SIZE = 50


def _get_message(message_id: int) -> CapturedMessage:
    message = CapturedMessage.objects.filter(pk=message_id).first()
    if message is None:
        raise Http404
    return message


@require_right("mails")
def message_list(request: HttpRequest) -> HttpResponse:
    # The raw bytes can be megabytes each: the list never loads them.
    messages = CapturedMessage.objects.defer("raw")
    page = Paginator(messages, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "capture/list.html", {"page": page, "port": settings.CAPTURE_SMTP_PORT})


@require_right("mails")
def message_detail(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _get_message(message_id)
    parsed = message.parsed()
    text, html = body_parts(parsed)
    ctx = {
        "message": message,
        "headers": [(name, str(value)) for name, value in parsed.items()],
        "text": text,
        "html": html,
    }
    return render(request, "capture/detail.html", ctx)


@require_right("mails")
def message_html(request: HttpRequest, message_id: int) -> HttpResponse:
    """The HTML part alone, for the detail page's sandboxed frame."""
    _text, html = body_parts(_get_message(message_id).parsed())
    if not html:
        raise Http404
    return mailframe.mail_frame(html)


@require_right("mails")
def message_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _get_message(message_id)
    response = HttpResponse(bytes(message.raw), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="captured-{message.pk}.eml"'
    return response
