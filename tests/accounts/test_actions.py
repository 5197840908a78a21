"""The named actions of accounts.actions: each write and its operation-log entry are one
transaction, so a failed log write leaves the operator, group or token as it was."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from okuru.accounts import actions
from okuru.accounts.models import ApiToken, Notification, OperationLog, Operator
from tests.conftest import PASSWORD, make_operator

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "purple elephant sings loudly 42"


class LogDown(Exception):
    """The operation log's write failed."""


@pytest.fixture
def log_down(monkeypatch):
    def create(*args, **kwargs):
        raise LogDown

    monkeypatch.setattr(OperationLog.objects, "create", create)


@pytest.fixture
def clerk(db) -> Operator:
    clerk = make_operator("clerk", ["customers_read"])
    Operator.objects.filter(pk=clerk.pk).update(
        failed_logins=5, locked_until=timezone.now() + timedelta(minutes=10)
    )
    clerk.refresh_from_db()
    return clerk


def post(client, url, data):
    try:
        return client.post(url, data)
    except LogDown:
        return None


def test_it_keeps_the_old_password_when_the_change_cannot_be_logged(owner_client, owner, log_down):
    post(
        owner_client,
        "/accounts/profile/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_it_changes_the_password_and_logs_it_together(owner_client, owner):
    r = owner_client.post(
        "/accounts/profile/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert r.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert OperationLog.objects.filter(action="password_change", target="owner").count() == 1
    # The session follows the new password: the operator stays logged in.
    assert owner_client.get("/accounts/profile/").status_code == 200


def test_it_keeps_password_and_lock_when_a_reset_cannot_be_logged(owner_client, clerk, log_down):
    post(
        owner_client,
        f"/accounts/operators/{clerk.pk}/password/",
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    fresh = Operator.objects.get(pk=clerk.pk)
    assert fresh.check_password(PASSWORD)
    assert (fresh.failed_logins, fresh.locked_until) == (clerk.failed_logins, clerk.locked_until)


def test_it_resets_a_password_lifts_the_lock_and_logs_it(owner, clerk):
    actions.reset_password(clerk, owner, NEW_PASSWORD)
    fresh = Operator.objects.get(pk=clerk.pk)
    assert fresh.check_password(NEW_PASSWORD)
    assert (fresh.failed_logins, fresh.locked_until) == (0, None)
    assert OperationLog.objects.get(action="operator_password_reset").target == "clerk"


def test_it_keeps_the_operator_as_it_was_when_a_change_cannot_be_logged(owner, clerk, log_down):
    with pytest.raises(LogDown):
        actions.set_active(clerk, False, owner)
    with pytest.raises(LogDown):
        actions.unlock(clerk, owner)
    with pytest.raises(LogDown):
        actions.set_language(clerk, "ja", owner)
    fresh = Operator.objects.get(pk=clerk.pk)
    assert (fresh.is_active, fresh.failed_logins, fresh.language) == (True, 5, "")


def test_it_creates_no_operator_when_the_creation_cannot_be_logged(owner_client, log_down):
    group = Group.objects.create(name="Clerks")
    post(
        owner_client,
        "/accounts/operators/new/",
        {
            "username": "newbie",
            "email": "newbie@example.com",
            "groups": [group.pk],
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )
    with pytest.raises(LogDown):
        call_command("createoperator", "cli-newbie", "--admin")
    assert not Operator.objects.filter(username__in=["newbie", "cli-newbie"]).exists()


def test_it_creates_an_operator_from_the_cli_with_the_admin_group(capsys):
    call_command("createoperator", "boss", "--admin")
    boss = Operator.objects.get(username="boss")
    assert boss.is_superuser and boss.is_staff
    assert boss.group_names() == "Administrators"
    entry = OperationLog.objects.get(action="operator_create")
    assert entry.detail == {"groups": ["Administrators"], "source": "cli"}
    password = capsys.readouterr().out.split("password: ")[1].split()[0]
    assert boss.check_password(password)


def test_it_keeps_groups_as_they_were_when_their_writes_cannot_be_logged(owner_client, log_down):
    group = Group.objects.create(name="Clerks")
    post(owner_client, "/accounts/groups/new/", {"name": "Sales", "rights": ["customers_read"]})
    post(owner_client, f"/accounts/groups/{group.pk}/", {"name": "Renamed", "rights": []})
    post(owner_client, f"/accounts/groups/{group.pk}/delete/", {})
    assert set(Group.objects.values_list("name", flat=True)) == {"Clerks", "Administrators"}


def test_it_keeps_tokens_as_they_were_when_their_writes_cannot_be_logged(owner, log_down):
    with pytest.raises(LogDown):
        actions.issue_token(owner, "new", owner)
    token, _key = ApiToken.issue(owner, "old")
    with pytest.raises(LogDown):
        actions.revoke_token(token, owner)
    assert list(ApiToken.objects.values_list("name", "revoked")) == [("old", None)]


def test_it_keeps_notices_unread_when_reading_them_cannot_be_logged(owner_client, owner, log_down):
    Notification.objects.create(operator=owner, text="Import finished")
    post(owner_client, "/accounts/notices/read/", {})
    assert Notification.objects.get().read is False
