"""The bounce SMTP receiver: aiosmtpd listening for mail to the bounce domain.

Point the return-path domain's MX at this server (``okuru bounce-smtp``; ``okuru run`` starts it
on ``BOUNCE_SMTP_PORT``). It never relays. It takes mail for every address of the domain, or,
when ``BOUNCE_SMTP_ACCEPT`` lists local parts, only for those and the return paths. Every
message it accepts is handed to ``actions.receive`` with its envelope recipients (the VERP
addresses), stored, matched and applied. A message is accepted ("250") only once it is stored;
a database failure answers "451", so the sending MTA keeps it and tries again later — nothing
is lost.

aiosmtpd runs an asyncio loop in its own thread; the ORM is synchronous, so each message is
stored from one dedicated worker thread that owns the receiver's database connection.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.db import close_old_connections, connections

from okuru.bounces import actions, verp
from okuru.bounces.models import Bounce

log = logging.getLogger(__name__)
# What a sending MTA may hand us: a DSN with the whole original attached. Only the first
# parsing.MAX_BYTES are kept and read.
DATA_SIZE_LIMIT = 10 * 1024 * 1024


def store(mail_from: str, recipients: list[str], raw: bytes) -> Bounce:
    close_old_connections()
    bounce, _new = actions.receive(
        raw, Bounce.Channel.SMTP, envelope_from=mail_from, envelope_to=recipients
    )
    return bounce


def accepts(address: str) -> bool:
    """Whether the receiver takes mail for ``address``: any, while ``BOUNCE_SMTP_ACCEPT`` is
    "*"; else a return path (``verp.shaped``) or one of its local parts (postmaster, abuse,
    feedback-loop addresses)."""
    if "*" in settings.BOUNCE_SMTP_ACCEPT:
        return True
    local = address.strip().strip("<>").rsplit("@", 1)[0]
    return verp.shaped(local) or local.lower() in settings.BOUNCE_SMTP_ACCEPT


class BounceHandler:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bounce-db")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if not accepts(address):
            return "550 5.1.1 No such mailbox: this server takes bounces and reports only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            bounce = await loop.run_in_executor(
                self.executor, store, envelope.mail_from or "", list(envelope.rcpt_tos), raw
            )
        except Exception:
            log.exception("could not store a received bounce")
            return "451 Requested action aborted: could not store the message"
        log.info("bounce %s received: %s", bounce.pk, bounce.outcome)
        return "250 Message accepted"

    def close(self) -> None:
        self.executor.submit(connections.close_all).result()
        self.executor.shutdown()


class BounceController(Controller):
    handler: BounceHandler

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert=no_assert)
        finally:
            self.handler.close()


def make_controller(host: str, port: int) -> BounceController:
    return BounceController(
        BounceHandler(),
        hostname=host,
        port=port,
        data_size_limit=DATA_SIZE_LIMIT,
        decode_data=False,  # the bytes as received
        server_hostname="okuru-bounces",
        ready_timeout=10,
    )
