"""The mail form reports every problem of a submit at once, each next to its field."""

from __future__ import annotations

from itertools import combinations

import pytest

from okuru.mailings import actions, testing
from okuru.mailings.models import Mail
from tests.mailings.test_mail_views import mail_data

pytestmark = pytest.mark.django_db

# field -> (posted value, the message shown next to the field)
PROBLEMS = {
    "from_address": ("news at shop", "Not a valid e-mail address: news at shop"),
    "reply_to": ("help@", "Not a valid e-mail address: help@"),
    "return_path_domain": ("bad_domain", "Not a valid domain: bad_domain"),
    "subject": (
        "Hello {{ nickname }} {{ alias }}",
        "Unknown merge field in subject: alias, nickname",
    ),
    "text_body": ("Hi {{ email", "Template error in text body at line 1"),
    "html_body": ("<p>{{ email.__class__ }}</p>", "may use merge fields and filters only"),
}
# Problems the form itself finds first: the others must still be reported alongside.
FORM_PROBLEMS = {
    "name": ("", "This field is required."),
    "error_threshold": ("many", "Enter a whole number."),
}


@pytest.fixture(autouse=True)
def relay():
    return testing.make_relay(testing.free_port())


def post(client, problems: dict) -> dict[str, list[str]]:
    r = client.post("/mails/new/", mail_data(**{k: v for k, (v, _m) in problems.items()}))
    assert r.status_code == 400
    assert not Mail.objects.exists()
    return r.context["form"].errors


@pytest.mark.parametrize("size", [2, 3, len(PROBLEMS)])
def test_it_reports_every_problem_next_to_its_field(member_client, size):
    for chosen in combinations(PROBLEMS, size):
        problems = {k: PROBLEMS[k] for k in chosen}
        errors = post(member_client, problems)
        assert set(errors) == set(chosen), chosen
        for field, (_value, message) in problems.items():
            assert any(message in e for e in errors[field]), (field, errors[field])


@pytest.mark.parametrize("form_problem", FORM_PROBLEMS)
def test_a_form_error_does_not_hide_the_sender_and_template_errors(member_client, form_problem):
    problems = {form_problem: FORM_PROBLEMS[form_problem], **PROBLEMS}
    errors = post(member_client, problems)
    assert set(errors) == set(problems)
    for field, (_value, message) in problems.items():
        assert any(message in e for e in errors[field]), (field, errors[field])


def test_the_page_shows_each_message_in_its_field_row(member_client):
    r = member_client.post(
        "/mails/new/",
        mail_data(from_address="x", subject="{{ nickname }}", text_body="{% if %}"),
    )
    body = r.content.decode()
    for field, message in [
        ("from_address", "Not a valid e-mail address: x"),
        ("subject", "Unknown merge field in subject: nickname"),
        ("text_body", "Template error in text body"),
    ]:
        start = body.index(f'id="id_{field}"')
        end = body.find('<div class="row', start)
        assert message in body[start:end], field


def test_save_mail_raises_every_problem_with_the_targeting_one(db):
    mail = Mail(
        name="x",
        kind="basic",
        from_address="bad",
        subject="{{ nope }}",
        text_body="hi",
        filter={"match": "all", "conditions": [{"field": "gone", "op": "has_value"}]},
    )
    with pytest.raises(actions.ValidationError) as info:
        actions.save_mail(mail, None)
    assert set(info.value.message_dict) == {"from_address", "subject", "filter"}
