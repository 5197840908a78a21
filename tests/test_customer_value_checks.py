"""The customer form and the REST API refuse the values import refuses, naming the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts.models import ApiToken
from okuru.customers import design
from okuru.customers.models import Customer
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

BAD = st.one_of(
    st.tuples(st.just("age"), st.sampled_from(["1" * 400, "1e999", "NaN", "0.12345678901234567"])),
    st.tuples(st.just("age"), st.sampled_from([1e300 * 10, 10**400])),
    st.tuples(
        st.just("seen"),
        st.sampled_from(
            ["0001-01-01 00:00:00", "9999-12-31T23:59:59-09:00", "9999-12-31 12:00:00"]
        ),
    ),
    st.tuples(st.just("note"), st.sampled_from(["a\x00b", "a\x01b", "a\ud800b", "x" * 10_001])),
    st.tuples(
        st.just("email"),
        st.sampled_from(["ｔｅｓｔ＠example.com", "a@b", "a b@example.com", "a@example.com."]),
    ),
    st.tuples(
        st.just("email_error_count"), st.sampled_from(["-1", -1, 1.5, "2147483648", "1" * 400])
    ),
)


@pytest.fixture
def fields(db):
    design.add_field("note", "Note", "text")
    design.add_field("age", "Age", "number")
    design.add_field("seen", "Seen", "datetime")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=BAD)
def test_the_api_answers_400_naming_the_field(member, fields, bad):
    key, value = bad
    _token, secret = ApiToken.issue(member, "tests")
    client = client_for(member)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    body = json.dumps({key: value}, allow_nan=True)
    r = client.post("/api/customers", body, content_type="application/json")
    assert r.status_code == 400, r.content
    detail = r.json()["detail"]
    assert detail.startswith(f"{key}: ") or key in detail, detail
    assert "\x00" not in detail
    assert not Customer.objects.exists()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=BAD.filter(lambda b: isinstance(b[1], str) and "\ud800" not in b[1]))
def test_the_form_shows_the_error_on_the_field(member, fields, bad):
    key, value = bad
    r = client_for(member).post("/customers/new/", {key: value})
    assert r.status_code == 200
    assert list(r.context["form"].errors) == [key]
    assert not Customer.objects.exists()


def test_the_api_refuses_a_lone_surrogate_by_name(member, fields):
    _token, secret = ApiToken.issue(member, "tests")
    client = client_for(member)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    r = client.post("/api/customers", '{"note": "a\\ud800"}', content_type="application/json")
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "note: contains the character U+D800 at position 2: control characters (other than tab"
        " and line breaks) and lone surrogates cannot be stored"
    )
