"""No request body makes the mail and customer endpoints, or the mail form, answer 500: every
input error is a 400 (API) or a form error (UI). Bodies are generated: random JSON shapes,
wrong types, huge numbers, unknown ids, hostile strings and template sources."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.customers.models import Customer, Field
from okuru.mailings.models import Relay
from okuru.mailings.testing import free_port, make_mail, make_relay
from tests.api.client import api_client

pytestmark = pytest.mark.django_db

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "a\x00b",
            "\ud800",
            "news@shop.example\n",
            "news@shop.example\r\nBcc: x@evil.example",
            "x" * 300,
            "x" * 5000,
            "bounce.example\n",
            "全角＠例え.jp",
            "{{ customer_id }}",
        ]
    ),
)
template = st.one_of(
    hostile_text,
    st.sampled_from(
        [
            "{{ x is callable }}",
            "{{ 1 is sameas 1 }}",
            "{{ 4 is divisibleby 2 }}",
            "{{ {} is mapping }}",
            "{{ " + "(" * 150 + "1" + ")" * 150 + " }}",
            "{% if 1 %}" * 1000 + "{% endif %}" * 1000,
            "{% for a in 'ab' %}" * 30 + "{% endfor %}" * 30,
            "{{ ((((9**64)**64)**64)**64) > 1 }}",
            "{{ 'x'|center(1000000000) }}",
            "{{ 1/0 }}",
            "{{ email.__class__ }}",
            "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
            "{{ range(10**8)|list }}",
            "{% for i in 'x'*9999 %}{% for j in 'x'*9999 %}{% endfor %}{% endfor %}",
            "{{ unclosed",
            "{% endfor %}",
        ]
    ),
)
number = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**200),
    st.integers(max_value=-1),
    st.floats(allow_nan=False),
)
json_value = st.recursive(
    st.none() | st.booleans() | number | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
filter_tree = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {
            "match": st.sampled_from(["all", "any", "x"]),
            "conditions": st.lists(json_value, max_size=3),
        }
    ),
    st.just({"kind": "delivery_history", "delivery": 2**70, "event": "opened"}),
)
MAIL_KEYS = {
    "name": hostile_text,
    "kind": st.one_of(st.sampled_from(["basic", "spot", "step"]), hostile_text),
    "from_address": st.one_of(st.just("news@shop.example"), hostile_text),
    "from_name": hostile_text,
    "reply_to": hostile_text,
    "return_path_domain": hostile_text,
    "error_threshold": number,
    "duplicate_rule": st.one_of(st.sampled_from(["ignore", "newest"]), hostile_text),
    "address_field": st.one_of(st.sampled_from(["email", "mobile_email"]), hostile_text),
    "open_tracking": st.booleans(),
    "topic": hostile_text,
    "subject": template,
    "text_body": template,
    "html_body": template,
    "filter": filter_tree,
    "customer_set": filter_tree,
    "view_id": number,
    "recipient_list_id": number,
    "relay_id": number,
}
BASE = {"name": "m", "from_address": "news@shop.example", "subject": "Hi"}
mail_body = st.one_of(
    st.fixed_dictionaries({}, optional=MAIL_KEYS).map(lambda extra: BASE | extra),
    st.dictionaries(st.sampled_from(sorted(MAIL_KEYS)), json_value, max_size=6),
    json_value,
)
customer_body = st.one_of(
    st.dictionaries(
        st.sampled_from(["email", "mobile_email", "refused", "name", "points", "born", "x"]),
        json_value,
        max_size=5,
    ),
    json_value,
)


@pytest.fixture
def api(member) -> Client:
    return api_client(member, raise_request_exception=False)


@pytest.fixture
def fields(db):
    Field.objects.get_or_create(key="name", label="Name", type="text")
    Field.objects.get_or_create(key="points", label="Points", type="number")
    Field.objects.get_or_create(key="born", label="Born", type="date")
    if not Relay.objects.exists():
        make_relay(free_port())


def assert_not_500(response, body) -> None:
    assert response.status_code < 500, (response.status_code, body, response.content[:500])
    if response.status_code >= 400:
        assert response.json()["detail"]


@SETTINGS
@given(body=mail_body)
def test_creating_a_mail_never_answers_500(api, fields, body):
    assert_not_500(api.post("/api/mails", json.dumps(body), content_type="application/json"), body)


@SETTINGS
@given(body=mail_body)
def test_changing_a_mail_never_answers_500(api, fields, body):
    mail = make_mail()
    assert_not_500(
        api.patch(f"/api/mails/{mail.pk}", json.dumps(body), content_type="application/json"), body
    )


@SETTINGS
@given(at=st.one_of(json_value, st.datetimes().map(lambda d: d.isoformat() + "+09:00")))
def test_sending_a_mail_never_answers_500(api, fields, at):
    mail = make_mail()
    body = {"at": at}
    assert_not_500(
        api.post(f"/api/mails/{mail.pk}/send", json.dumps(body), content_type="application/json"),
        body,
    )


@SETTINGS
@given(body=customer_body)
def test_creating_and_changing_a_customer_never_answers_500(api, fields, body):
    assert_not_500(
        api.post("/api/customers", json.dumps(body), content_type="application/json"), body
    )
    customer = (
        Customer.objects.create(email="c@example.com")
        if not Customer.objects.exists()
        else Customer.objects.first()
    )
    assert_not_500(
        api.patch(
            f"/api/customers/{customer.pk}", json.dumps(body), content_type="application/json"
        ),
        body,
    )


FORM_KEYS = {k: v for k, v in MAIL_KEYS.items() if k not in ("filter", "customer_set")}


@SETTINGS
@given(
    values=st.fixed_dictionaries({}, optional={**FORM_KEYS, "filter": json_value.map(str)}).map(
        lambda extra: BASE | extra
    )
)
def test_the_mail_form_never_answers_500(member, fields, values):
    client = Client(raise_request_exception=False)
    client.force_login(member)
    data = {k: ("" if v is None else v) for k, v in values.items()}
    # A browser sends UTF-8: a lone surrogate cannot be in a form post.
    data = {k: str(v).encode("utf-8", "replace").decode() for k, v in data.items()}
    response = client.post("/mails/new/", data)
    # A refused form is the page again with its errors (400), a saved one a redirect.
    assert response.status_code in (302, 400), (response.status_code, data)
    if response.status_code == 400:
        assert b"errorlist" in response.content or b"error" in response.content


def test_the_reported_cases_are_400_naming_the_field(api, fields):
    base = {"name": "m", "from_address": "news@shop.example", "subject": "Hi", "text_body": "x"}
    cases = {
        "recipient_list_id": (
            {"kind": "spot", "recipient_list_id": 999},
            "No recipient list with id 999.",
        ),
        "error_threshold": (
            {"error_threshold": -1},
            "error count threshold: Ensure this value is greater than or equal to 0.",
        ),
        "from_address": (
            {"from_address": "news@shop.example\n"},
            "Not a valid e-mail address: news@shop.example\n",
        ),
        "return_path_domain": (
            {"return_path_domain": "bounce.example\n"},
            "Not a valid domain: bounce.example\n",
        ),
        "subject": (
            {"subject": "Hi\n"},
            "The subject must be one line: it cannot contain a line break.",
        ),
        "from_name": (
            {"from_name": "Shop\r\nBcc: x"},
            "The from name must be one line: it cannot contain a line break.",
        ),
        "text_body": (
            {"text_body": "a\x00b"},
            "The text body contains a character that cannot be stored (NUL or an unpaired surrogate).",
        ),
    }
    for key, (change, message) in cases.items():
        r = api.post("/api/mails", {**base, **change}, content_type="application/json")
        assert r.status_code == 400, (key, r.content)
        assert r.json()["errors"][key] == [message], key


def test_the_api_refuses_a_reservation_in_the_past_as_the_ui_does(api, member_client, fields):
    mail = make_mail()
    past = timezone.localtime() - timedelta(minutes=5)
    r = api.post(
        f"/api/mails/{mail.pk}/send", {"at": past.isoformat()}, content_type="application/json"
    )
    assert r.status_code == 400
    assert r.json() == {
        "detail": "Choose a time in the future for a reservation.",
        "errors": {"at": ["Choose a time in the future for a reservation."]},
    }
    assert not mail.deliveries.exists()
    r = member_client.post(
        f"/mails/{mail.pk}/send/",
        {"action": "reserve", "when": past.strftime("%Y-%m-%dT%H:%M")},
        follow=True,
    )
    assert "Choose a time in the future for a reservation." in r.content.decode()
    assert not mail.deliveries.exists()
