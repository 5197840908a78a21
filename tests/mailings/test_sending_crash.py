"""Crash safety with real worker processes (``manage.py sendworker``) and a real SMTP sink.

The test database is shared with the worker processes: on PostgreSQL they connect to the test
database itself; on SQLite the seeded in-memory test database is copied to a file
(``VACUUM INTO``) that the workers use, and the outcome is read back from that file.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from okuru.mailings.sending import Config
from okuru.mailings.testing import Sink, make_customers, make_mail, make_relay, start

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
BATCH = 50
GROUP = Config().group_size  # the product's bound on rows "sending" at once per worker
WORKER_ARGS = [
    "--lease", "2", "--batch-size", str(BATCH), "--group-size", str(GROUP),
    "--batch-seconds", "0.5", "--idle-sleep", "0.05", "--retry-base", "0.05",
]  # fmt: skip


class SharedDB:
    """The database as the worker processes see it, and SQL against it from the test."""

    def __init__(self, tmp_path: Path):
        self.env = dict(os.environ)
        self.env.pop("PYTEST_VERSION", None)
        if connection.vendor == "postgresql":
            s = settings.DATABASES["default"]
            self.env["DATABASE_URL"] = (
                f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"
            )
            self.file = None
        else:
            self.file = tmp_path / "shared.sqlite3"
            with connection.cursor() as cur:
                cur.execute(f"VACUUM INTO '{self.file}'")
            self.env["DATABASE_URL"] = f"sqlite:///{self.file}"

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.file is None:
            with connection.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall()
        db = sqlite3.connect(self.file, timeout=30)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def status(self, delivery_id: int) -> str:
        return self.rows("SELECT status FROM mailings_delivery WHERE id = ?", (delivery_id,))[0][0]

    def ledger(self, delivery_id: int) -> dict[str, int]:
        return dict(
            self.rows(
                "SELECT status, COUNT(*) FROM mailings_recipient WHERE delivery_id = ? "
                "GROUP BY status",
                (delivery_id,),
            )
        )

    def worker(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "sendworker", *WORKER_ARGS, *extra],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def wait_until(condition, timeout: float, what: str, procs=()) -> None:
    until = time.monotonic() + timeout
    while not condition():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"worker exited ({p.returncode}): {p.stderr.read()[-2000:]}")
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed(sink: Sink, n: int) -> int:
    make_relay(sink.port, timeout=5)
    make_customers(n)
    return start(make_mail()).pk


@pytest.mark.slow
def test_kill_9_at_random_moments_never_sends_twice_and_the_delivery_completes(tmp_path):
    n, kills = 10_000, 10
    with Sink() as sink:
        delivery_id = seed(sink, n)
        db = SharedDB(tmp_path)
        rng = random.Random()
        for _ in range(kills):
            proc = db.worker()
            target = sink.received.total() + rng.randint(20, 400)
            wait_until(lambda t=target: sink.received.total() >= t, 60, "messages", [proc])
            time.sleep(rng.uniform(0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert sink.received.total() < n, "the delivery finished before the last kill"
        proc = db.worker()
        wait_until(lambda: db.status(delivery_id) == "completed", 180, "completion", [proc])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

        ledger = db.ledger(delivery_id)
        assert set(ledger) <= {"sent", "unknown"}
        assert ledger["sent"] + ledger.get("unknown", 0) == n
        # At most the group in flight per kill: the claim token starts with the worker's id.
        per_kill = [c for (_w, c) in db.rows(
            "SELECT substr(claim, 1, 12), COUNT(*) FROM mailings_recipient "
            "WHERE delivery_id = ? AND status = 'unknown' GROUP BY 1",
            (delivery_id,),
        )]  # fmt: skip
        assert len(per_kill) <= kills and all(c <= GROUP for c in per_kill)
        assert ledger.get("unknown", 0) <= kills * GROUP
        # Exactly one message per sent row; at most one per unknown row; none twice.
        assert max(sink.received.values()) == 1
        sent = {a for (a,) in db.rows(
            "SELECT address FROM mailings_recipient WHERE delivery_id = ? AND status = 'sent'",
            (delivery_id,),
        )}  # fmt: skip
        assert all(sink.received[a] == 1 for a in sent)
        print(
            f"kill test: {ledger}, unknown per kill {sorted(per_kill)} (bound {GROUP}), "
            f"messages received {sink.received.total()}"
        )


def test_a_stop_while_a_worker_sends_leaves_nothing_queued_and_sends_nothing_twice(tmp_path):
    # A relay taking 10 ms a message: the stop command (a new process) must arrive mid-send even
    # on a loaded machine, where a fast sink let the worker finish all 3,000 first.
    with Sink(delay=0.01) as sink:
        delivery_id = seed(sink, 3000)
        db = SharedDB(tmp_path)
        proc = db.worker()
        try:
            wait_until(lambda: sink.received.total() >= 200, 60, "messages", [proc])
            stop = subprocess.run(
                [sys.executable, "manage.py", "deliveries", "stop", str(delivery_id)],
                cwd=ROOT, env=db.env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert stop.returncode == 0, stop.stderr
            at_stop = sink.received.total()
            wait_until(lambda: "sending" not in db.ledger(delivery_id), 30, "the group", [proc])
            time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        ledger = db.ledger(delivery_id)
        assert db.status(delivery_id) == "stopped"
        assert set(ledger) == {"sent", "stopped"} and sum(ledger.values()) == 3000
        assert ledger["sent"] == sink.received.total() and max(sink.received.values()) == 1
        # After the stop committed, at most the group on the wire went out.
        assert sink.received.total() - at_stop <= GROUP


def test_sigterm_gives_the_batch_back_and_exits_cleanly(tmp_path):
    with Sink() as sink:
        delivery_id = seed(sink, 2000)
        db = SharedDB(tmp_path)
        proc = db.worker("--batch-seconds", "30")
        wait_until(lambda: sink.received.total() >= 100, 60, "messages", [proc])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        ledger = db.ledger(delivery_id)
        assert "sending" not in ledger and "unknown" not in ledger
        assert ledger["sent"] == sink.received.total() and ledger["queued"] == 2000 - ledger["sent"]


def test_two_workers_on_one_delivery_send_each_message_once(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL (SQLite has a single writer)")
    n = 3000
    with Sink() as sink:
        delivery_id = seed(sink, n)
        db = SharedDB(tmp_path)
        procs = [db.worker(), db.worker(), db.worker()]
        try:
            wait_until(lambda: db.status(delivery_id) == "completed", 120, "completion", procs)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
        assert db.ledger(delivery_id) == {"sent": n}
        assert sink.received.total() == n and max(sink.received.values()) == 1
        claims = db.rows(
            "SELECT COUNT(DISTINCT substr(claim, 1, 12)) FROM mailings_recipient "
            "WHERE delivery_id = ?",
            (delivery_id,),
        )[0][0]
        assert claims >= 2, "only one worker did all the work"
