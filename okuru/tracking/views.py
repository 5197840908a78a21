"""The public tracking endpoints that sent mail points at (token format: ``okuru.lib.signing``).

* ``/t/o/<token>.gif`` — open pixel. Always answers the 1×1 GIF: a bad token or a failed
  recording is logged, never shown (a broken image in a customer's inbox helps nobody).
* ``/t/c/<token>`` — click redirect. Redirects only to the ``TrackedLink`` named in the token,
  and only when that link belongs to the mail the token's recipient was sent; nothing from the
  query string is ever used. A bad token or a foreign link gets a 404 page, no redirect.
* ``/t/u/<token>`` — unsubscribe. GET shows the choice and changes nothing; the form POSTs back
  with CSRF protection; an RFC 8058 one-click POST (``List-Unsubscribe=One-Click``, sent by the
  mail provider without cookies) needs neither CSRF nor a login.
* ``/t/v/<token>`` — the mail as the recipient got it, in the browser, under a CSP sandbox.

They touch no session and no user: nothing here reads ``request.user``. The open pixel and a
valid click are answered by ``okuru.tracking.middleware`` before the rest of the middleware
runs; the views below answer them when that middleware is not installed, and answer every other
case (a bad click token gets its 404 page in the visitor's language).

Opens and clicks are only noted here (one INSERT into the inbox); ``recording.drain`` applies
them to the counters and events a moment later.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, Topic
from okuru.lib import signing
from okuru.mailings.models import Delivery, Recipient
from okuru.tracking import recording
from okuru.tracking.recording import Target

log = logging.getLogger(__name__)

# The smallest transparent GIF (43 bytes).
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = "no-store, no-cache, must-revalidate, private"
# Whitespace, control characters and backslashes have no place in a URL we redirect to: they are
# how header injection (CR/LF) and browser-specific parsing tricks (/\evil.example) work.
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# The view-in-browser page shows HTML the operators wrote: no script, an opaque origin (so it
# cannot read Okuru's cookies or pages), images and styles from anywhere.
VIEW_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline' http: https:; "
    "font-src http: https: data:"
)


def is_safe_target(url: str) -> bool:
    """An absolute http(s) URL with a host and no user-info, whitespace or backslash."""
    if not isinstance(url, str) or _UNSAFE_URL_CHARS.search(url):
        return False
    if not url.lower().startswith(("http://", "https://")):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.hostname) and "@" not in parts.netloc


def _private(response: HttpResponse) -> HttpResponse:
    # Tokens are in the URL: keep them out of caches and out of other sites' Referer headers.
    # Not "no-referrer": with it browsers send "Origin: null" on the unsubscribe form's POST,
    # which Django's CSRF origin check refuses.
    response["Cache-Control"] = NO_STORE
    response["Referrer-Policy"] = "same-origin"
    return response


def _invalid(request: HttpRequest) -> HttpResponse:
    return _private(render(request, "tracking/invalid.html", status=404))


# ---------------------------------------------------------------------------------------------
# Open and click


def pixel() -> HttpResponse:
    return _private(HttpResponse(GIF, content_type="image/gif"))


def note_open(token: str) -> None:
    """Note the open a pixel token names; a bad token or a failed write is logged, never
    raised: the pixel answers whatever happens."""
    try:
        recording.note_open(signing.read_token("open", token).recipient_id)
    except signing.BadToken:
        log.info("open pixel with a bad token")
    except Exception:
        log.exception("could not record an open")


def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    note_open(token)
    return pixel()


def click_target(token: str) -> tuple[signing.Token, str] | None:
    """The token and the URL a click token redirects to; None for a bad token, a link that is
    not in the recipient's mail, or a URL unsafe to redirect to."""
    try:
        t = signing.read_token("click", token)
    except signing.BadToken:
        return None
    url = recording.find_click(t.recipient_id, t.link_id or 0)
    if url is None or not is_safe_target(url):
        return None
    return t, url


def redirect_click(request: HttpRequest, t: signing.Token, url: str) -> HttpResponse:
    if request.method == "GET":  # HEAD: link checkers, not people
        try:
            recording.note_click(t.recipient_id, t.link_id or 0)
        except Exception:
            log.exception("could not record a click")
    return _private(HttpResponseRedirect(url))


def click(request: HttpRequest, token: str) -> HttpResponse:
    target = click_target(token)
    if target is None:
        return _invalid(request)
    return redirect_click(request, *target)


