"""Bounces arriving by every channel, through real servers: a DSN sent by smtplib to the built-in
SMTP receiver, an IMAP and a POP3 mailbox over TLS (local test servers) polled once and not
twice, and ``okuru bounces import`` of a file, an mbox and a directory."""

from __future__ import annotations

import io
import smtplib

import pytest
from django.core.management import CommandError, call_command

from okuru.accounts.models import OperationLog
from okuru.bounces import actions, mailboxes
from okuru.bounces.models import Bounce, Mailbox
from okuru.bounces.smtpd import make_controller
from okuru.customers.models import Customer
from okuru.mailings.models import ListCleaning, Recipient, Relay
from okuru.mailings.testing import Sink, free_port
from tests.bounces.inbound import UNRECOGNISED, deliver, dsn, return_path, row_of
from tests.bounces.mail_servers import imap_server, pop3_server

PASSWORD = 'se"cret pass'


# -- the SMTP receiver -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_dsn_sent_by_smtp_to_the_receiver_fails_the_row(sent):
    row = row_of(sent, "gone@example.com")
    port = free_port()
    controller = make_controller("127.0.0.1", port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail("", [return_path(row)], dsn(row, to="bounces@shop.example"))
        assert refused == {}
    finally:
        controller.stop()
    bounce = Bounce.objects.get()
    assert (bounce.channel, bounce.outcome, bounce.matched_by) == ("smtp", "failed", "verp")
    assert bounce.envelope_to == return_path(row)
    row.refresh_from_db()
    assert (row.status, row.error_kind) == ("failed", "unknown_user")
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99


@pytest.mark.django_db(transaction=True)
def test_the_receiver_keeps_an_unrecognised_message():
    # By default every address of the bounce domain is taken: nothing sent there is refused.
    port = free_port()
    controller = make_controller("127.0.0.1", port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail(
                "someone@example.org", ["anyone-at-all@bounce.shop.example"], UNRECOGNISED
            )
        assert refused == {}
    finally:
        controller.stop()
    bounce = Bounce.objects.get()
    assert bounce.outcome == "unparsed" and b"nothing about any delivery." in bytes(bounce.raw)


# -- the hard bounce keeps the address out of the next delivery ---------------------------------


def test_a_hard_bounce_excludes_the_address_from_the_next_delivery_with_99(sent):
    row = row_of(sent, "gone@example.com")
    actions.receive(dsn(row), "file")
    assert ListCleaning.objects.filter(address="gone@example.com").exists()
    # The customer's count is reset (an operator's edit): list cleaning still holds.
    Customer.objects.filter(email="gone@example.com").update(email_error_count=0)
    with Sink() as sink:
        Relay.objects.update(port=sink.port)
        second = deliver(name="second")
        assert "gone@example.com" not in sink.received
        assert set(sink.received) == {"full@example.com", "fine@example.com"}
    again = row_of(second, "gone@example.com")
    assert (again.status, again.error_kind, again.attempts) == ("failed", "list_cleaning", 0)
    assert Customer.objects.get(email="gone@example.com").email_error_count == 99
    assert second.failed_count == 1


# -- mailboxes --------------------------------------------------------------------------------


def make_mailbox(protocol: str, port: int, **kw) -> Mailbox:
    mailbox = Mailbox(
        name=f"{protocol} box",
        protocol=protocol,
        host="127.0.0.1",
        port=port,
        security="tls",
        username="bounces",
        verify_tls=False,
        **kw,
    )
    return actions.save_mailbox(None, mailbox, PASSWORD)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_mailbox_is_polled_once_and_not_twice(sent, server_context, protocol):
    row = row_of(sent, "gone@example.com")
    make = imap_server if protocol == "imap" else pop3_server
    with make(server_context, "bounces", PASSWORD) as server:
        server.add(dsn(row))
        server.add(UNRECOGNISED)
        mailbox = make_mailbox(protocol, server.port)
        assert mailboxes.test(mailbox) == 2
        first = mailboxes.poll(mailbox)
        assert (first.fetched, first.new, first.deleted) == (2, 2, 2)
        assert server.messages == {}  # deleted after storing
        # The same message again (a copy left behind, a second mailbox): stored once.
        server.add(dsn(row))
        second = mailboxes.poll(mailbox)
        assert (second.fetched, second.new) == (1, 0)
        assert mailboxes.poll(mailbox).fetched == 0
    assert sorted(Bounce.objects.values_list("channel", "outcome")) == [
        (protocol, "failed"),
        (protocol, "unparsed"),
    ]
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99
    mailbox.refresh_from_db()
    assert mailbox.last_polled_at is not None and mailbox.last_error == ""
    # The password never shows in what the server was told except in the login itself.
    assert not any(PASSWORD in c for c in server.commands if not c.upper().startswith(("A", "P")))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_wrong_password_is_told_without_the_password(sent, server_context, protocol):
    make = imap_server if protocol == "imap" else pop3_server
    with make(server_context, "bounces", "other") as server:
        mailbox = make_mailbox(protocol, server.port)
        with pytest.raises(mailboxes.MailboxError) as e:
            mailboxes.poll(mailbox)
    assert "refused the user name or password" in str(e.value)
    assert PASSWORD not in str(e.value)
    mailbox.refresh_from_db()
    assert "refused the user name or password" in mailbox.last_error


def test_a_self_signed_certificate_is_refused_when_verified(sent, server_context):
    with imap_server(server_context, "bounces", PASSWORD) as server:
        mailbox = make_mailbox("imap", server.port)
        Mailbox.objects.filter(pk=mailbox.pk).update(verify_tls=True)
        mailbox.refresh_from_db()
        with pytest.raises(mailboxes.MailboxError, match="could not be verified"):
            mailboxes.poll(mailbox)


def test_the_mailbox_commands_never_show_the_password(sent, server_context, monkeypatch):
    with imap_server(server_context, "bounces", PASSWORD) as server:
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        out = io.StringIO()
        call_command(
            "bounces", "mailbox", "add", "box", "--protocol", "imap", "--host", "127.0.0.1",
            "--port", str(server.port), "--username", "bounces", "--no-verify-tls",
            "--password-stdin", stdout=out,
        )  # fmt: skip
        call_command("bounces", "mailbox", "list", stdout=out)
        call_command("bounces", "mailbox", "test", "box", stdout=out)
        call_command("bounces", "mailbox", "poll", "box", stdout=out)
        call_command("bounces", "mailbox", "delete", "box", stdout=out)
    text = out.getvalue()
    assert "mailbox box added" in text and "box: logged in, 0 messages waiting" in text
    assert PASSWORD not in text
    logged = list(OperationLog.objects.order_by("id").values_list("action", "detail"))
    assert [a for a, _d in logged if a.startswith("mailbox.")] == [
        "mailbox.create",
        "mailbox.test",
        "mailbox.delete",
    ]
    assert PASSWORD not in str(logged)
    with pytest.raises(CommandError, match="No such mailbox: box"):
        call_command("bounces", "mailbox", "test", "box")


# -- okuru bounces import -----------------------------------------------------------------------


def test_import_reads_a_file_an_mbox_and_a_directory_once(sent, tmp_path):
    gone, full = row_of(sent, "gone@example.com"), row_of(sent, "full@example.com")
    single = tmp_path / "one.eml"
    single.write_bytes(dsn(gone))
    box = tmp_path / "box.mbox"
    box.write_bytes(
        b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n"
        + dsn(full, "5.2.2", diagnostic="552 5.2.2 Mailbox full").replace(b"\r\n", b"\n")
        + b"\nFrom someone Mon Jan  1 00:00:00 2024\n"
        + UNRECOGNISED
    )
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.eml").write_bytes(dsn(gone))  # the same message as one.eml
    out = io.StringIO()
    call_command("bounces", "import", str(single), str(box), str(folder), stdout=out)
    text = out.getvalue()
    assert f"{single}\tfailed" in text and f"{box}#1\tfailed" in text
    assert f"{box}#2\tunparsed" in text and f"{folder / 'a.eml'}\tduplicate" in text
    assert "4 messages, 3 new" in text
    assert Recipient.objects.get(pk=full.pk).error_kind == "mailbox_full"
    assert Bounce.objects.count() == 3
    entry = OperationLog.objects.get(action="bounce.import")
    assert entry.detail == {"count": 4, "inserted": 3}
    with pytest.raises(CommandError, match="No such file"):
        call_command("bounces", "import", str(tmp_path / "missing"))


@pytest.mark.django_db(transaction=True)
def test_the_receiver_refuses_mail_for_made_up_addresses_when_told_which_it_takes(sent, settings):
    # An internet-facing receiver can be told its addresses, so that spam to invented ones
    # does not fill the queue kept for a human.
    settings.BOUNCE_SMTP_ACCEPT = ["postmaster", "abuse", "fbl"]
    row = row_of(sent, "gone@example.com")
    forged = return_path(row).replace("bounce+", "bounce+0", 1)  # shaped, signature wrong
    port = free_port()
    controller = make_controller("127.0.0.1", port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("spam@example.net", ["sales@bounce.shop.example"], UNRECOGNISED)
            code, text = refused.value.recipients["sales@bounce.shop.example"]
            assert code == 550 and b"5.1.1" in text
            # One good recipient is enough for the message to be taken, for it alone.
            refused = client.sendmail(
                "", ["nobody@bounce.shop.example", "Postmaster@bounce.shop.example"], UNRECOGNISED
            )
            assert set(refused) == {"nobody@bounce.shop.example"}
            # A return path whose signature does not check is still taken in (signed before a
            # SECRET_KEY rotation, say); matching, not the receiver, decides what it names.
            other = UNRECOGNISED.replace(b"<hello-1@", b"<hello-2@")  # not a duplicate
            assert client.sendmail("", [forged], other) == {}
    finally:
        controller.stop()
    kept = list(Bounce.objects.order_by("id"))
    assert [b.envelope_to for b in kept] == ["Postmaster@bounce.shop.example", forged]
    assert [b.outcome for b in kept] == ["unparsed", "unparsed"]
    row.refresh_from_db()
    assert row.status == "sent"  # the forged return path failed nothing
