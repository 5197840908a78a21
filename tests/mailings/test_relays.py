"""SMTP relays: the screens, the API and the CLI that configure them, the connection test
against a real SMTP server (aiosmtpd in this process: plain, STARTTLS, AUTH), the one default,
deletion refused while something uses the relay, and a password that never leaves again."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from okuru.accounts.models import OperationLog
from okuru.mailings import actions, ledger, relays
from okuru.mailings.models import Delivery, Mail, Relay
from okuru.mailings.testing import Sink, free_port, make_mail
from tests.api.client import api_client
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.django_db

SECRET = "pw-Zq81-never-shown"  # distinctive, so that finding it anywhere means a leak


def make(name: str = "main", **kw) -> Relay:
    values = {"host": "127.0.0.1", "port": 2525, "timeout": 5} | kw
    return relays.save_relay(Relay(name=name, **values), None)


def form_data(**kw) -> dict[str, str]:
    data = {
        "name": "Provider",
        "host": "smtp.example.com",
        "port": "587",
        "security": "starttls",
        "username": "",
        "new_password": "",
        "timeout": "30",
        "max_per_second": "10",
        "per_domain_per_second": "2",
        "verify_tls": "on",
    }
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def no_secret_anywhere(*contents: bytes | str) -> None:
    for content in contents:
        text = content.decode() if isinstance(content, bytes) else content
        assert SECRET not in text
    for entry in OperationLog.objects.all():
        assert SECRET not in str(entry.detail), entry.action
        assert SECRET not in entry.target


# ---------------------------------------------------------------------------------------------
# Rights


RELAY_SCREENS = [
    ("get", "/mails/relays/"),
    ("get", "/mails/relays/new/"),
    ("post", "/mails/relays/new/"),
    ("get", "/mails/relays/{id}/"),
    ("post", "/mails/relays/{id}/"),
    ("post", "/mails/relays/{id}/default/"),
    ("post", "/mails/relays/{id}/test/"),
    ("post", "/mails/relays/{id}/delete/"),
]


@pytest.mark.parametrize("method, path", RELAY_SCREENS)
def test_it_refuses_operators_without_the_sending_right(outsider, method, path):
    relay = make()
    mails_only = make_operator("writer", ["mails", "reports"])
    for operator in (outsider, mails_only):
        r = getattr(client_for(operator), method)(path.format(id=relay.pk))
        assert r.status_code == 403, (operator, path)
        assert "needs: Sending" in r.content.decode()
    relay.refresh_from_db()
    assert relay.name == "main"
    assert (
        not OperationLog.objects.filter(action__startswith="relay.").exclude(operator=None).exists()
    )


def test_the_api_refuses_an_outsider(outsider):
    relay = make()
    api = api_client(outsider)
    calls = [
        ("get", "/api/relays", None),
        ("post", "/api/relays", {"name": "x", "host": "h"}),
        ("get", f"/api/relays/{relay.pk}", None),
        ("patch", f"/api/relays/{relay.pk}", {"name": "y"}),
        ("delete", f"/api/relays/{relay.pk}", None),
        ("post", f"/api/relays/{relay.pk}/test", None),
    ]
    for method, path, body in calls:
        if body is None:
            r = getattr(api, method)(path)
        else:
            r = getattr(api, method)(path, body, content_type="application/json")
        assert r.status_code == 403, (method, path)
        assert r.json()["detail"] == "You do not have the right to do this (needs: Sending)."
    assert Relay.objects.get().name == "main"


def test_the_menu_links_to_relays_only_for_the_sending_right(member, outsider):
    page = client_for(member).get("/mails/").content.decode()
    assert 'href="/mails/relays/"' in page
    writer = make_operator("writer", ["mails"])
    assert 'href="/mails/relays/"' not in client_for(writer).get("/mails/").content.decode()


# ---------------------------------------------------------------------------------------------
# Screens


def test_it_creates_a_relay_and_the_first_one_is_the_default(member_client):
    r = member_client.post(
        "/mails/relays/new/", form_data(username="okuru", new_password=SECRET), follow=True
    )
    assert messages_of(r) == ["Relay “Provider” created."]
    relay = Relay.objects.get()
    assert (relay.host, relay.port, relay.security) == ("smtp.example.com", 587, "starttls")
    assert (relay.username, relay.password) == ("okuru", SECRET)
    assert (relay.max_per_second, relay.per_domain_per_second) == (10, 2)
    assert relay.verify_tls and relay.is_default
    log = OperationLog.objects.get(action="relay.create")
    assert log.operator.username == "member"
    assert log.detail["host"] == "smtp.example.com"
    assert log.detail["password_set"] is True
    page = r.content.decode()
    assert "Provider" in page and "Default" in page
    no_secret_anywhere(r.content)


def test_the_password_is_never_rendered_back_and_a_blank_one_keeps_it(member_client):
    relay = make(username="okuru", password=SECRET)
    edit = member_client.get(f"/mails/relays/{relay.pk}/")
    assert "A password is stored. Leave this blank to keep it." in edit.content.decode()
    r = member_client.post(
        f"/mails/relays/{relay.pk}/",
        form_data(name="main", host="relay.internal", username="okuru", new_password=""),
    )
    assert r.status_code == 302
    relay.refresh_from_db()
    assert (relay.host, relay.password) == ("relay.internal", SECRET)
    log = OperationLog.objects.get(action="relay.update")
    assert log.detail["changed"]["host"] == "relay.internal"
    assert log.detail["password_changed"] is False
    listing = member_client.get("/mails/relays/")
    no_secret_anywhere(edit.content, listing.content)


def test_a_new_password_replaces_the_old_one_and_remove_clears_it(member_client):
    relay = make(username="okuru", password="old-password")
    url = f"/mails/relays/{relay.pk}/"
    member_client.post(url, form_data(name="main", username="okuru", new_password=SECRET))
    relay.refresh_from_db()
    assert relay.password == SECRET
    assert OperationLog.objects.get(action="relay.update").detail["password_changed"] is True
    r = member_client.post(url, form_data(name="main", username="", clear_password="on"))
    assert r.status_code == 302
    relay.refresh_from_db()
    assert (relay.username, relay.password) == ("", "")
    no_secret_anywhere()


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"name": " "}, "name", "This field is required."),
        ({"name": "taken"}, "name", "A relay named “taken” already exists."),
        ({"host": "smtp.example.com:587"}, "host", "Give the port in the port field, not in the host: smtp.example.com:587"),
        ({"host": "smtp example.com"}, "host", "Not a host name or IP address: smtp example.com"),
        ({"port": "0"}, "port", "The port must be between 1 and 65535."),
        ({"port": "70000"}, "port", "The port must be between 1 and 65535."),
        ({"timeout": "0"}, "timeout", "The timeout must be between 1 and 600 seconds."),
        ({"username": "okuru"}, "new_password", "Give the password for the user name okuru."),
        ({"new_password": SECRET}, "username", "A password needs a user name."),
    ],
)  # fmt: skip
def test_it_rejects_bad_settings_with_a_clear_message(member_client, change, field, message):
    make("taken")
    r = member_client.post("/mails/relays/new/", form_data(**change))
    assert r.status_code == 400
    assert r.context["form"].errors[field] == [message]
    assert list(Relay.objects.values_list("name", flat=True)) == ["taken"]
    assert not OperationLog.objects.filter(action="relay.create").exclude(operator=None).exists()
    no_secret_anywhere(r.content)


def test_there_is_always_exactly_one_default(member_client):
    first, second = make("first"), make("second")
    assert [r.name for r in Relay.objects.filter(is_default=True)] == ["first"]
    r = member_client.post(f"/mails/relays/{second.pk}/default/", follow=True)
    assert messages_of(r) == ["“second” is now the default relay."]
    assert [r.name for r in Relay.objects.filter(is_default=True)] == ["second"]
    # Creating with "make default" moves it again; a plain edit does not.
    member_client.post("/mails/relays/new/", form_data(name="third", make_default="on"))
    assert [r.name for r in Relay.objects.filter(is_default=True)] == ["third"]
    member_client.post(f"/mails/relays/{first.pk}/", form_data(name="first"))
    assert [r.name for r in Relay.objects.filter(is_default=True)] == ["third"]
    assert OperationLog.objects.filter(action="relay.set_default").count() == 1


def test_the_list_shows_the_settings_and_what_uses_each_relay(member_client):
    used = make("used", max_per_second=20)
    make("spare", security="tls", verify_tls=False)
    make_mail(relay=used)
    page = member_client.get("/mails/relays/").content.decode()
    assert "127.0.0.1:2525" in page
    assert "certificate not checked" in page
    assert page.count("Make default") == 1  # "used" is the default


# ---------------------------------------------------------------------------------------------
# Deleting


def test_it_refuses_to_delete_the_default_relay(member_client):
    relay = make("main")
    r = member_client.post(f"/mails/relays/{relay.pk}/delete/", follow=True)
    assert messages_of(r) == [
        "“main” is the default relay and cannot be deleted. Make another relay the default first."
    ]
    assert Relay.objects.filter(pk=relay.pk).exists()


def test_it_refuses_to_delete_a_relay_that_a_mail_uses(member_client):
    make("main")
    other = make("other")
    make_mail(name="Spring sale", relay=other)
    make_mail(name="Autumn sale", relay=other)
    r = member_client.post(f"/mails/relays/{other.pk}/delete/", follow=True)
    assert messages_of(r) == [
        "“other” cannot be deleted: 2 mails use it (“Spring sale”, “Autumn sale”). Choose "
        "another relay for them first."
    ]
    assert Relay.objects.filter(pk=other.pk).exists()
    assert Mail.objects.filter(relay=other).count() == 2


def test_it_refuses_to_delete_a_relay_that_a_reserved_delivery_uses(member_client):
    make("main")
    other = make("other")
    mail = make_mail(relay=other)
    delivery = actions.reserve(actions.create_delivery(mail, None), None, None)
    assert delivery.relay_id == other.pk
    # The mail moves to another relay; the reservation keeps the one it was reserved with.
    Mail.objects.filter(pk=mail.pk).update(relay=None)
    r = member_client.post(f"/mails/relays/{other.pk}/delete/", follow=True)
    assert messages_of(r) == [
        f"“other” cannot be deleted: deliveries #{delivery.pk} are reserved, running or paused "
        "with it. Wait until they end, or cancel or stop them."
    ]
    assert Relay.objects.filter(pk=other.pk).exists()
    # Once the reservation is cancelled, the relay goes; the finished delivery forgets it.
    actions.cancel(delivery, None)
    r = member_client.post(f"/mails/relays/{other.pk}/delete/", follow=True)
    assert messages_of(r) == ["Relay “other” deleted."]
    assert not Relay.objects.filter(pk=other.pk).exists()
    delivery.refresh_from_db()
    assert delivery.relay_id is None
    log = OperationLog.objects.get(action="relay.delete")
    assert (log.operator.username, log.detail) == ("member", {"name": "other"})


# ---------------------------------------------------------------------------------------------
# Testing the connection against a real SMTP server


def test_a_working_relay_connects_and_nothing_is_sent(member_client):
    with Sink() as sink:
        relay = make(port=sink.port)
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"Connected to 127.0.0.1:{sink.port}. The connection is not encrypted. No message was sent."
    ]
    assert sink.handler.messages == []
    log = OperationLog.objects.get(action="relay.test")
    assert log.detail["ok"] is True


def test_it_logs_in_with_the_right_password(member_client):
    with Sink(users={"mailer": SECRET}, auth_require_tls=False) as sink:
        relay = make(port=sink.port, username="mailer", password=SECRET)
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", {"back": "edit"}, follow=True)
    assert r.redirect_chain[-1][0] == f"/mails/relays/{relay.pk}/"
    assert messages_of(r) == [
        f"Connected to 127.0.0.1:{sink.port}. The connection is not encrypted. "
        "Logged in as mailer. No message was sent."
    ]
    assert sink.handler.mechanisms  # it did authenticate
    no_secret_anywhere(r.content)


def test_a_wrong_password_is_named_as_the_problem(member_client):
    with Sink(users={"mailer": "the-right-one"}, auth_require_tls=False) as sink:
        relay = make(port=sink.port, username="mailer", password=SECRET)
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"The relay refused the user name or password (127.0.0.1:{sink.port}: 535 5.7.8 "
        "Authentication credentials invalid). Correct them in the relay's settings."
    ]
    log = OperationLog.objects.get(action="relay.test")
    assert log.detail["ok"] is False
    no_secret_anywhere(r.content)


def test_a_closed_port_says_the_connection_was_refused(member_client):
    port = free_port()  # bound once and released: nothing listens there
    relay = make(port=port)
    r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"The connection to the relay 127.0.0.1:{port} failed: [Errno 111] Connection refused. "
        "Check the host, the port and the security setting, and that the relay accepts "
        "connections from this machine."
    ]


def test_a_relay_without_starttls_is_named_as_the_problem(member_client):
    with Sink() as sink:
        relay = make(port=sink.port, security="starttls")
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"The relay does not offer STARTTLS (127.0.0.1:{sink.port} does not offer STARTTLS). "
        "Change the relay's security setting."
    ]


def test_starttls_and_auth_without_the_certificate_check(member_client, server_context):
    users = {"mailer": SECRET}
    with Sink(tls_context=server_context, require_starttls=True, users=users) as sink:
        relay = make(
            port=sink.port,
            security="starttls",
            verify_tls=False,
            username="mailer",
            password=SECRET,
        )
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"Connected to 127.0.0.1:{sink.port}. The connection is encrypted (STARTTLS). The "
        "relay's certificate was not checked. Logged in as mailer. No message was sent."
    ]


def test_a_self_signed_certificate_is_named_as_the_problem(member_client, server_context):
    with Sink(ssl_context=server_context) as sink:
        relay = make(port=sink.port, security="tls")
        r = member_client.post(f"/mails/relays/{relay.pk}/test/", follow=True)
    assert messages_of(r) == [
        f"The relay's TLS certificate could not be verified (127.0.0.1:{sink.port}: self-signed "
        "certificate). Give the relay a certificate for its name from a trusted authority, or "
        "turn off certificate verification for this relay."
    ]


# ---------------------------------------------------------------------------------------------
# The mail form, the test send, a paused delivery


def test_the_mail_form_offers_the_relays_with_the_default_as_blank(member_client):
    make("main")
    other = make("other")
    page = member_client.get("/mails/new/").content.decode()
    assert "The default relay (main)" in page
    assert f'<option value="{other.pk}">other</option>' in page


def test_a_test_send_through_a_relay_refusing_the_password_says_so(member_client):
    with Sink(users={"mailer": "the-right-one"}, auth_require_tls=False) as sink:
        relay = make(port=sink.port, username="mailer", password=SECRET)
        mail = make_mail(relay=relay)
        r = member_client.post(
            f"/mails/{mail.pk}/test/", {"addresses": "a@example.com"}, follow=True
        )
    assert messages_of(r) == [
        f"The relay refused the user name or password (127.0.0.1:{sink.port}: 535 5.7.8 "
        "Authentication credentials invalid). Correct them in the relay's settings."
    ]
    assert sink.handler.messages == []
    no_secret_anywhere(r.content)


def test_a_paused_delivery_shows_why_and_links_to_its_relay(member_client):
    relay = make("main")
    mail = make_mail()
    delivery = actions.reserve(actions.create_delivery(mail, None), None, None)
    Delivery.objects.filter(pk=delivery.pk).update(status="running")
    ledger.pause_for_error(delivery.pk, "The relay refused the user name or password (x).")
    report = member_client.get(f"/mails/deliveries/{delivery.pk}/").content.decode()
    note = "Paused by the worker: The relay refused the user name or password (x)."
    assert note in report
    assert f'href="/mails/relays/{relay.pk}/"' in report
    detail = member_client.get(f"/mails/{mail.pk}/").content.decode()
    assert note in detail


# ---------------------------------------------------------------------------------------------
# API


def test_the_api_creates_changes_tests_and_deletes_relays(member):
    api = api_client(member)
    body = {
        "name": "provider",
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": "okuru",
        "password": SECRET,
        "max_per_second": 5,
    }
    r = api.post("/api/relays", body, content_type="application/json")
    assert r.status_code == 201
    created = r.json()
    assert created["is_default"] is True and created["has_password"] is True
    assert "password" not in created
    relay = Relay.objects.get(pk=created["id"])
    assert relay.password == SECRET

    r = api.patch(f"/api/relays/{relay.pk}", {"port": 465}, content_type="application/json")
    assert r.json()["port"] == 465
    relay.refresh_from_db()
    assert (relay.port, relay.password) == (465, SECRET)

    r = api.patch(f"/api/relays/{relay.pk}", {"is_default": False}, content_type="application/json")
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "There must be a default relay: make another relay the default instead."
    )

    listed = api.get("/api/relays")
    got = api.get(f"/api/relays/{relay.pk}")
    assert [i["name"] for i in listed.json()["items"]] == ["provider"]

    with Sink() as sink:
        spare = api.post(
            "/api/relays",
            {"name": "sink", "host": "127.0.0.1", "port": sink.port, "timeout": 5},
            content_type="application/json",
        ).json()
        assert spare["is_default"] is False
        tested = api.post(f"/api/relays/{spare['id']}/test")
    assert tested.json() == {
        "ok": True,
        "message": f"Connected to 127.0.0.1:{sink.port}. The connection is not encrypted. "
        "No message was sent.",
    }

    r = api.delete(f"/api/relays/{relay.pk}")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "“provider” is the default relay and cannot be deleted. Make another relay the "
        "default first."
    )
    assert api.delete(f"/api/relays/{spare['id']}").status_code == 204
    assert list(Relay.objects.values_list("name", flat=True)) == ["provider"]
    actions_logged = set(OperationLog.objects.values_list("action", flat=True))
    assert {"relay.create", "relay.update", "relay.test", "relay.delete"} <= actions_logged
    no_secret_anywhere(r.content, listed.content, got.content, tested.content)


def test_the_api_rejects_bad_settings_with_the_field_named(member):
    api = api_client(member)
    r = api.post(
        "/api/relays",
        {"name": "x", "host": "h.example", "security": "ssl"},
        content_type="application/json",
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "Unknown security “ssl”: use none, starttls or tls."
    assert r.json()["errors"] == {
        "security": ["Unknown security “ssl”: use none, starttls or tls."]
    }
    assert api.get("/api/relays/999").json()["detail"] == "No relay with id 999."
    assert not Relay.objects.exists()


# ---------------------------------------------------------------------------------------------
# CLI


def cli(*args: str) -> str:
    out = io.StringIO()
    call_command("relays", *args, stdout=out)
    return out.getvalue()


def test_the_cli_adds_lists_tests_and_deletes(monkeypatch, owner):
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    with Sink(users={"mailer": SECRET}, auth_require_tls=False) as sink:
        out = cli(
            "add", "sink", "--host", "127.0.0.1", "--port", str(sink.port), "--username",
            "mailer", "--password-stdin", "--max-per-second", "50", "--timeout", "5",
            "--operator", "owner",
        )  # fmt: skip
        assert out == "relay sink added (the default relay)\n"
        relay = Relay.objects.get()
        assert (relay.password, relay.max_per_second, relay.is_default) == (SECRET, 50, True)
        out = cli("test", "sink")
    assert out == (
        f"Connected to 127.0.0.1:{sink.port}. The connection is not encrypted. Logged in as "
        "mailer. No message was sent.\n"
    )
    cli("add", "spare", "--host", "10.0.0.1", "--security", "tls", "--no-verify-tls")
    listing = cli("list")
    assert listing == (
        f"sink *\t127.0.0.1:{sink.port}\tnone\tmailer\t50/s\t-\n"
        "spare\t10.0.0.1:25\ttls (no check)\t-\t-\t-\n"
    )
    cli("default", "spare")
    assert Relay.objects.get(is_default=True).name == "spare"
    assert cli("delete", "sink") == "relay sink deleted\n"
    assert list(Relay.objects.values_list("name", flat=True)) == ["spare"]
    assert OperationLog.objects.get(action="relay.create", target=f"relay:{relay.pk}").operator
    no_secret_anywhere(listing)


def test_the_cli_says_what_is_wrong():
    port = free_port()
    cli("add", "closed", "--host", "127.0.0.1", "--port", str(port), "--timeout", "5")
    with pytest.raises(CommandError) as e:
        cli("test", "closed")
    assert str(e.value).startswith(f"The connection to the relay 127.0.0.1:{port} failed: ")
    with pytest.raises(CommandError, match="^“closed” is the default relay and cannot be"):
        cli("delete", "closed")
    with pytest.raises(CommandError, match="^No such relay: nope$"):
        cli("test", "nope")
    with pytest.raises(CommandError, match="^The port must be between 1 and 65535.$"):
        cli("add", "bad", "--host", "h.example", "--port", "0")
    with pytest.raises(CommandError, match="^Give the password for the user name u.$"):
        cli("add", "bad", "--host", "h.example", "--username", "u")


def test_the_mail_api_refuses_an_unknown_relay(member):
    api = api_client(member)
    relay = make()
    body = {"name": "m", "from_address": "a@shop.example", "subject": "s", "text_body": "Hi"}
    body["relay_id"] = 999
    r = api.post("/api/mails", body, content_type="application/json")
    assert (r.status_code, r.json()["detail"]) == (400, "No relay with id 999.")
    assert not Mail.objects.exists()
    r = api.post("/api/mails", body | {"relay_id": relay.pk}, content_type="application/json")
    assert r.status_code == 201
    mail_id = r.json()["id"]
    r = api.patch(f"/api/mails/{mail_id}", {"relay_id": 998}, content_type="application/json")
    assert (r.status_code, r.json()["detail"]) == (400, "No relay with id 998.")
    assert Mail.objects.get(pk=mail_id).relay_id == relay.pk


def test_a_refused_edit_keeps_the_stored_name_in_the_heading(member_client):
    relay = make("main")
    r = member_client.post(f"/mails/relays/{relay.pk}/", form_data(name="", port="0"))
    assert r.status_code == 400
    assert "Relay “main”" in r.content.decode()
    relay.refresh_from_db()
    assert (relay.name, relay.port) == ("main", 2525)


def test_a_name_taken_at_the_same_moment_is_refused_by_the_database(monkeypatch):
    make("main")
    # The check before the insert passed (another operator had not committed yet).
    monkeypatch.setattr(relays, "validate", lambda relay: None)
    with pytest.raises(ValidationError) as e:
        relays.save_relay(Relay(name="main", host="h.example", port=25), None)
    assert e.value.message_dict == {"name": ["A relay named “main” already exists."]}
    assert Relay.objects.count() == 1
