"""The capture SMTP server: aiosmtpd on loopback, storing every message it accepts.

aiosmtpd runs an asyncio loop in its own thread; the ORM is synchronous, so each message is
stored from one dedicated worker thread, which owns the server's one database connection and
closes it when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.db import close_old_connections, connections

from okuru.capture.models import MAX_MESSAGE_BYTES, CapturedMessage

log = logging.getLogger(__name__)


def store(mail_from: str, recipients: list[str], raw: bytes) -> CapturedMessage:
    # A long-running server: drop a connection that the database closed or that is too old.
    close_old_connections()
    return CapturedMessage.capture(mail_from, recipients, raw)


class CaptureHandler:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-db")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            message = await loop.run_in_executor(
                self.executor, store, envelope.mail_from or "", list(envelope.rcpt_tos), raw
            )
        except Exception:
            # A temporary failure: the sender keeps the message and may retry.
            log.exception("could not store a captured message")
            return "451 Requested action aborted: could not store the message"
        log.info("captured message %s for %s", message.pk, ", ".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def close(self) -> None:
        self.executor.submit(connections.close_all).result()
        self.executor.shutdown()


class CaptureController(Controller):
    handler: CaptureHandler

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert=no_assert)
        finally:
            self.handler.close()


def make_controller(host: str, port: int) -> CaptureController:
    return CaptureController(
        CaptureHandler(),
        hostname=host,
        port=port,
        data_size_limit=MAX_MESSAGE_BYTES,
        # Keep the bytes as received (no decoding), so "raw" is exactly what the sender sent.
        decode_data=False,
        server_hostname="okuru-capture",
        ready_timeout=10,
    )
