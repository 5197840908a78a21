"""Every HTML response of the app carries the Content-Security-Policy: found by walking every
link reachable from the home page as an owner (with a customer, mails, a delivery, a captured
message and jobs to link to), plus the pages that no link leads to."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urldefrag, urlsplit

from django.conf import settings
from django.test import Client
from django.utils.csp import build_policy

from okuru.accounts.models import Job
from okuru.capture.models import CapturedMessage
from okuru.lib.mailframe import MAIL_FRAME_CSP
from okuru.mailings import testing
from tests.capture.test_capture_box import make_mail as make_captured

HREF = re.compile(r'(?:href|src)="(/[^"]*)"')
# Links that act or download rather than show a page.
SKIP = re.compile(r"^/(static/|t/|api/(?!docs)|accounts/logout/)|/(raw|download|export)/")
MAIL_FRAME = re.compile(r"[?&]part=html|^/capture/\d+/html/")
STRICT = build_policy(settings.SECURE_CSP)


def test_the_policy_is_the_strict_one():
    assert STRICT == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def seed(owner) -> None:
    testing.make_customers(3, domain="csp.example")
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        testing.start(testing.make_mail(name="Delivered", html_body='<p style="x">Hi</p>'))
    testing.make_mail(name="Draft")
    raw = make_captured("Captured", html="<p style='color:red'>Hi</p>").as_bytes()
    CapturedMessage.capture("a@example.com", ["b@example.com"], raw)
    Job.objects.create(kind="import", operator=owner, status=Job.Status.RUNNING)


def html_pages(client: Client, start: list[str], limit: int = 400) -> dict[str, object]:
    """GET every same-site link reachable from ``start``; the HTML responses by path."""
    seen, queue, pages = set(start), deque(start), {}
    while queue and len(pages) < limit:
        path = queue.popleft()
        r = client.get(path)
        if not r.get("Content-Type", "").startswith("text/html"):
            continue
        pages[path] = r
        for link in HREF.findall(r.content.decode().replace("&amp;", "&")):
            link = urldefrag(link)[0]
            if link and link not in seen and not SKIP.search(urlsplit(link).path):
                seen.add(link)
                queue.append(link)
    return pages


def assert_policies(pages: dict) -> None:
    for path, r in pages.items():
        expected = MAIL_FRAME_CSP if MAIL_FRAME.search(path) else STRICT
        assert r.get("Content-Security-Policy") == expected, path


def test_every_page_an_owner_reaches_carries_the_policy(owner, owner_client):
    seed(owner)
    pages = html_pages(owner_client, ["/"])
    assert len(pages) > 40
    # The walk reached the kinds of pages that differ most.
    for reached in ("/mails/", "/capture/", "/accounts/jobs/", "/accounts/operators/"):
        assert reached in pages
    assert any(MAIL_FRAME.search(p) for p in pages)
    assert any(re.match(r"^/mails/deliveries/\d+/$", p) for p in pages)
    assert_policies(pages)


def test_pages_without_a_link_to_them_carry_the_policy(member, outsider_client):
    anonymous = Client()
    pages = {
        "/accounts/login/": anonymous.get("/accounts/login/"),
        "/no/such/page/": anonymous.get("/no/such/page/"),
        "/t/u/not-a-token": anonymous.get("/t/u/not-a-token"),
        "/api/docs": anonymous.get("/api/docs"),
        "/accounts/operators/": outsider_client.get("/accounts/operators/"),
        "/accounts/login/ (refused)": anonymous.post(
            "/accounts/login/", {"username": "member", "password": "not it"}
        ),
    }
    assert pages["/no/such/page/"].status_code == 404
    assert pages["/accounts/operators/"].status_code == 403
    assert pages["/api/docs"].status_code == 200
    assert_policies(pages)
