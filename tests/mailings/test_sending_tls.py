"""TLS and AUTH against a real SMTP server (aiosmtpd in this process) with a self-signed
certificate made for the test run by the ``openssl`` command.

A relay verifies the certificate by default (``Relay.verify_tls``): a self-signed one is refused
and the delivery pauses with a message saying what to change; with verification off, or with
the certificate trusted, the same relay works."""

from __future__ import annotations

import ssl

import pytest
from django.core.exceptions import ValidationError

from okuru.lib import smtp
from okuru.mailings import actions, sending
from okuru.mailings.models import Recipient, Relay
from okuru.mailings.testing import Sink, drain, make_customers, make_mail, make_relay, start

pytestmark = pytest.mark.django_db

FAST = dict(batch_size=20, retry_base=0.01, retry_max=0.05, idle_sleep=0.01)


def sink_for(security: str, ctx: ssl.SSLContext, **kw) -> Sink:
    if security == "tls":  # aiosmtpd counts only STARTTLS as TLS for AUTH
        return Sink(ssl_context=ctx, auth_require_tls=False, **kw)
    return Sink(tls_context=ctx, require_starttls=True, **kw)


def worker() -> sending.Worker:
    return sending.Worker(sending.Config(**FAST))


def self_signed_message(port: int) -> str:
    return (
        f"The relay's TLS certificate could not be verified (127.0.0.1:{port}: self-signed "
        "certificate). Give the relay a certificate for its name from a trusted authority, or "
        "turn off certificate verification for this relay."
    )


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_it_sends_over_tls_to_a_relay_whose_check_is_off(server_context, security):
    with sink_for(security, server_context) as sink:
        make_relay(sink.port, security=security, verify_tls=False)
        make_customers(3)
        delivery = start(make_mail())
        drain(worker(), delivery)
        delivery.refresh_from_db()
        assert delivery.status == "completed" and delivery.sent_count == 3
        assert sink.received.total() == 3
        assert sink.handler.sessions == [(True, None)] * 3  # every message went encrypted


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_self_signed_certificate_is_refused_and_the_delivery_pauses_until_fixed(
    server_context, security
):
    with sink_for(security, server_context) as sink:
        relay = make_relay(sink.port, security=security)
        assert relay.verify_tls is True  # the default
        make_customers(3)
        delivery = start(make_mail())
        w = worker()
        assert w.step() is True
        delivery.refresh_from_db()
        message = self_signed_message(sink.port)
        assert delivery.status == "paused"
        assert delivery.note == f"Paused by the worker: {message}"
        rows = list(Recipient.objects.filter(delivery=delivery).order_by("id"))
        # Nothing went out and nothing counts as an attempt: the rows wait for the operator.
        assert [(r.status, r.attempts) for r in rows] == [("queued", 0)] * 3
        assert rows[0].note == message
        assert sink.received.total() == 0

        Relay.objects.filter(pk=relay.pk).update(verify_tls=False)
        actions.resume(delivery, None)
        drain(w, delivery)
        w.close()  # else the sink waits for the TLS goodbye of the idle connection
        delivery.refresh_from_db()
        assert delivery.status == "completed" and delivery.sent_count == 3
        assert sink.received.total() == 3


def test_a_trusted_certificate_passes_the_check(server_context, certificate, monkeypatch):
    # The system's trust store, as OpenSSL reads it, now holds the test certificate.
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    with sink_for("starttls", server_context) as sink:
        make_relay(sink.port, security="starttls")
        make_customers(2)
        delivery = start(make_mail())
        drain(worker(), delivery)
        delivery.refresh_from_db()
        assert delivery.status == "completed" and sink.received.total() == 2


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_it_logs_in_with_auth_plain_and_login(server_context, mechanism):
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    users = {"mailer": "s3cret pass"}
    with sink_for("starttls", server_context, users=users, auth_exclude_mechanism=[other]) as sink:
        make_relay(
            sink.port,
            security="starttls",
            verify_tls=False,
            username="mailer",
            password="s3cret pass",
        )
        make_customers(2)
        delivery = start(make_mail())
        drain(worker(), delivery)
        delivery.refresh_from_db()
        assert delivery.status == "completed" and sink.received.total() == 2
        assert sink.handler.mechanisms == [mechanism]  # one login for the whole delivery
        assert sink.handler.sessions == [(True, "mailer")] * 2


def test_a_refused_password_pauses_the_delivery_with_the_reason(server_context):
    with sink_for("tls", server_context, users={"mailer": "right"}) as sink:
        make_relay(sink.port, security="tls", verify_tls=False, username="mailer", password="x")
        make_customers(2)
        delivery = start(make_mail())
        worker().step()
        delivery.refresh_from_db()
        assert delivery.status == "paused"
        assert delivery.note == (
            f"Paused by the worker: The relay refused the user name or password "
            f"(127.0.0.1:{sink.port}: 535 5.7.8 Authentication credentials invalid). "
            "Correct them in the relay's settings."
        )
        assert set(
            Recipient.objects.filter(delivery=delivery).values_list("status", "attempts")
        ) == {("queued", 0)}
        assert sink.received.total() == 0


def test_a_relay_without_starttls_is_not_used_in_clear(db):
    with Sink() as sink:  # no TLS at all
        make_relay(sink.port, security="starttls")
        make_customers(1)
        delivery = start(make_mail())
        worker().step()
        delivery.refresh_from_db()
        assert delivery.status == "paused"
        assert delivery.note == (
            f"Paused by the worker: The relay does not offer STARTTLS (127.0.0.1:{sink.port} "
            "does not offer STARTTLS). Change the relay's security setting."
        )
        assert sink.received.total() == 0


def test_a_test_send_reports_the_certificate_problem(server_context):
    with sink_for("starttls", server_context) as sink:
        relay = make_relay(sink.port, security="starttls")
        mail = make_mail()
        with pytest.raises(ValidationError) as e:
            actions.send_test_message(mail, ["me@example.com"], None)
        assert e.value.messages == [self_signed_message(sink.port)]
        Relay.objects.filter(pk=relay.pk).update(verify_tls=False)
        assert actions.send_test_message(mail, ["me@example.com"], None) == 1
        assert sink.received == {"me@example.com": 1}


def test_the_connection_checks_the_certificate_only_when_asked(server_context):
    with sink_for("tls", server_context) as sink:
        checked = smtp.Connection(smtp.RelaySettings("127.0.0.1", sink.port, security="tls"))
        with pytest.raises(smtp.RelayRejected) as e:
            checked.open()
        assert e.value.problem == "certificate"
        unchecked = smtp.Connection(
            smtp.RelaySettings("127.0.0.1", sink.port, security="tls", verify_tls=False)
        )
        assert unchecked.send(
            "a@shop.example", "b@example.com", b"Subject: x\r\n\r\nhi\r\n"
        ).accepted
        unchecked.close()
