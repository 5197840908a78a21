"""``actions.build_mail``: a new mail from a dict of values, for the REST API and
``okuru mails create`` alike."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.mailings import actions, testing
from okuru.mailings.models import Mail
from okuru.mailings.serializers import mail_json
from tests.api.client import api_client
from tests.conftest import make_operator

pytestmark = pytest.mark.django_db

GOOD = {"name": "Spring", "from_address": "news@shop.example", "subject": "Hi", "text_body": "t"}
KINDS = {
    "name": "str",
    "from_address": "str",
    "subject": "str",
    "from_name": "str",
    "duplicate_rule": "str",
    "topic": "str",
    "error_threshold": "int",
    "relay_id": "int",
    "view_id": "int",
    "recipient_list_id": "int",
    "open_tracking": "bool",
    "click_tracking": "bool",
    "filter": "dict",
    "customer_set": "dict",
}
JSON_VALUES = {
    "str": st.text(max_size=5),
    "int": st.integers(min_value=0, max_value=10**6),
    "bool": st.booleans(),
    "dict": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "list": st.lists(st.integers(), max_size=2),
}


def wrong_values(key: str):
    return st.one_of(*(s for kind, s in JSON_VALUES.items() if kind != KINDS[key]))


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_it_names_the_field_of_a_value_of_the_wrong_type(data):
    key = data.draw(st.sampled_from(sorted(KINDS)))
    value = data.draw(wrong_values(key))
    with pytest.raises(ValidationError) as e:
        actions.build_mail({**GOOD, key: value}, None)
    assert list(e.value.message_dict) == [key]
    assert not Mail.objects.exists()


@pytest.mark.parametrize("missing", ["name", "from_address", "subject"])
def test_it_requires_name_sender_and_subject(missing):
    values = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValidationError) as e:
        actions.build_mail(values, None)
    assert e.value.message_dict == {missing: ["This field is required."]}


def test_it_takes_the_model_defaults_and_ignores_unknown_keys():
    mail = actions.build_mail({**GOOD, "id": 7, "locked": True, "links": []}, None)
    assert mail.pk is None
    assert (mail.kind, mail.error_threshold, mail.duplicate_rule, mail.open_tracking) == (
        "basic",
        5,
        "ignore",
        True,
    )
    assert (mail.filter, mail.customer_set) == ({}, {})


def test_the_cli_refuses_a_value_of_the_wrong_type_by_field(tmp_path):
    path = tmp_path / "mail.json"
    path.write_text(json.dumps({**GOOD, "subject": ["Hi"], "error_threshold": "5"}))
    with pytest.raises(CommandError) as e:
        run("mails", "create", str(path))
    assert str(e.value) == (
        "Invalid mail: subject: Must be a string.; error_threshold: Must be a whole number."
    )
    path.write_text(json.dumps([GOOD]))
    with pytest.raises(CommandError, match="must hold one JSON object"):
        run("mails", "create", str(path))
    assert not Mail.objects.exists()


def test_the_cli_and_the_api_make_the_same_mail(tmp_path):
    testing.make_customers(1)
    values = {**GOOD, "filter": None, "click_tracking": False, "error_threshold": 3}
    path = tmp_path / "mail.json"
    path.write_text(json.dumps(values))
    run("mails", "create", str(path))
    api = api_client(make_operator("api", ["mails"]))
    made = api.post("/api/mails", values, content_type="application/json")
    assert made.status_code == 201, made.json()
    by_cli, by_api = (mail_json(m) for m in Mail.objects.order_by("id"))
    differ = {"id", "created", "updated"}
    assert {k: v for k, v in by_cli.items() if k not in differ} == {
        k: v for k, v in by_api.items() if k not in differ
    }
