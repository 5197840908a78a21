"""``okuru run`` and ``okuru createoperator``: first operator, supervision, a real start."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from io import StringIO
from pathlib import Path
from smtplib import SMTP

import pytest
from django.core.management import CommandError, call_command

from okuru.accounts.management.commands import run
from okuru.accounts.models import RIGHTS, OperationLog, Operator

pytestmark = pytest.mark.django_db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_first_start_creates_an_admin_with_a_generated_password():
    note = run.ensure_first_operator()

    password = re.search(r"password:\s+(\S+)", note).group(1)
    admin = Operator.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert password not in admin.password
    assert admin.email == "admin@localhost"
    assert admin.group_names() == "Administrators"
    assert all(admin.has_right(code) for code, _ in RIGHTS)
    assert OperationLog.objects.filter(action="operator_create", target="admin").count() == 1


def test_a_later_start_tells_how_to_reset_the_password_and_changes_nothing():
    run.ensure_first_operator()
    before = Operator.objects.get(username="admin").password

    note = run.ensure_first_operator()

    assert note == "  log in as admin; forgot the password? `okuru changepassword admin`"
    assert Operator.objects.get(username="admin").password == before
    assert Operator.objects.count() == 1


def test_it_creates_no_admin_when_other_operators_exist(member):
    note = run.ensure_first_operator()
    assert "okuru createoperator NAME" in note
    assert not Operator.objects.filter(username="admin").exists()


def test_createoperator_prints_the_password_once():
    out = StringIO()
    call_command("createoperator", "alice", "--email", "alice@example.com", stdout=out)

    password = re.search(r"password: (\S+)", out.getvalue()).group(1)
    alice = Operator.objects.get(username="alice")
    assert alice.check_password(password)
    assert not alice.is_superuser
    assert alice.groups.count() == 0


def test_createoperator_admin_joins_the_administrators_group():
    call_command("createoperator", "boss", "--admin", stdout=StringIO())
    boss = Operator.objects.get(username="boss")
    assert boss.is_superuser
    assert boss.has_right("operators_admin")


def test_createoperator_rejects_an_existing_name(member):
    with pytest.raises(CommandError) as e:
        call_command("createoperator", "member", stdout=StringIO())
    assert str(e.value) == (
        'Operator "member" already exists. To set a new password: okuru changepassword member'
    )


def test_it_rejects_a_web_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError) as e:
            call_command("run", "--port", str(port), stdout=StringIO())
    assert str(e.value) == (
        f"Cannot use 127.0.0.1:{port} for the web UI: Address already in use. "
        "Stop what uses it or choose another port."
    )


def test_it_rejects_a_bind_without_a_port():
    with pytest.raises(CommandError) as e:
        call_command("run", "--bind", "127.0.0.1", stdout=StringIO())
    assert str(e.value) == "--bind must be HOST:PORT, not '127.0.0.1'"


def sleeper(name: str) -> run.Child:
    return run.Child(name, [sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_banner_names_the_capture_and_bounce_smtp_addresses(settings):
    settings.CAPTURE_SMTP_PORT, settings.BOUNCE_SMTP_PORT = 2525, 2526
    settings.BOUNCE_SMTP_HOST = "127.0.0.1"
    lines = run.banner("http://127.0.0.1:8000/", "note", capture=True)
    assert lines == [
        "Okuru is starting: http://127.0.0.1:8000/accounts/login/",
        "note",
        "  captured mail:  http://127.0.0.1:8000/capture/  (SMTP 127.0.0.1:2525)",
        "  bounces:        http://127.0.0.1:8000/bounces/  (SMTP 127.0.0.1:2526)",
        "  press Ctrl-C to stop",
    ]
    settings.BOUNCE_SMTP_HOST, settings.BOUNCE_SMTP_PORT = "::", 25
    assert "(SMTP [::]:25)" in run.banner("http://localhost:8000/", "note", capture=False)[2]
    settings.BOUNCE_SMTP_PORT = 0  # no bounce receiver started, none announced
    lines = run.banner("http://localhost:8000/", "note", capture=False)
    assert not [line for line in lines if "SMTP" in line]


def test_when_a_child_dies_the_others_are_stopped():
    crasher = run.Child("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    survivor = sleeper("survivor")
    supervisor = run.Supervisor([survivor, crasher], say=lambda text: None)

    dead = supervisor.run(dict(os.environ))

    assert dead is crasher
    assert crasher.proc.returncode == 3
    assert survivor.proc.returncode == -signal.SIGTERM


def test_a_stop_request_stops_every_child():
    children = [sleeper("one"), sleeper("two")]
    supervisor = run.Supervisor(children, say=lambda text: None)
    supervisor.stop_requested.set()

    assert supervisor.run(dict(os.environ)) is None
    assert [c.proc.returncode for c in children] == [-signal.SIGTERM, -signal.SIGTERM]


def test_a_child_that_ignores_its_stop_signal_is_killed():
    stubborn = run.Child(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
    )
    said = []
    supervisor = run.Supervisor([stubborn], say=said.append)
    stubborn.proc = subprocess.Popen(stubborn.argv, stdout=subprocess.PIPE, text=True)
    assert stubborn.proc.stdout.readline() == "ready\n"

    supervisor.stop_all(timeout=0.5)

    assert stubborn.proc.returncode == -signal.SIGKILL
    assert said == ["stubborn did not stop within 0.5 s: killing it"]


def wait_for(url: str, deadline: float) -> int:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_okuru_run_serves_the_login_page_captures_mail_and_stops_on_sigterm(tmp_path: Path):
    web_port, smtp_port, bounce_port = free_port(), free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        # The embedded default, whatever database this test run uses; and not pytest's
        # inline task mode, which the children would otherwise inherit.
        if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION", "SITE_ROOT")
    }
    env.update(
        OKURU_DATA_DIR=str(tmp_path),
        CAPTURE_SMTP_PORT=str(smtp_port),
        BOUNCE_SMTP_PORT=str(bounce_port),
    )
    okuru = [sys.executable, "-m", "okuru.cli"]
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(
        [*okuru, "run", "--port", str(web_port), "--web-workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        assert wait_for(f"http://127.0.0.1:{web_port}/accounts/login/", deadline) == 200
        assert wait_for(f"http://127.0.0.1:{web_port}/static/okuru.css", deadline) == 200
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = "Captured?", "a@example.com", "b@example.com"
        msg.set_content("hello")
        while True:
            try:
                with SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                    smtp.send_message(msg)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        msg.replace_header("Subject", "Bounced?")
        while True:
            try:
                with SMTP("127.0.0.1", bounce_port, timeout=10) as smtp:
                    smtp.send_message(msg, to_addrs=["bounce+1-1-aaaaaaaaaaaaaaaa@bounce.example"])
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        db = sqlite3.connect(tmp_path / "okuru.sqlite3")
        assert db.execute("select subject from capture_capturedmessage").fetchall() == [
            ("Captured?",)
        ]
        assert db.execute("select subject, outcome from bounces_bounce").fetchall() == [
            ("Bounced?", "unparsed")
        ]
        db.close()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    output = log.read()
    log.close()
    assert "first operator: admin" in output
    assert f"(SMTP 127.0.0.1:{smtp_port})" in output
    assert f"bounces/  (SMTP 127.0.0.1:{bounce_port})" in output
    assert f"web server listening on http://127.0.0.1:{web_port}/" in output
    # Every log line of the children once, not once from their handler and once from the root's.
    lines = [line for line in output.splitlines() if line.strip()]
    repeated = [a for a, b in zip(lines, lines[1:], strict=False) if a.endswith(b)]
    assert repeated == []
    assert "Huey consumer started" in output
    assert output.rstrip().endswith("stopped")
    # Every child is gone: the ports are free again.
    run.check_port_free("127.0.0.1", web_port, "web UI")
    run.check_port_free("127.0.0.1", smtp_port, "capture SMTP server")
    run.check_port_free("127.0.0.1", bounce_port, "bounce SMTP receiver")
