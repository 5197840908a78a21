from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from okuru.accounts.models import OperationLog, Operator
from tests.conftest import PASSWORD, client_for

LOCKED = "Too many failed log-in attempts. Try again in 15 minutes."
WRONG = "Wrong user name or password."


def anonymous() -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR="192.0.2.7")


def post_login(client: Client, username: str, password: str, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password, **extra})


def test_it_logs_in_and_records_it(member):
    client = anonymous()
    r = post_login(client, "member", PASSWORD)
    assert r.status_code == 302
    assert r.url == "/"
    entry = OperationLog.objects.get(action="login")
    assert entry.operator_id == member.pk
    assert entry.operator_name == "member"
    assert entry.group_names == "Marketing"
    assert entry.source_ip == "192.0.2.7"


def test_it_follows_a_safe_next_only(member):
    r = post_login(anonymous(), "member", PASSWORD, next="/accounts/jobs/")
    assert r.url == "/accounts/jobs/"
    r = post_login(anonymous(), "member", PASSWORD, next="https://evil.example/")
    assert r.url == "/"


def test_it_rejects_a_wrong_password_and_counts_it(member):
    r = post_login(anonymous(), "member", "not the password")
    assert r.status_code == 200
    assert WRONG in r.content.decode()
    member.refresh_from_db()
    assert member.failed_logins == 1
    entry = OperationLog.objects.get(action="login_failed")
    assert entry.operator_id == member.pk
    assert entry.target == "member"
    assert entry.source_ip == "192.0.2.7"


def test_it_gives_the_same_message_for_an_unknown_user(db):
    r = post_login(anonymous(), "nobody", "whatever it is")
    assert WRONG in r.content.decode()
    entry = OperationLog.objects.get(action="login_failed")
    assert entry.operator is None
    assert entry.target == "nobody"


@override_settings(LOGIN_MAX_FAILURES=3, LOGIN_LOCKOUT_MINUTES=15)
def test_it_locks_the_account_after_repeated_failures(member):
    client = anonymous()
    for _ in range(2):
        assert WRONG in post_login(client, "member", "bad guess!").content.decode()
    r = post_login(client, "member", "bad guess!")
    assert LOCKED in r.content.decode()
    member.refresh_from_db()
    assert member.is_locked()
    assert member.locked_until > timezone.now() + timedelta(minutes=14)
    assert OperationLog.objects.filter(action="account_locked", operator=member).count() == 1

    # Even the right password is refused while locked, with the same message.
    r = post_login(client, "member", PASSWORD)
    assert r.status_code == 200
    assert LOCKED in r.content.decode()
    assert "_auth_user_id" not in client.session
    assert OperationLog.objects.filter(action="login_refused_locked").count() == 1


@override_settings(LOGIN_MAX_FAILURES=2)
def test_it_lets_the_operator_in_after_the_lockout(member):
    post_login(anonymous(), "member", "bad guess!")
    post_login(anonymous(), "member", "bad guess!")
    Operator.objects.filter(pk=member.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    r = post_login(anonymous(), "member", PASSWORD)
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.locked_until is None
    assert member.failed_logins == 0


def test_a_success_resets_the_failure_count(member):
    post_login(anonymous(), "member", "bad guess!")
    post_login(anonymous(), "member", PASSWORD)
    member.refresh_from_db()
    assert member.failed_logins == 0


def test_it_refuses_a_deactivated_operator(member):
    Operator.objects.filter(pk=member.pk).update(is_active=False)
    r = post_login(anonymous(), "member", PASSWORD)
    assert WRONG in r.content.decode()


def test_logout_needs_post(member_client):
    assert member_client.get("/accounts/logout/").status_code == 405
    r = member_client.post("/accounts/logout/")
    assert r.status_code == 302
    assert "_auth_user_id" not in member_client.session


def test_it_applies_the_operators_language_at_login(member):
    Operator.objects.filter(pk=member.pk).update(language="ja")
    client = anonymous()
    r = post_login(client, "member", PASSWORD)
    assert r.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ja"
    page = client.get("/accounts/notices/")
    assert page.headers["Content-Language"] == "ja"


def test_the_language_switch_saves_the_preference(member):
    client = client_for(member)
    r = client.post("/i18n/setlang/", {"language": "ja", "next": "/accounts/notices/"})
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.language == "ja"
    assert OperationLog.objects.get(action="language_change").detail == {"language": "ja"}
    assert client.get("/accounts/notices/").headers["Content-Language"] == "ja"


def test_the_language_switch_ignores_unknown_languages(member):
    client = client_for(member)
    client.post("/i18n/setlang/", {"language": "xx"})
    member.refresh_from_db()
    assert member.language == ""


@pytest.mark.parametrize("path", ["/accounts/profile/", "/accounts/jobs/", "/accounts/notices/"])
def test_pages_need_a_login(db, path):
    r = anonymous().get(path)
    assert r.status_code == 302
    assert r.url.startswith("/accounts/login/")
