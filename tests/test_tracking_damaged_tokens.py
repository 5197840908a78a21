"""Tracking URLs whose token was damaged on the way: the pixel still answers with the image,
the other endpoints with their "link not valid" page — never Django's 404 or a server error."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.lib import signing
from okuru.tracking.views import GIF

pytestmark = pytest.mark.django_db

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def damaged(token: str, cut: int, insert: str) -> str:
    cut = cut % (len(token) + 1)
    return token[:cut] + insert + token[cut:]


tokens = st.builds(
    damaged,
    st.builds(
        lambda r, link: signing.make_token("click", r, link),
        st.integers(1, 10**6),
        st.integers(1, 99),
    ),
    st.integers(0, 200),
    st.text(alphabet=st.sampled_from("/?#%&=;:.@+ \\\x00\t\nあ%2F..~"), max_size=8),
)


def client() -> Client:
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("token", ["a/b", "abc/../def", "/", "x//y", "", "%2F", "a?b=c", "a#b"])
def test_the_pixel_answers_with_the_image_for_any_token(token):
    for path in (f"/t/o/{quote(token, safe='/')}.gif", f"/t/o/{quote(token, safe='/')}"):
        response = client().get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"] == "image/gif"
        assert response.content == GIF


@SETTINGS
@given(token=tokens)
def test_generated_damaged_tokens_get_the_pixel_or_the_invalid_page(token):
    path = quote(token, safe="/")
    pixel = client().get(f"/t/o/{path}.gif")
    assert (pixel.status_code, pixel.content) == (200, GIF)
    for kind in ("c", "u", "v"):
        response = client().get(f"/t/{kind}/{path}")
        assert response.status_code == 404, (kind, token)
        assert b"not valid" in response.content or b"\xe7\x84\xa1\xe5\x8a\xb9" in response.content


def test_a_click_with_a_slash_in_its_token_gets_the_invalid_page():
    token = signing.make_token("click", 5, 1)
    response = client().get(f"/t/c/{token[:5]}/{token[5:]}")
    assert response.status_code == 404
    assert b"not valid" in response.content
