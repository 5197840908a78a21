"""Personas shared by every test: an owner (all rights), a member (marketing rights, no
operators admin or database design) and an outsider (logged in, no rights)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client, override_settings
from django.utils import translation

from okuru.accounts.models import RIGHTS, Operator

MEMBER_RIGHTS = [
    "customers_read",
    "customers_write",
    "import_data",
    "export_data",
    "mails",
    "sending",
    "reports",
]
PASSWORD = "correct horse battery staple"


def make_group(name: str, rights: list[str]) -> Group:
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.set(
        Permission.objects.filter(content_type__app_label="accounts", codename__in=rights)
    )
    return group


def make_operator(username: str, rights: list[str] | None, group_name: str = "") -> Operator:
    op = Operator.objects.create_user(username, f"{username}@example.com", PASSWORD)
    if rights:
        op.groups.add(make_group(group_name or f"{username}-group", rights))
    return op


@pytest.fixture(autouse=True)
def _english_by_default(settings):
    # The product defaults to Japanese; tests assert English messages unless they ask for ja.
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def owner(db) -> Operator:
    return make_operator("owner", [r for r, _ in RIGHTS], "Administrators")


@pytest.fixture
def member(db) -> Operator:
    return make_operator("member", MEMBER_RIGHTS, "Marketing")


@pytest.fixture
def outsider(db) -> Operator:
    return make_operator("outsider", None)


def client_for(user: Operator, language: str = "en") -> Client:
    client = Client(headers={"accept-language": language})
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return client_for(owner)


@pytest.fixture
def member_client(member) -> Client:
    return client_for(member)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return client_for(outsider)


@pytest.fixture
def media(tmp_path):
    """Files the app writes (uploads, exports) go to a folder of the test's own."""
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path
