"""``okuru capture-smtp``: run only the capture SMTP server (``okuru run`` starts it too)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from okuru.capture.smtp import make_controller
from okuru.lib.servers import serve_smtp


class Command(BaseCommand):
    help = "Run the local capture SMTP server; the messages it receives show in the web UI."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.CAPTURE_SMTP_PORT)

    def handle(self, *args, host: str, port: int, **options) -> None:
        serve_smtp(make_controller, host, port, "capture SMTP server", self._say)

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
