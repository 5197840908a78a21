"""``okuru trackingworker``: apply the opens and clicks the endpoints noted (the inbox, see
``okuru.tracking.recording``) to the events and counters, five times a second.

Often and little rather than once a second and more: on SQLite a drain holds the endpoints'
inserts up while it writes, and short drains spread evenly kept their p99 lower under load.

``okuru run`` starts one. When scaling out, run one beside the web servers (more are safe:
drains take turns). SIGTERM or SIGINT ends it after the batch in hand, which is either applied
whole or left whole in the inbox.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from okuru.tracking import recording

log = logging.getLogger(__name__)
INTERVAL = 0.2  # seconds


class Drainer:
    def __init__(self, interval: float = INTERVAL, batch: int | None = None):
        self.interval = interval
        self.batch = batch
        self.stopping = threading.Event()

    def step(self) -> bool:
        """Drain one batch; True when it was full (more may be waiting, so go on at once)."""
        if not connection.in_atomic_block:  # (tests run the step inside their transaction)
            close_old_connections()  # a broken connection (database restart) is replaced here
        try:
            batch = self.batch or recording.batch_size()
            taken = recording.drain_batch(batch) if recording.pending() else 0
        except Exception:
            # The batch rolled back and stays in the inbox; try again after the interval
            # rather than in a tight loop.
            log.exception("could not apply tracked opens and clicks")
            return False
        return taken >= batch

    def run(self, once: bool = False) -> None:
        while not self.stopping.is_set():
            if self.step():
                recording.pause()
                continue
            if once:
                return
            self.stopping.wait(self.interval)


class Command(BaseCommand):
    help = "Apply recorded opens and clicks to the delivery counts and events, continuously."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--interval", type=float, default=INTERVAL, help="seconds between drains"
        )
        parser.add_argument("--batch", type=int, help="hits per transaction")
        parser.add_argument("--once", action="store_true", help="exit when the inbox is empty")

    def handle(self, *args: Any, **opts: Any) -> None:
        drainer = Drainer(opts["interval"], opts["batch"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: drainer.stopping.set())
        drainer.run(once=opts["once"])
