"""``okuru run``: the embedded default in one command.

Migrates, collects static files, creates the first operator on the first start, then starts and
supervises its children: the web server (gunicorn), the task worker (``run_huey``), the tracking
worker (``trackingworker``), the capture SMTP server and the bounce SMTP receiver
(``bounce-smtp``, unless ``BOUNCE_SMTP_PORT`` is 0). SIGINT or SIGTERM stops them all.

When a child dies the others are stopped and ``run`` exits non-zero, rather than restarting it:
a crash loop hidden behind restarts is worse than a clear stop, and whoever runs Okuru as a
service (systemd, a container runtime) already restarts the whole thing with back-off.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from okuru.accounts.management.commands.createoperator import create_operator
from okuru.accounts.models import Operator
from okuru.lib.servers import check_port_free

FIRST_OPERATOR = "admin"
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.2


@dataclass
class Child:
    name: str
    argv: list[str]
    # The signal that asks this child for a graceful stop (huey: SIGINT finishes running tasks).
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # Own process group: a terminal's Ctrl-C reaches only the supervisor, which then stops
        # the children in order instead of all of them racing to exit at once.
        self.proc = subprocess.Popen(
            self.argv, env=env, process_group=0, preexec_fn=_die_with_parent
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _die_with_parent() -> None:
    # Linux: if the supervisor is killed outright (SIGKILL), its children get SIGTERM instead
    # of living on as orphans holding the ports.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Start children, wait until one dies or a stop is asked for, then stop all of them."""

    def __init__(self, children: list[Child], say: Callable[[str], None]):
        self.children = children
        self.say = say
        self.stop_requested = threading.Event()

    def start(self, env: dict[str, str]) -> None:
        for child in self.children:
            child.start(env)

    def wait(self) -> Child | None:
        """Block until a stop is requested (returns None) or a child exits (returns it)."""
        while not self.stop_requested.wait(POLL_INTERVAL):
            for child in self.children:
                if not child.running():
                    return child
        return None

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        for child in self.children:
            if child.running():
                child.proc.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {timeout:g} s: killing it")
                child.proc.kill()
                child.proc.wait()

    def run(self, env: dict[str, str]) -> Child | None:
        """Start, wait, stop everything; return the child that died, if one did."""
        self.start(env)
        try:
            dead = self.wait()
        finally:
            if self.stop_requested.is_set():
                self.say("stopping...")
            self.stop_all()
        return dead


def ensure_first_operator() -> str:
    """Create the first operator on the first start; return what to print about logging in."""
    if not Operator.objects.exists():
        _, password = create_operator(FIRST_OPERATOR, f"{FIRST_OPERATOR}@localhost", admin=True)
        return (
            f"  first operator: {FIRST_OPERATOR}\n"
            f"  password:       {password}\n"
            "  (shown only this once: keep it, or set a new one with "
            f"`okuru changepassword {FIRST_OPERATOR}`)"
        )
    if Operator.objects.filter(username=FIRST_OPERATOR).exists():
        return (
            f"  log in as {FIRST_OPERATOR}; forgot the password? "
            f"`okuru changepassword {FIRST_OPERATOR}`"
        )
    return "  log in with your operator account (`okuru createoperator NAME` adds one)"


def split_bind(bind: str, port: int | None) -> tuple[str, int]:
    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit():
        raise CommandError(f"--bind must be HOST:PORT, not {bind!r}")
    host = host.strip("[]")
    return host, port if port is not None else int(port_text)


