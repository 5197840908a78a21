"""The application's own error pages, in the visitor's language."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("language", "words"),
    [("ja", "ページが見つかりません"), ("en", "Page not found")],
)
def test_a_missing_page_answers_in_the_visitors_language(settings, language, words):
    settings.DEBUG = False
    r = Client(headers={"accept-language": language}).get("/no/such/page/")
    assert r.status_code == 404
    body = r.content.decode()
    assert words in body and f'<html lang="{language}">' in body


@pytest.mark.parametrize(("language", "words"), [("ja", "サーバーエラー"), ("en", "Server error")])
def test_a_failing_page_answers_with_its_own_500_page(settings, language, words):
    settings.DEBUG = False
    settings.ROOT_URLCONF = "tests.error_urls"
    client = Client(headers={"accept-language": language}, raise_request_exception=False)
    r = client.get("/fail/")
    assert r.status_code == 500
    body = r.content.decode()
    assert words in body and "a bug" not in body and "Traceback" not in body
