"""``okuru bounce-smtp``: run only the bounce SMTP receiver (``okuru run`` starts it too)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from okuru.bounces.smtpd import make_controller
from okuru.lib.servers import serve_smtp


class Command(BaseCommand):
    help = "Receive bounces by SMTP (point the return-path domain's MX here)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.BOUNCE_SMTP_HOST)
        parser.add_argument("--port", type=int, default=settings.BOUNCE_SMTP_PORT)

    def handle(self, *args, host: str, port: int, **options) -> None:
        serve_smtp(make_controller, host, port, "bounce SMTP receiver", self._say)

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
