"""``okuru sendworker``: a long-running sending worker (run as many as the relays can take).

SIGTERM or SIGINT ends it cleanly: the message in flight finishes, the rest of the batch goes
back to the queue, outcomes are written, the SMTP connections are closed. ``kill -9`` leaves at
most ``--group-size`` rows "unknown" (the group that was "sending"); the rest of its batch is
taken up again when the lease runs out.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from okuru.mailings.sending import Config, Worker


class Command(BaseCommand):
    help = "Send queued deliveries: claim ledger rows, render, push to the SMTP relay."

    def add_arguments(self, parser: Any) -> None:
        d = Config()
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument(
            "--group-size", type=int, default=d.group_size, help="most rows sending at once"
        )
        parser.add_argument(
            "--flush-interval", type=float, default=d.flush_interval, help="seconds"
        )
        parser.add_argument("--lease", type=float, default=d.lease, help="seconds")
        parser.add_argument("--batch-seconds", type=float, default=d.batch_seconds)
        parser.add_argument("--retry-base", type=float, default=d.retry_base)
        parser.add_argument("--idle-sleep", type=float, default=d.idle_sleep)
        parser.add_argument("--once", action="store_true", help="exit when no work is left")

    def handle(self, *args: Any, **opts: Any) -> None:
        config = Config(
            batch_size=opts["batch_size"],
            group_size=opts["group_size"],
            flush_interval=opts["flush_interval"],
            lease=opts["lease"],
            batch_seconds=opts["batch_seconds"],
            retry_base=opts["retry_base"],
            idle_sleep=opts["idle_sleep"],
        )
        worker = Worker(config)

        def on_signal(signum: int, frame: Any) -> None:
            worker.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker.run(once=opts["once"])
