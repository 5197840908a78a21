"""Weak passwords are refused on every path that sets one: operator creation (screen and
CLI), the own password change, an admin's reset, ``changepassword`` and ``createsuperuser``.
Hypothesis generates the weak passwords."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts.models import Operator
from tests.conftest import PASSWORD

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
WHITESPACE = " \t\u3000\u00a0"
VISIBLE = st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\x00"
)


def whitespace_only() -> st.SearchStrategy[str]:
    return st.text(alphabet=WHITESPACE, min_size=10, max_size=40)


def one_character_repeated() -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, VISIBLE, st.integers(10, 40))


def short_unit_repeated() -> st.SearchStrategy[str]:
    return st.builds(
        lambda unit, n: unit * n,
        st.text(alphabet=VISIBLE, min_size=1, max_size=4),
        st.integers(10, 20),
    )


def name_plus_digits(name: str) -> st.SearchStrategy[str]:
    """The user name (any case), with digits, symbols or spaces before and/or after it."""
    padding = st.text(alphabet="0123456789!#$%&*-_.+ ", min_size=0, max_size=12)
    cased = st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda ups: "".join(c.upper() if up else c for c, up in zip(name, ups, strict=True))
    )
    return st.builds(lambda a, n, b: a + n + b, padding, cased, padding).filter(
        lambda p: len(p) >= 10
    )


def weak_passwords(name: str) -> st.SearchStrategy[str]:
    return st.one_of(
        whitespace_only(), one_character_repeated(), short_unit_repeated(), name_plus_digits(name)
    )


def refused(password: str, user) -> bool:
    try:
        password_validation.validate_password(password, user)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize(
    "password, message",
    [
        (" " * 10, "The password cannot be only spaces."),
        ("\u3000" * 12, "The password cannot be only spaces."),
        ("x" * 12, "The password cannot be one character or a short sequence repeated."),
        ("abababababab", "The password cannot be one character or a short sequence repeated."),
        # Case folding lengthens this unit to five characters: it is still a short one.
        (
            "\u0128\u0130\u0142\xdf" * 4,
            "The password cannot be one character or a short sequence repeated.",
        ),
        (
            "member2024!!",
            "The password cannot be your user name, e-mail address or name with only digits "
            "or symbols added.",
        ),
        (
            "12345-MEMBER",
            "The password cannot be your user name, e-mail address or name with only digits "
            "or symbols added.",
        ),
    ],
)
def test_it_names_what_is_wrong_with_a_weak_password(member, password, message):
    with pytest.raises(ValidationError) as e:
        password_validation.validate_password(password, member)
    assert message in e.value.messages


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "plum orchard sunrise 42",
        "member of the blue team",
        "Kx9#mQ2$vL7p",
        "猫と犬と鳥の朝ごはん",
    ],
)
def test_it_accepts_strong_passwords(member, password):
    password_validation.validate_password(password, member)


@EXAMPLES
@given(data=st.data())
def test_every_weak_password_is_refused_by_the_validators(member, data):
    assert refused(data.draw(weak_passwords("member")), member)


@EXAMPLES
@given(data=st.data())
def test_the_operator_screen_refuses_a_weak_password(owner_client, data):
    password = data.draw(weak_passwords("newbie"))
    r = owner_client.post(
        "/accounts/operators/new/",
        {
            "username": "newbie",
            "email": "newbie@example.com",
            "language": "en",
            "password1": password,
            "password2": password,
        },
    )
    assert r.status_code == 200
    assert r.context["form"].errors["password1"]
    assert not Operator.objects.filter(username="newbie").exists()


@EXAMPLES
@given(data=st.data())
def test_the_own_password_change_refuses_a_weak_password(member, member_client, data):
    password = data.draw(weak_passwords("member"))
    r = member_client.post(
        "/accounts/profile/password/",
        {"old_password": PASSWORD, "new_password1": password, "new_password2": password},
    )
    assert r.status_code == 200
    assert r.context["password_form"].errors["new_password2"]
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


@EXAMPLES
@given(data=st.data())
def test_an_admin_reset_refuses_a_weak_password(owner_client, member, data):
    password = data.draw(weak_passwords("member"))
    r = owner_client.post(
        f"/accounts/operators/{member.pk}/password/",
        {"new_password1": password, "new_password2": password},
    )
    assert r.status_code == 200
    assert r.context["password_form"].errors["new_password2"]
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_changepassword_refuses_a_weak_password(member, monkeypatch, data):
    password = data.draw(weak_passwords("member"))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": password)
    with pytest.raises(CommandError, match="after 3 attempts"):
        call_command("changepassword", "member", stdout=StringIO(), stderr=StringIO())
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_createsuperuser_refuses_a_weak_password_without_a_way_round(db, monkeypatch, data):
    password = data.draw(weak_passwords("chief"))
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", password)
    with pytest.raises(CommandError):
        call_command(
            "createsuperuser",
            "--noinput",
            "--username",
            "chief",
            "--email",
            "chief@example.com",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert not Operator.objects.filter(username="chief").exists()


def test_createsuperuser_accepts_a_strong_password(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command(
        "createsuperuser", "--noinput", "--username", "chief", "--email", "c@example.com",
        stdout=StringIO(),
    )  # fmt: skip
    assert Operator.objects.get(username="chief").check_password(PASSWORD)
