"""``okuru bounce-smtp``: run only the bounce SMTP receiver (``okuru run`` starts it too)."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from okuru.accounts.management.commands.run import check_port_free
from okuru.bounces.smtpd import make_controller

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Command(BaseCommand):
    help = "Receive bounces by SMTP (point the return-path domain's MX here)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.BOUNCE_SMTP_HOST)
        parser.add_argument("--port", type=int, default=settings.BOUNCE_SMTP_PORT)

    def handle(self, *args, host: str, port: int, **options) -> None:
        # aiosmtpd reports a port in use only after its 10 s ready timeout: check first.
        check_port_free(host, port, "bounce SMTP receiver")
        controller = make_controller(host, port)
        controller.start()
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
        self.stdout.write(f"bounce SMTP receiver listening on {host}:{port}", self.style.SUCCESS)
        self.stdout.flush()
        try:
            stop.wait()
        finally:
            controller.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("bounce SMTP receiver stopped")