def children_for(
    host: str, port: int, web_workers: int, threads: int, capture: bool
) -> list[Child]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    okuru = [sys.executable, "-m", "okuru.cli"]
    web = [
        sys.executable, "-m", "gunicorn", "okuru.wsgi:application",
        "--bind", bind,
        "--worker-class", "gthread", "--workers", str(web_workers), "--threads", str(threads),
        "--graceful-timeout", "10",
        # A listening socket per worker: the kernel spreads connections across workers, where
        # one shared socket let one worker take most kept-alive clients while the other idled.
        "--reuse-port",
        # The default control socket is one path per user: two instances would fight over it.
        "--no-control-socket",
    ]  # fmt: skip
    children = [
        Child("web server", web),
        # Worker count and type come from settings.HUEY["consumer"] (WORKERS).
        Child("task worker", [*okuru, "run_huey"], stop_signal=signal.SIGINT),
        # Applies the opens and clicks that the web server notes, continuously.
        Child("tracking worker", [*okuru, "trackingworker"]),
    ]
    if capture:
        port_arg = ["--port", str(settings.CAPTURE_SMTP_PORT)]
        children.append(Child("capture SMTP server", [*okuru, "capture-smtp", *port_arg]))
    if settings.BOUNCE_SMTP_PORT:
        children.append(Child("bounce SMTP receiver", [*okuru, "bounce-smtp"]))
    return children


def announce_when_listening(
    host: str, port: int, url: str, stop: threading.Event, say: Callable[[str], None]
) -> None:
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with socket.create_connection((connect_host, port), timeout=1):
                say(f"web server listening on {url}")
                return
        except OSError:
            stop.wait(POLL_INTERVAL)


def banner(url: str, login_note: str, capture: bool) -> list[str]:
    """What ``run`` says on starting: where to log in and where its SMTP servers listen."""
    lines = [f"Okuru is starting: {url}accounts/login/", login_note]
    if capture:
        lines.append(
            f"  captured mail:  {url}capture/  (SMTP 127.0.0.1:{settings.CAPTURE_SMTP_PORT})"
        )
    if settings.BOUNCE_SMTP_PORT:
        host = settings.BOUNCE_SMTP_HOST
        address = f"[{host}]" if ":" in host else host
        lines.append(
            f"  bounces:        {url}bounces/  (SMTP {address}:{settings.BOUNCE_SMTP_PORT})"
        )
    lines.append("  press Ctrl-C to stop")
    return lines


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="okuru.settings", PYTHONUNBUFFERED="1")
    # Links in job notices must point where the web server really is.
    env.setdefault("SITE_ROOT", url.rstrip("/"))
    return env


class Command(BaseCommand):
    help = (
        "Run Okuru: web server, task and tracking workers, capture SMTP server and bounce SMTP "
        "receiver, after migrating and creating the first operator."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT for the web UI")
        parser.add_argument("--port", type=int, help="web UI port (overrides --bind's port)")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
        parser.add_argument("--threads", type=int, default=4, help="threads per web process")
        parser.add_argument(
            "--no-capture", action="store_true", help="do not start the capture SMTP server"
        )

    def handle(self, *args, **options) -> None:
        host, port = split_bind(options["bind"], options["port"])
        capture = not options["no_capture"]
        check_port_free(host, port, "web UI")
        if capture:
            check_port_free("127.0.0.1", settings.CAPTURE_SMTP_PORT, "capture SMTP server")
        if settings.BOUNCE_SMTP_PORT:
            check_port_free(
                settings.BOUNCE_SMTP_HOST, settings.BOUNCE_SMTP_PORT, "bounce SMTP receiver"
            )

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        login_note = ensure_first_operator()

        shown_host = "localhost" if host in ("0.0.0.0", "::") else host
        url = (
            f"http://[{shown_host}]:{port}/"
            if ":" in shown_host
            else f"http://{shown_host}:{port}/"
        )
        children = children_for(host, port, options["web_workers"], options["threads"], capture)
        supervisor = Supervisor(children, self.say)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: supervisor.stop_requested.set())

        for line in banner(url, login_note, capture):
            self.say(line)
        # gunicorn's own "Listening at" line is empty with --reuse-port (each worker binds its
        # own socket), so say where the web server answers once it does.
        threading.Thread(
            target=announce_when_listening,
            args=(host, port, url, supervisor.stop_requested, self.say),
            daemon=True,
        ).start()
        dead = supervisor.run(child_env(url))
        if dead is not None:
            raise CommandError(
                f"the {dead.name} exited unexpectedly (exit code {dead.proc.returncode}); "
                "stopped the others"
            )
        self.say("stopped")

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
