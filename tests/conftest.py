"""Personas shared by every test: an owner (all rights), a member (marketing rights, no
operators admin or database design) and an outsider (logged in, no rights)."""

from __future__ import annotations

import shutil
import ssl
import subprocess

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


# A TLS server in a test (the relay sink, the bounce mailboxes) needs a certificate.
@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_context(certificate) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx
