from __future__ import annotations

import re

from okuru.accounts.models import ApiToken, OperationLog
from tests.conftest import PASSWORD, client_for

NEW_PASSWORD = "plum orchard sunrise 42"


def test_every_persona_has_a_profile(owner_client, member_client, outsider_client):
    for client in (owner_client, member_client, outsider_client):
        assert client.get("/accounts/profile/").status_code == 200


def test_it_saves_the_profile_and_language(member, member_client):
    r = member_client.post(
        "/accounts/profile/", {"first_name": "Mem", "email": "mem@example.com", "language": "ja"}
    )
    assert r.status_code == 302
    assert r.cookies["django_language"].value == "ja"
    member.refresh_from_db()
    assert (member.first_name, member.email, member.language) == ("Mem", "mem@example.com", "ja")
    assert OperationLog.objects.get(action="profile_update").operator_id == member.pk


def test_an_empty_language_means_the_browsers(member, member_client):
    member_client.post("/accounts/profile/", {"language": "ja"})
    r = member_client.post("/accounts/profile/", {"language": ""})
    assert r.cookies["django_language"].value == ""
    member.refresh_from_db()
    assert member.language == ""
    page = member_client.get("/accounts/profile/", headers={"accept-language": "en"})
    assert page.headers["Content-Language"] == "en"


def test_it_rejects_a_bad_language(member, member_client):
    r = member_client.post("/accounts/profile/", {"language": "xx"})
    assert "Select a valid choice. xx is not one of the available choices." in r.content.decode()


def test_it_changes_the_own_password_with_the_policy(member, member_client):
    r = member_client.post(
        "/accounts/profile/password/",
        {"old_password": PASSWORD, "new_password1": "abc", "new_password2": "abc"},
    )
    assert "This password is too short. It must contain at least 10 characters." in (
        r.content.decode()
    )
    r = member_client.post(
        "/accounts/profile/password/",
        {"old_password": "wrong one", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert "Your old password was entered incorrectly. Please enter it again." in (
        r.content.decode()
    )
    member.refresh_from_db()
    assert member.check_password(PASSWORD)

    r = member_client.post(
        "/accounts/profile/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    # Still logged in after changing the password.
    assert member_client.get("/accounts/profile/").status_code == 200
    assert OperationLog.objects.filter(action="password_change").count() == 1


def test_it_creates_a_token_and_shows_it_once(member, member_client):
    r = member_client.post("/accounts/profile/tokens/", {"name": "CRM sync"})
    assert r.status_code == 200
    page = r.content.decode()
    key = re.search(r'<code id="new-token">([^<]+)</code>', page)[1]
    assert key.startswith("okuru_")
    token = ApiToken.objects.get(operator=member)
    assert token.name == "CRM sync"
    assert token.key_hash == ApiToken.hash_key(key)
    assert key not in token.key_hash and token.prefix == key[:12]
    assert ApiToken.find(key) == token
    # Not shown again.
    assert key not in member_client.get("/accounts/profile/").content.decode()
    entry = OperationLog.objects.get(action="api_token_create")
    assert (entry.operator_id, entry.target) == (member.pk, "CRM sync")


def test_it_needs_a_token_name(member_client):
    r = member_client.post("/accounts/profile/tokens/", {"name": ""})
    assert "This field is required." in r.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_a_token(member, member_client):
    token, key = ApiToken.issue(member, "CRM sync")
    r = member_client.post(f"/accounts/profile/tokens/{token.pk}/revoke/")
    assert r.status_code == 302
    token.refresh_from_db()
    assert token.revoked is not None
    assert ApiToken.find(key) is None
    assert OperationLog.objects.get(action="api_token_revoke").target == "CRM sync"


def test_it_does_not_revoke_someone_elses_token(owner, member):
    token, key = ApiToken.issue(owner, "Owner's")
    r = client_for(member).post(f"/accounts/profile/tokens/{token.pk}/revoke/")
    assert r.status_code == 404
    token.refresh_from_db()
    assert token.revoked is None
