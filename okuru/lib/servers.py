"""Small servers run as commands: the port check before binding, and running an aiosmtpd
controller until SIGINT or SIGTERM (``okuru capture-smtp``, ``okuru bounce-smtp``)."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise CommandError(
                f"Cannot use {host}:{port} for the {what}: {e.strerror}. "
                "Stop what uses it or choose another port."
            ) from None


def serve_smtp(
    make_controller: Callable[[str, int], Any],
    host: str,
    port: int,
    what: str,
    say: Callable[[str], None],
) -> None:
    """Run an aiosmtpd controller on ``host:port`` until SIGINT or SIGTERM."""
    # aiosmtpd reports a port in use only after its 10 s ready timeout: check first.
    check_port_free(host, port, what)
    controller = make_controller(host, port)
    controller.start()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    say(f"{what} listening on {host}:{port}")
    try:
        stop.wait()
    finally:
        controller.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"{what} stopped")
