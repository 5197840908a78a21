"""Test helpers for sending: a real SMTP sink that can misbehave on purpose, and a quick way to
make a mail, a relay and customers. Used by the tests and by anyone writing mail tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from django.utils import timezone

from okuru.customers.models import Customer
from okuru.lib import smtp
from okuru.mailings import actions, ledger
from okuru.mailings.models import Delivery, Mail, Relay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SinkHandler:
    """Accepts everything unless told otherwise.

    ``rules[address]`` is a list of actions used one per attempt, in order; after the list runs
    out the address is accepted. An action is a reply ("451 4.3.0 Try later", "550 5.1.1 No
    such user") given at RCPT, "data:" and a reply given at the end of the message instead (a
    content filter's answer), "drop" (close the connection at RCPT, before any data), or
    "drop-after-data" (take the message, then close without replying)."""

    def __init__(self, pipelining: bool = True, delay: float = 0.0) -> None:
        self.pipelining = pipelining
        self.delay = delay  # seconds per message: a slow relay, so a test can act mid-send
        self.lock = threading.Lock()
        self.rules: dict[str, list[str]] = {}
        self.messages: list[tuple[str, str, bytes]] = []
        self.received: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        # Per message: was the session encrypted, and who logged in (None: nobody).
        self.sessions: list[tuple[bool, str | None]] = []
        self.mechanisms: list[str] = []  # AUTH mechanisms clients used, successful or not

    def _next(self, address: str) -> str:
        with self.lock:
            self.attempts[address] += 1
            actions = self.rules.get(address)
            return actions.pop(0) if actions else ""

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads commands in order, so it can take pipelining
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        action = self._next(address)
        if action == "drop":
            server.transport.close()
            return "421 4.4.2 Closing"
        if action == "drop-after-data":
            envelope.drop_after_data = True
        elif action.startswith("data:"):
            envelope.data_reply = action.removeprefix("data:")
        elif action:
            return action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        login = session.auth_data.login.decode() if session.authenticated else None
        # Implicit TLS or after STARTTLS: either way the transport is an SSL one.
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        data_reply = getattr(envelope, "data_reply", "")
        if data_reply:
            return data_reply
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append((envelope.mail_from, rcpt, envelope.original_content))
                self.received[rcpt] += 1
                self.sessions.append((encrypted, login))
        if getattr(envelope, "drop_after_data", False):
            server.transport.close()
            return "421 4.4.2 Closing"
        return "250 2.0.0 OK queued"

    def parsed(self, i: int = -1) -> EmailMessage:
        return message_from_bytes(self.messages[i][2], policy=policy.default)  # type: ignore[return-value]


class Sink:
    """An aiosmtpd server on a free port in this process.

    ``server`` passes on to aiosmtpd: ``ssl_context`` (implicit TLS), ``tls_context`` and
    ``require_starttls`` (STARTTLS), ``auth_exclude_mechanism``, ``auth_require_tls``. With
    ``users`` ({login: password}) the sink offers AUTH (PLAIN and LOGIN) and checks them."""

    def __init__(
        self,
        pipelining: bool = True,
        users: dict[str, str] | None = None,
        delay: float = 0.0,
        **server: Any,
    ) -> None:
        self.handler = SinkHandler(pipelining, delay)
        self.port = free_port()
        if users is not None:
            server["authenticator"] = self._authenticator(users)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **server)

    def _authenticator(self, users: dict[str, str]) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
            self.handler.mechanisms.append(mechanism)
            ok = (
                isinstance(auth_data, LoginPassword)
                and users.get(auth_data.login.decode()) == auth_data.password.decode()
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        return authenticate

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    @property
    def received(self) -> Counter[str]:
        return self.handler.received

    def wait_for(self, n: int, timeout: float = 10) -> None:
        until = time.monotonic() + timeout
        while len(self.handler.messages) < n and time.monotonic() < until:
            time.sleep(0.01)


class Watched(smtp.Connection):
    """An SMTP connection that calls ``before(recipient)`` before each message (tests use it to
    crash, stop or pause a worker at a chosen moment)."""

    def __init__(self, relay: smtp.RelaySettings, before: Any) -> None:
        super().__init__(relay)
        self.before = before

    def send(self, sender: str, recipient: str, data: bytes) -> smtp.Reply:
        self.before(recipient)
        return super().send(sender, recipient, data)


def make_relay(port: int, **kwargs: Any) -> Any:
    return Relay.objects.create(
        name=kwargs.pop("name", f"sink-{port}"),
        host="127.0.0.1",
        port=port,
        is_default=kwargs.pop("is_default", True),
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def make_customers(n: int, domain: str = "example.com", **fields: Any) -> None:
    batch = 2000
    for start in range(0, n, batch):
        Customer.objects.bulk_create(
            [
                Customer(email=f"user{i}@{domain}", **fields)
                for i in range(start, min(n, start + batch))
            ]
        )


def make_mail(**kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "name": "Spring sale",
        "from_address": "news@shop.example",
        "from_name": "Shop",
        "subject": "Hello {{ customer_id }}",
        "text_body": "Hi {{ email }}\nhttps://shop.example/sale\n",
        "html_body": '<p>Hi {{ email }}</p><a href="https://shop.example/sale">Sale</a>',
        "return_path_domain": "bounce.shop.example",
    }
    values.update(kwargs)
    return actions.save_mail(Mail(**values), None)


def start(mail: Any) -> Any:
    """Create, reserve and freeze a delivery of ``mail`` now (no task kick)."""
    delivery = actions.create_delivery(mail, None)
    # Reserve for later, then make it due: "send now" would kick a task on commit, and tests
    # drive the worker themselves.
    actions.reserve(delivery, None, timezone.now() + timedelta(days=1))
    Delivery.objects.filter(pk=delivery.pk).update(scheduled_at=timezone.now())
    assert ledger.start_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def drain(worker: Any, delivery: Any, timeout: float = 60) -> None:
    """Run the worker until the delivery leaves "running" (retries included)."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = worker.step()
        delivery.refresh_from_db(fields=["status"])
        if delivery.status != "running":
            return
        if not found:
            time.sleep(0.02)
    raise AssertionError(f"delivery {delivery.pk} still running after {timeout}s")
