from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from okuru.accounts.models import RIGHTS, OperationLog, Operator
from tests.conftest import PASSWORD, client_for, make_group

NEW_PASSWORD = "plum orchard sunrise 42"

ADMIN_PAGES = [
    "/accounts/operators/",
    "/accounts/operators/new/",
    "/accounts/groups/",
    "/accounts/groups/new/",
    "/accounts/log/",
]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_are_for_operators_admins(owner_client, member_client, outsider_client, path):
    assert owner_client.get(path).status_code == 200
    assert member_client.get(path).status_code == 403
    assert outsider_client.get(path).status_code == 403


def test_object_pages_are_for_operators_admins(owner, member_client, outsider_client):
    group = Group.objects.get(name="Administrators")
    for client in (member_client, outsider_client):
        assert client.get(f"/accounts/operators/{owner.pk}/").status_code == 403
        assert (
            client.post(f"/accounts/operators/{owner.pk}/active/", {"active": "0"}).status_code
            == 403
        )
        assert client.get(f"/accounts/groups/{group.pk}/").status_code == 403
        assert client.post(f"/accounts/groups/{group.pk}/delete/").status_code == 403
    owner.refresh_from_db()
    assert owner.is_active
    assert Group.objects.filter(pk=group.pk).exists()


def test_a_superuser_holds_every_right(db):
    boss = Operator.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    assert boss.rights() == {code for code, _ in RIGHTS}
    assert client_for(boss).get("/accounts/operators/").status_code == 200


def test_the_operator_list_does_not_query_per_row(owner_client, django_assert_max_num_queries):
    marketing = make_group("Marketing", ["customers_read"])
    for i in range(20):
        Operator.objects.create_user(f"op{i}", password=PASSWORD).groups.add(marketing)
    with django_assert_max_num_queries(8):
        r = owner_client.get("/accounts/operators/")
    assert "op19" in r.content.decode()


def operator_data(**overrides) -> dict:
    data = {
        "username": "newbie",
        "first_name": "New",
        "last_name": "Bie",
        "email": "newbie@example.com",
        "language": "en",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
    }
    data.update(overrides)
    return data


def test_it_creates_an_operator_with_groups(owner_client):
    marketing = make_group("Marketing", ["customers_read"])
    r = owner_client.post("/accounts/operators/new/", {**operator_data(), "groups": [marketing.pk]})
    assert r.status_code == 302
    newbie = Operator.objects.get(username="newbie")
    assert newbie.check_password(NEW_PASSWORD)
    assert newbie.language == "en"
    assert list(newbie.groups.all()) == [marketing]
    assert newbie.has_right("customers_read")
    assert not newbie.has_right("customers_write")
    entry = OperationLog.objects.get(action="operator_create")
    assert entry.target == "newbie"
    assert entry.operator_name == "owner"
    assert entry.group_names == "Administrators"
    assert entry.detail == {"groups": ["Marketing"]}
    assert entry.source_ip == "127.0.0.1"


@pytest.mark.parametrize(
    "password, message",
    [
        ("short1x", "This password is too short. It must contain at least 10 characters."),
        ("1234567890123", "This password is entirely numeric."),
        ("password1234", "This password is too common."),
        ("newbie1234", "The password is too similar to the username."),
    ],
)
def test_it_applies_the_password_policy_on_create(owner_client, password, message):
    r = owner_client.post(
        "/accounts/operators/new/", operator_data(password1=password, password2=password)
    )
    assert r.status_code == 200
    assert message in r.content.decode()
    assert not Operator.objects.filter(username="newbie").exists()


def test_it_rejects_mismatched_passwords(owner_client):
    r = owner_client.post("/accounts/operators/new/", operator_data(password2="something else"))
    assert "The two passwords do not match." in r.content.decode()
    assert not Operator.objects.filter(username="newbie").exists()


def test_it_rejects_a_taken_user_name(owner_client, member):
    r = owner_client.post("/accounts/operators/new/", operator_data(username="member"))
    assert "A user with that username already exists." in r.content.decode()


def test_it_edits_an_operator_and_their_groups(owner_client, member):
    admins = Group.objects.get(name="Administrators")
    r = owner_client.post(
        f"/accounts/operators/{member.pk}/",
        {"username": "member", "email": "m@example.com", "language": "ja", "groups": [admins.pk]},
    )
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.email == "m@example.com"
    assert member.language == "ja"
    assert member.group_names() == "Administrators"
    entry = OperationLog.objects.get(action="operator_update")
    assert entry.target == "member"
    assert entry.detail["groups"] == ["Administrators"]


def test_it_refuses_to_remove_your_own_admin_right(owner, owner_client):
    r = owner_client.post(
        f"/accounts/operators/{owner.pk}/", {"username": "owner", "email": "o@example.com"}
    )
    assert r.status_code == 200
    assert (
        "You cannot remove your own operators admin right: another administrator has to do that."
        in r.content.decode()
    )
    owner.refresh_from_db()
    assert owner.group_names() == "Administrators"
    assert owner.email == "owner@example.com"


def test_it_refuses_to_deactivate_yourself(owner, owner_client):
    r = owner_client.post(f"/accounts/operators/{owner.pk}/active/", {"active": "0"}, follow=True)
    assert "You cannot deactivate yourself." in r.content.decode()
    owner.refresh_from_db()
    assert owner.is_active


