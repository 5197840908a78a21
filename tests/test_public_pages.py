"""Pages that anyone may see (recipients, visitors before login) never show template syntax:
a comment that Django's one-line ``{# #}`` did not close, a tag or a variable that did not
render. Every recipient who unsubscribes sees these pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from okuru.mailings.models import Recipient
from okuru.tracking.testing import sent_delivery, urls_for

pytestmark = pytest.mark.django_db

TEMPLATE_SYNTAX = re.compile(r"\{#|#\}|\{%|%\}|\{\{|\}\}")


def assert_clean(response) -> None:
    body = response.content.decode()
    found = TEMPLATE_SYNTAX.search(body)
    assert found is None, (
        f"template syntax in the page: {body[max(0, found.start() - 80) :][:200]!r}"
    )


@pytest.fixture
def row():
    d = sent_delivery(1)
    return Recipient.objects.get(delivery=d)


@pytest.mark.parametrize("language", ["en", "ja"])
def test_public_pages_show_no_template_syntax(row, language):
    client = Client(headers={"accept-language": language})
    urls = urls_for(row)
    pages = [
        client.get("/accounts/login/"),
        client.get(urls["unsubscribe"]),
        client.get(urls["view"]),
        client.get("/t/u/not-a-token"),
        client.get("/t/v/not-a-token"),
        client.get("/no-such-page/"),
    ]
    # The confirmation page after a choice is public too.
    pages.append(client.post(urls["unsubscribe"], {"refuse": "1"}))
    for page in pages:
        assert page.status_code in (200, 404), page.status_code
        assert_clean(page)


def test_no_template_has_a_comment_over_several_lines():
    # Django's {# #} ends at the line's end: a longer one is printed as text. Use
    # {% comment %} for those.
    roots = [Path(settings.BASE_DIR) / "okuru"]
    bad = []
    for root in roots:
        for path in root.rglob("*.html"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for opened in re.finditer(r"\{#", line):
                    if "#}" not in line[opened.end() :]:
                        bad.append(f"{path.relative_to(settings.BASE_DIR)}:{number}")
    assert bad == []
