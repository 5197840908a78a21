"""Log-in limits under concurrency, against a real server: gunicorn started as ``okuru run``
starts it (several processes, several threads each), with bursts of parallel guesses fired
from threads and from separate processes. A counting password hasher
(``tests.accounts.counting_hasher``) counts the password checks the server really made.

The database is shared with the server: on PostgreSQL it connects to the test database; on
SQLite the seeded in-memory test database is copied to a file (``VACUUM INTO``) that the server
uses, and the outcome is read back from that file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from okuru.accounts.management.commands import run
from tests.accounts import loginburst
from tests.accounts.counting_hasher import checks
from tests.conftest import PASSWORD, make_operator

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
BURSTS = 5
BURST_SIZE = 40


class Server:
    """gunicorn on the test database, with the counting hasher."""

    def __init__(self, tmp_path: Path, **env: str):
        self.check_log = str(tmp_path / "checks.log")
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "DATABASE_URL")
        }
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
        self.env.update(
            DJANGO_SETTINGS_MODULE="tests.accounts.server_settings",
            OKURU_DATA_DIR=str(tmp_path),
            OKURU_TEST_CHECK_LOG=self.check_log,
            # Connections are not kept: the test database must be droppable at the end.
            CONN_MAX_AGE="0",
            **env,
        )
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = run.children_for("127.0.0.1", port, web_workers=2, threads=4, capture=False)[0].argv
        self.log = open(tmp_path / "gunicorn.log", "w+")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise AssertionError(f"gunicorn did not start:\n{self.log.read()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def checks(self) -> int:
        return checks(self.check_log)

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

    def lock_of(self, username: str) -> datetime | None:
        (value,) = self.rows(
            "SELECT locked_until FROM accounts_operator WHERE username = ?", (username,)
        )[0]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
            if timezone.is_naive(value):
                value = timezone.make_aware(value, timezone.UTC)
        return value

    def from_processes(self, attempts: list[tuple[str, str]], processes: int) -> list[str]:
        """The attempts split over ``processes`` separate client processes, fired together."""
        start_at = time.time() + 2.0
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.accounts.loginburst",
                    self.url,
                    str(start_at),
                    *(f"{u}:{p}" for u, p in attempts[i::processes]),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i in range(processes)
        ]
        outcomes = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            outcomes += json.loads(out)
        return outcomes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_for(tmp_path):
    started = []

    def start(**env: str) -> Server:
        started.append(Server(tmp_path, **env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def wrong_guesses(username: str, n: int = BURST_SIZE) -> list[tuple[str, str]]:
    return [(username, f"wrong guess {i}") for i in range(n)]


def assert_held(server: Server, username: str, outcomes: list[str], checks_before: int) -> None:
    assert set(outcomes) <= {"wrong", "locked"}, outcomes
    assert server.checks() <= max(checks_before, settings.LOGIN_MAX_FAILURES)
    locked_until = server.lock_of(username)
    assert locked_until is not None and locked_until > timezone.now()
    # The right password, now, is refused without a check: the account is locked.
    before = server.checks()
    assert loginburst.attempt(server.url, username, PASSWORD) == "locked"
    assert server.checks() == before


@pytest.mark.parametrize("clients", ["threads", "processes"])
def test_parallel_wrong_passwords_get_at_most_the_limit_of_checks(server_for, clients):
    make_operator("victim", ["customers_read"])
    # The per-source limit would stop these bursts first (they all come from 127.0.0.1):
    # here it is out of the way, so that the per-account limit alone is what holds.
    server = server_for(LOGIN_IP_MAX_FAILURES="100000")

    for _ in range(BURSTS):
        before = server.checks()
        if clients == "threads":
            outcomes = loginburst.burst(server.url, wrong_guesses("victim"))
        else:
            outcomes = server.from_processes(wrong_guesses("victim"), processes=4)
        assert len(outcomes) == BURST_SIZE
        assert_held(server, "victim", outcomes, before)

    assert server.checks() == settings.LOGIN_MAX_FAILURES
    assert outcomes.count("locked") == BURST_SIZE


def test_parallel_guesses_with_the_right_password_among_them_never_log_in_while_locked(
    server_for,
):
    make_operator("victim", ["customers_read"])
    server = server_for(LOGIN_IP_MAX_FAILURES="100000")
    loginburst.burst(server.url, wrong_guesses("victim"))
    assert server.checks() == settings.LOGIN_MAX_FAILURES

    # Once locked, a burst that carries the right password too lets nothing in.
    attempts = wrong_guesses("victim", BURST_SIZE - 5) + [("victim", PASSWORD)] * 5
    outcomes = server.from_processes(attempts, processes=3)
    assert set(outcomes) == {"locked"}
    assert server.checks() == settings.LOGIN_MAX_FAILURES


def test_one_address_guessing_many_user_names_is_stopped_at_its_limit(server_for):
    names = [f"user{i:02d}" for i in range(BURST_SIZE)]
    for name in names:
        make_operator(name, None)
    server = server_for(LOGIN_IP_MAX_FAILURES="20")

    for round_ in range(BURSTS):
        attempts = [(name, f"guess {round_}") for name in names]
        outcomes = loginburst.burst(server.url, attempts)
        assert set(outcomes) <= {"wrong", "source_locked"}, outcomes
        assert server.checks() <= 20
    assert server.checks() == 20
    # Not one account reached its own limit: the address is what is locked.
    assert server.rows("SELECT COUNT(*) FROM accounts_operator WHERE locked_until IS NOT NULL") == [
        (0,)
    ]
    (locked_until,) = server.rows("SELECT locked_until FROM accounts_loginsource")[0]
    assert locked_until is not None
    assert loginburst.attempt(server.url, "user00", PASSWORD) == "source_locked"