def test_it_deactivates_and_reactivates_an_operator(owner_client, member):
    r = owner_client.post(f"/accounts/operators/{member.pk}/active/", {"active": "0"})
    assert r.status_code == 302
    member.refresh_from_db()
    assert not member.is_active
    assert not member.has_right("customers_read")
    owner_client.post(f"/accounts/operators/{member.pk}/active/", {"active": "1"})
    member.refresh_from_db()
    assert member.is_active
    actions = list(OperationLog.objects.order_by("id").values_list("action", "target"))
    assert actions == [("operator_deactivate", "member"), ("operator_activate", "member")]


def test_a_deactivated_operator_loses_their_session(owner_client, member):
    member_client = client_for(member)
    assert member_client.get("/accounts/notices/").status_code == 200
    owner_client.post(f"/accounts/operators/{member.pk}/active/", {"active": "0"})
    assert member_client.get("/accounts/notices/").status_code == 302


def test_it_resets_a_password_with_the_policy(owner_client, member):
    url = f"/accounts/operators/{member.pk}/password/"
    r = owner_client.post(url, {"new_password1": "short", "new_password2": "short"})
    assert "This password is too short. It must contain at least 10 characters." in (
        r.content.decode()
    )
    member.refresh_from_db()
    assert member.check_password(PASSWORD)

    Operator.objects.filter(pk=member.pk).update(failed_logins=3)
    r = owner_client.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    assert member.failed_logins == 0
    assert OperationLog.objects.get(action="operator_password_reset").target == "member"


def test_it_unlocks_an_operator(owner_client, member):
    from datetime import timedelta

    from django.utils import timezone

    Operator.objects.filter(pk=member.pk).update(
        locked_until=timezone.now() + timedelta(minutes=10), failed_logins=2
    )
    owner_client.post(f"/accounts/operators/{member.pk}/unlock/")
    member.refresh_from_db()
    assert not member.is_locked()
    assert OperationLog.objects.get(action="operator_unlock").target == "member"


def test_only_a_superuser_changes_a_superuser(owner_client):
    boss = Operator.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    assert owner_client.get(f"/accounts/operators/{boss.pk}/").status_code == 403
    r = owner_client.post(f"/accounts/operators/{boss.pk}/active/", {"active": "0"})
    assert r.status_code == 403
    boss.refresh_from_db()
    assert boss.is_active


# --- permission groups -----------------------------------------------------------------------


def test_it_creates_a_group_with_rights(owner_client):
    r = owner_client.post(
        "/accounts/groups/new/", {"name": "Analysts", "rights": ["customers_read", "reports"]}
    )
    assert r.status_code == 302
    group = Group.objects.get(name="Analysts")
    codes = set(group.permissions.values_list("codename", flat=True))
    assert codes == {"customers_read", "reports"}
    entry = OperationLog.objects.get(action="group_create")
    assert entry.target == "Analysts"
    assert entry.detail == {"rights": ["customers_read", "reports"]}


def test_it_shows_a_checkbox_per_right(owner_client):
    page = owner_client.get("/accounts/groups/new/").content.decode()
    for code, label in RIGHTS:
        assert f'value="{code}"' in page
        assert str(label) in page


def test_it_edits_a_groups_rights(owner_client, member):
    marketing = Group.objects.get(name="Marketing")
    r = owner_client.post(
        f"/accounts/groups/{marketing.pk}/", {"name": "Marketing", "rights": ["customers_read"]}
    )
    assert r.status_code == 302
    member = Operator.objects.get(pk=member.pk)  # fresh instance: no permission cache
    assert member.has_right("customers_read")
    assert not member.has_right("export_data")
    assert OperationLog.objects.get(action="group_update").detail == {"rights": ["customers_read"]}


def test_it_refuses_to_take_admin_from_your_own_group(owner, owner_client):
    admins = Group.objects.get(name="Administrators")
    r = owner_client.post(
        f"/accounts/groups/{admins.pk}/", {"name": "Administrators", "rights": ["reports"]}
    )
    assert r.status_code == 200
    assert (
        "You cannot take the operators admin right from this group: you would lose it yourself."
        in r.content.decode()
    )
    assert admins.permissions.filter(codename="operators_admin").exists()


def test_it_allows_it_when_another_group_keeps_you_admin(owner, owner_client):
    owner.groups.add(make_group("Second admins", ["operators_admin"]))
    admins = Group.objects.get(name="Administrators")
    r = owner_client.post(
        f"/accounts/groups/{admins.pk}/", {"name": "Administrators", "rights": ["reports"]}
    )
    assert r.status_code == 302
    assert not admins.permissions.filter(codename="operators_admin").exists()


def test_it_refuses_to_delete_your_own_admin_group(owner_client):
    admins = Group.objects.get(name="Administrators")
    r = owner_client.post(f"/accounts/groups/{admins.pk}/delete/", follow=True)
    assert (
        "You cannot delete this group: you would lose the operators admin right yourself."
        in r.content.decode()
    )
    assert Group.objects.filter(pk=admins.pk).exists()


def test_it_deletes_a_group(owner_client, member):
    marketing = Group.objects.get(name="Marketing")
    r = owner_client.post(f"/accounts/groups/{marketing.pk}/delete/")
    assert r.status_code == 302
    assert not Group.objects.filter(name="Marketing").exists()
    member = Operator.objects.get(pk=member.pk)
    assert not member.has_right("customers_read")
    assert OperationLog.objects.get(action="group_delete").target == "Marketing"


def test_it_rejects_a_duplicate_group_name(owner_client, member):
    r = owner_client.post("/accounts/groups/new/", {"name": "Marketing"})
    assert "Group with this Name already exists." in r.content.decode()