# ---------------------------------------------------------------------------------------------
# Unsubscribe


def _target(kind: str, token: str) -> Target | None:
    try:
        t = signing.read_token(kind, token)
    except signing.BadToken:
        return None
    return recording.find_recipient(t.recipient_id)


@csrf_exempt  # only for the RFC 8058 one-click POST; the form POST is checked below
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    target = _target("unsubscribe", token)
    if target is None:
        return _invalid(request)
    if request.method == "POST":
        if request.POST.get("List-Unsubscribe") == "One-Click":
            return _one_click(request, target)
        return _unsubscribe_form(request, target)
    return _unsubscribe_page(request, target)


def _one_click(request: HttpRequest, target: Target) -> HttpResponse:
    """RFC 8058: unsubscribe from the mail's newsletter topic, or refuse all mail when the mail
    was sent under no topic (there is nothing narrower to leave)."""
    topic = recording.mail_topic(target.delivery_id)
    if topic:
        recording.unsubscribe(target, [topic], one_click=True)
    else:
        recording.refuse_all(target, one_click=True)
    return _private(HttpResponse(_("You have been unsubscribed."), content_type="text/plain"))


def _masked(address: str) -> str:
    local, _at, domain = address.partition("@")
    return f"{local[:2]}***@{domain}" if domain else "***"


def _page_context(target: Target) -> dict[str, Any]:
    customer = (
        Customer.objects.filter(pk=target.customer_id).only("unsubscribed", "refused").first()
    )
    address = Recipient.objects.filter(pk=target.recipient_id).values_list("address", flat=True)
    mail_topic = recording.mail_topic(target.delivery_id)
    done = set(customer.unsubscribed or []) if customer else set()
    topics = [
        {
            "key": t.key,
            "name": t.name,
            "done": t.key in done,
            "checked": t.key in done or t.key == mail_topic,
        }
        for t in Topic.objects.order_by("name", "id")
    ]
    return {
        "customer": customer,
        "address": _masked(address.first() or ""),
        "topics": topics,
        "refused": bool(customer and customer.refused),
    }


def _unsubscribe_page(
    request: HttpRequest, target: Target, error: str = "", status: int = 200
) -> HttpResponse:
    ctx = _page_context(target)
    ctx["error"] = error
    return _private(render(request, "tracking/unsubscribe.html", ctx, status=status))


@csrf_protect
def _unsubscribe_form(request: HttpRequest, target: Target) -> HttpResponse:
    known = set(Topic.objects.values_list("key", flat=True))
    topics = [k for k in request.POST.getlist("topics") if k in known]
    refuse = request.POST.get("refuse") == "1"
    if not topics and not refuse:
        return _unsubscribe_page(
            request,
            target,
            _("Choose at least one newsletter to stop, or refuse all mail."),
            status=400,
        )
    if not Customer.objects.filter(pk=target.customer_id).exists():
        return _unsubscribe_page(request, target)  # the page says the address is gone
    added = recording.unsubscribe(target, topics) if topics else []
    if refuse:
        recording.refuse_all(target)
    names = dict(Topic.objects.filter(key__in=topics).values_list("key", "name"))
    ctx = {"refused": refuse, "topics": [names[k] for k in topics if k in names], "added": added}
    return _private(render(request, "tracking/unsubscribed.html", ctx))


# ---------------------------------------------------------------------------------------------
# View in browser


def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    from okuru.mailings.rendering import CompiledMail
    from okuru.mailings.sending import CUSTOMER_COLUMNS

    target = _target("view", token)
    if target is None:
        return _invalid(request)
    content = Delivery.objects.filter(pk=target.delivery_id).values_list("content", flat=True)
    customer = Customer.objects.filter(pk=target.customer_id).values(*CUSTOMER_COLUMNS).first()
    if customer is None or not content:
        return _invalid(request)
    try:
        rendered = CompiledMail(content[0], catalogue()).render(target.recipient_id, customer)
    except Exception:
        log.exception("could not render delivery %s for the browser", target.delivery_id)
        return _invalid(request)
    if rendered.html is not None:
        body = rendered.html
    else:
        body = (
            '<!doctype html><meta charset="utf-8"><title>'
            + escape(rendered.subject)
            + '</title><pre style="white-space:pre-wrap;font:inherit">'
            + escape(rendered.text or "")
            + "</pre>"
        )
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = VIEW_CSP
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response)
