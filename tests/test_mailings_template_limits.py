"""What a template may cost: compute bombs, loops, memory, nesting — refused at save with the
part named, and a recipient whose data takes a template over budget fails alone at send time."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts.models import ApiToken
from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, Field
from okuru.mailings import actions, rendering, sending
from okuru.mailings.models import Mail, Recipient
from okuru.mailings.testing import Sink, drain, make_mail, make_relay, start

pytestmark = pytest.mark.django_db

# Each a template that would hold a worker for seconds or eat its memory without the limits.
BOMBS = [
    "{{ ((((9**64)**64)**64)**64) > 1 }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'ab'|wordwrap(1000000000) }}",
    "{{ ('x'*9000)|wordwrap(1, wrapstring='y'*9000) }}",
    "{{ 'x'|truncate(10**12) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '%*d'|format(999999999, 1) }}",
    "{{ '%0999999999d' % 1 }}",
    "{% for i in 'x'*9999 %}{% for j in 'x'*9999 %}{% endfor %}{% endfor %}",
    "{% set a = 10**60 %}{% set a = a*a %}{% set a = a*a %}{% set a = a*a %}{{ a*a }}",
    "{% set s = 'x'*9999 %}{% set s = s~s~s~s~s~s~s~s~s~s %}{% set s = s~s~s~s~s~s~s~s~s~s %}"
    "{% set s = s~s~s~s~s~s~s~s~s~s %}{{ s|length }}",
    "{% set s = 'x'*9999 %}{% set s = s+s+s+s+s+s+s+s+s+s %}{% set s = s+s+s+s+s+s+s+s+s+s %}"
    "{% set s = s+s+s+s+s+s+s+s+s+s %}{{ s|length }}",
    "{% set s = 'x'*9999 %}{% set l = [s,s,s,s,s,s,s,s,s,s] %}{% set l = [l,l,l,l,l,l,l,l,l,l] %}"
    "{% set l = [l,l,l,l,l,l,l,l,l,l] %}{{ l }}",
    "{% set s = 'x'*9999 %}{% set l = [s,s,s,s,s,s,s,s,s,s] %}{% set l = [l,l,l,l,l,l,l,l,l,l] %}"
    "{% set l = [l,l,l,l,l,l,l,l,l,l] %}{{ l|join|length }}",
    "{% set s = 'x'*9999 %}{% set l = [s]*9999 %}{{ l|string|length }}",
    "{% set s = 'x'*9999 %}{{ s|replace('', s)|length }}",
    "{% set s = 'x'*9999 %}{% for i in s %}{{ s }}{% endfor %}",
    "{% set s = 'x'*5000 %}{% for i in s %}{% set t = s ~ s %}{% endfor %}done",
    "{{ " + "(" * 120 + "1" + ")" * 120 + " }}",
    "{% if 1 %}" * 1000 + "{% endif %}" * 1000,
    "{% for a in 'ab' %}" * 25 + "x" + "{% endfor %}" * 25,
]


def mail_with(**kw) -> Mail:
    values = dict(name="m", from_address="news@shop.example", subject="Hi", text_body="Body")
    values.update(kw)
    return Mail(**values)


def refused(part: str, source: str) -> str:
    with pytest.raises(ValidationError) as e:
        rendering.validate_templates(mail_with(**{part: source}))
    assert list(e.value.message_dict) == [part]
    return e.value.message_dict[part][0]


@pytest.mark.parametrize("source", BOMBS)
def test_it_refuses_a_costly_template_at_save_quickly(source):
    t0 = time.monotonic()
    message = refused("text_body", source)
    assert time.monotonic() - t0 < rendering.RENDER_SECONDS + 1
    assert "text body" in message


def test_it_names_the_limit_and_the_part():
    assert refused("html_body", "{{ 'x'|center(1000000000) }}") == (
        "Template error in HTML body: A filter in the template asks for a size over 1,000,000."
    )
    assert refused(
        "subject", "{% for i in 'x'*9999 %}{% for j in 'x'*9 %}{% endfor %}{% endfor %}"
    ) == (
        "Template error in subject: The template repeats its loops more than 10,000 times in "
        "one message."
    )
    assert refused("text_body", "{{ 2 ** 100 }}") == (
        "Template error in text body: An exponent in the template is larger than 64."
    )
    assert refused("text_body", "{{ ((" * 40 + "1" + "))" * 40 + " }}").startswith(
        "The text body is nested more than 50 levels deep"
    )
    assert refused("text_body", "{% if 1 %}\n" * 60 + "{% endif %}" * 60) == (
        "The text body is nested more than 50 levels deep (line 48)."
    )


@pytest.mark.parametrize("test", ["callable", "sameas", "divisibleby", "mapping", "iterable"])
def test_it_refuses_an_unknown_test_as_a_field_error(test):
    assert refused("text_body", f"{{{{ 4 is {test} 2 }}}}") == (
        f"Unknown test in text body: {test} (use one of: defined, undefined, none, number)"
    )


def test_ordinary_templates_still_render():
    Field.objects.create(key="name", label="Name", type="text")
    mail = actions.save_mail(
        mail_with(
            subject="{{ name }} さん",
            text_body=(
                "{% for c in 'abc' %}{{ c|upper }}{% endfor %} {{ 'a' ~ name }} {{ 3 * 4 }} "
                "{{ '%05.2f'|format(3.14159) }} {{ ['x', name]|join(', ') }} {{ 2 ** 10 }}"
            ),
        ),
        None,
    )
    row = {"id": 1, "data": {"name": "Sato"}}
    rendered = rendering.CompiledMail(actions.content_snapshot(mail), catalogue()).render(1, row)
    assert rendered.subject == "Sato さん"
    assert rendered.text == "ABC aSato 12 03.14 x, Sato 1024"


# -- generated cases ---------------------------------------------------------------------------

big = st.integers(min_value=10**7, max_value=10**15)
word = st.sampled_from(["'x'", "'ab'", "name", "'あ'"])
costly = st.one_of(
    st.builds(lambda n, w: f"{{{{ {w}|center({n}) }}}}", big, word),
    st.builds(lambda n, w: f"{{{{ {w}|wordwrap({n}) }}}}", big, word),
    st.builds(lambda n, w: f"{{{{ {w}|truncate({n}) }}}}", big, word),
    st.builds(lambda n: f"{{{{ '%0{n}d'|format(1) }}}}", big),
    st.builds(lambda n: f"{{{{ '%.{n}f' % 1.5 }}}}", big),
    st.builds(lambda n, w: f"{{{{ {w} * {n} }}}}", big, word),
    st.builds(lambda n, w: f"{{{{ [{w}] * {n} }}}}", big, word),
    st.builds(
        lambda b, e, k: "{{ " + "(" * k + str(b) + "".join(f" ** {e})" for _ in range(k)) + " }}",
        st.integers(10**6, 10**9),
        st.integers(20, 64),
        st.integers(2, 6),
    ),
    st.builds(
        lambda n, k: "{% set a = " + str(n) + " %}" + "{% set a = a*a %}" * k + "{{ a }}",
        st.integers(10**30, 10**60),
        st.integers(5, 12),
    ),
    st.builds(
        lambda k, n: "{% for a in 'x'*" + str(n) + " %}" * k + "." + "{% endfor %}" * k,
        st.integers(2, 4),
        st.integers(200, 9999),
    ),
    st.builds(
        lambda k: "{% set s = 'x'*9999 %}" + "{% set s = s~s~s~s~s~s~s~s~s~s %}" * k + "{{ s }}",
        st.integers(3, 5),
    ),
    st.builds(
        lambda k: (
            "{% set l = ['x'*9999] %}" + "{% set l = [l,l,l,l,l,l,l,l,l,l] %}" * k + "{{ l }}"
        ),
        st.integers(3, 6),
    ),
    st.builds(lambda k: "{{ " + "(" * k + "1" + ")" * k + " }}", st.integers(60, 2000)),
    st.builds(lambda k: "{% if 1 %}" * k + "{% endif %}" * k, st.integers(60, 2000)),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=costly, part=st.sampled_from(rendering.PARTS))
def test_generated_costly_templates_are_refused_at_save_within_the_budget(source, part):
    Field.objects.get_or_create(key="name", label="Name", type="text")
    t0 = time.monotonic()
    with pytest.raises(ValidationError) as e:
        rendering.validate_templates(mail_with(**{part: source}))
    assert time.monotonic() - t0 < rendering.RENDER_SECONDS + 1
    assert list(e.value.message_dict) == [part]


# -- through the screens, the API and the worker -------------------------------------------


def test_the_api_answers_400_naming_the_part(member):
    _token, key = ApiToken.issue(member, "tests")
    client = Client(headers={"authorization": f"Bearer {key}", "accept-language": "en"})
    body = {
        "name": "m",
        "from_address": "news@shop.example",
        "subject": "Hi",
        "text_body": "{{ ((((9**64)**64)**64)**64) > 1 }}",
    }
    response = client.post("/api/mails", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "text_body" in response.json()["errors"]


def test_preview_and_test_send_of_a_template_over_budget_for_a_customer(member_client):
    # A name long enough to take a loop over its characters past the iteration limit.
    Field.objects.create(key="name", label="Name", type="text")
    mail = make_mail(text_body="{% for a in name %}{% for b in name %}.{% endfor %}{% endfor %}")
    customer = Customer.objects.create(email="long@example.com", data={"name": "n" * 200})
    response = member_client.get(f"/mails/{mail.pk}/preview/?customer={customer.pk}")
    assert response.status_code == 200
    assert "more than 10,000 times" in response.content.decode()
    with Sink() as sink:
        make_relay(sink.port)
        response = member_client.post(
            f"/mails/{mail.pk}/test/",
            {"addresses": "me@shop.example", "customer": customer.pk},
            follow=True,
        )
    assert response.status_code == 200
    assert "more than 10,000 times" in response.content.decode()
    assert not sink.handler.messages


def test_a_row_over_budget_at_send_time_fails_with_its_reason_and_the_rest_go_out():
    Field.objects.create(key="name", label="Name", type="text")
    mail = make_mail(text_body="{% for a in name %}{% for b in name %}.{% endfor %}{% endfor %}")
    Customer.objects.create(email="short@example.com", data={"name": "Sato"})
    Customer.objects.create(email="long@example.com", data={"name": "n" * 200})
    with Sink() as sink:
        make_relay(sink.port)
        delivery = start(mail)
        t0 = time.monotonic()
        drain(sending.Worker(sending.Config(idle_sleep=0.01)), delivery, timeout=20)
        assert time.monotonic() - t0 < 10
    rows = {r.address: r for r in Recipient.objects.filter(delivery=delivery)}
    assert rows["short@example.com"].status == "sent"
    long = rows["long@example.com"]
    assert long.status == "failed"
    assert long.error_kind == "other"
    assert long.note == (
        "Not sent: Template error in text body: The template repeats its loops more than "
        "10,000 times in one message."
    )
    assert Customer.objects.get(email="long@example.com").email_error_count == 0
    assert list(sink.handler.received) == ["short@example.com"]
