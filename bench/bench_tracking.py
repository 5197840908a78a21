"""Tracking endpoints under load: the open pixel and the click redirect, served by gunicorn
(``okuru.wsgi``) on loopback, with a throwaway database, and ``okuru trackingworker`` draining
the inbox meanwhile, as ``okuru run`` has it.

    .venv/bin/python bench/bench_tracking.py [--seconds 10] [--connections 32] [--workers 2]
                                             [--threads 4] [--recipients 2000] [--pg]

Load comes from ``wrk`` (Debian package ``wrk``) when it is installed, else from a small
Python load generator (threads, keep-alive). Each request uses a different recipient's signed
token, as real traffic does. Prints requests/s and p99 latency for each endpoint (targets:
≥ 1,000 req/s, p99 < 50 ms) with the load average while it ran (the machine may be shared), and
checks the database afterwards: after a final drain, every answered request must have been
recorded as an event (the endpoints swallow recording errors to always answer, so a lost write
would otherwise go unseen) and the inbox must be empty. Exits non-zero when that check fails.
The server and the worker are stopped and the database removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/okuru_track_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(pg: bool, tmp: str) -> dict[str, str]:
    if pg:
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS okuru_track_bench")
            c.execute("CREATE DATABASE okuru_track_bench")
        url = PG_URL
    else:
        url = f"sqlite:///{tmp}/bench.sqlite3"
    env = {
        "DATABASE_URL": url,
        "OKURU_DATA_DIR": tmp,
        "DJANGO_SETTINGS_MODULE": "okuru.settings",
        "HUEY_IMMEDIATE": "True",
        "LOG_LEVEL": "ERROR",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def seed(n: int) -> tuple[int, list[str], list[str]]:
    """A delivery of ``n`` sent recipients; (delivery id, open paths, click paths)."""
    from django.utils import timezone

    from okuru.lib import signing
    from okuru.mailings.models import Recipient, TrackedLink
    from okuru.mailings.testing import free_port as port
    from okuru.mailings.testing import make_customers, make_mail, make_relay, start

    make_relay(port())
    make_customers(n, domain="bench.example")
    delivery = start(make_mail(name="Bench"))
    Recipient.objects.filter(delivery=delivery).update(status="sent", sent_at=timezone.now())
    link = TrackedLink.objects.get(mail=delivery.mail)
    ids = list(Recipient.objects.filter(delivery=delivery).values_list("id", flat=True))
    opens = [signing.path_for("open", signing.make_token("open", i)) for i in ids]
    clicks = [signing.path_for("click", signing.make_token("click", i, link.pk)) for i in ids]
    random.shuffle(opens)
    random.shuffle(clicks)
    return delivery.pk, opens, clicks


def conn_max_age_settings(tmp: str, seconds: int) -> dict[str, str]:
    """A settings module that is okuru.settings with another CONN_MAX_AGE (0: a connection
    per request; on SQLite each close of the last connection checkpoints the WAL)."""
    (Path(tmp) / "bench_settings.py").write_text(
        f"from okuru.settings import *  # noqa\nDATABASES['default']['CONN_MAX_AGE'] = {seconds}\n"
    )
    path = os.pathsep.join([tmp, str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {"DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": path}


BARE_APP = """
GIF = {gif!r}
HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))),
           ("Cache-Control", "no-store"), ("Referrer-Policy", "same-origin")]

def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [GIF]
"""


def bare_app(tmp: str) -> dict[str, str]:
    """The bare limit: a WSGI app that answers every request with the pixel and does nothing
    else (no Django, no database), to be served by the same gunicorn set-up."""
    from okuru.tracking.views import GIF

    (Path(tmp) / "bare_tracking.py").write_text(BARE_APP.format(gif=GIF))
    return {"PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])}


def embedded_commands(port: int, workers: int, threads: int) -> dict[str, list[str]]:
    """The web server and tracking worker commands exactly as ``okuru run`` starts them."""
    from okuru.accounts.management.commands.run import children_for

    children = children_for("127.0.0.1", port, workers, threads, capture=False)
    return {c.name: c.argv for c in children}


def start_server(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*argv, "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    until = time.monotonic() + 60
    while time.monotonic() < until:
        if ready(port):
            return proc
        time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("gunicorn did not start")


def ready(port: int, tries: int = 20) -> bool:
    """Whether every worker answers: each request on a new connection, which the kernel may
    hand to any worker (gunicorn's --reuse-port), and a worker still importing Django would
    hold it."""
    for _i in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        try:
            conn.request("GET", "/t/o/ready.gif")
            conn.getresponse().read()
        except OSError:
            return False
        finally:
            conn.close()
    return True


def start_drainer(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Load generators


def run_wrk(port: int, paths: list[str], seconds: int, connections: int, tmp: str) -> dict:
    script = Path(tmp) / "paths.lua"
    lines = ",\n".join(f'"{p}"' for p in paths)
    script.write_text(
        f"paths = {{\n{lines}\n}}\n"
        "counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        "  return wrk.format('GET', paths[(counter % #paths) + 1])\n"
        "end\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "requests": total,
        "bad": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if m is None:
        raise SystemExit(f"cannot read the latency {text!r} in wrk's output")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_python(port: int, paths: list[str], seconds: int, connections: int) -> dict:
    """Keep-alive HTTP/1.1 clients in threads (slower than wrk: the figure is a floor)."""
    latencies: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        mine, i = [], offset
        while time.monotonic() < stop_at:
            path = paths[i % len(paths)]
            i += connections
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                ok = r.status in (200, 302)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                ok = False
            mine.append(time.perf_counter() - t)
            if not ok:
                with lock:
                    bad[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else 0.0,
        "p99": latencies[int(n * 0.99)] * 1000 if n else 0.0,
        "requests": n,
        "bad": bad[0],
        "socket_errors": "",
    }


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="run the server with this CONN_MAX_AGE (persistent database connections)",
    )
    parser.add_argument("--python", action="store_true", help="use the Python load generator")
    parser.add_argument(
        "--no-drain", action="store_true", help="no trackingworker during the load (only after)"
    )
    parser.add_argument("--drain-batch", type=int, help="the trackingworker's --batch")
    parser.add_argument("--drain-interval", type=float, help="the trackingworker's --interval")
    parser.add_argument(
        "--only", choices=("open", "click"), help="load one endpoint only (the other is skipped)"
    )
    args = parser.parse_args()
    args.seconds = max(1, min(args.seconds, 60))  # bounded, whatever is asked

    tmp = tempfile.mkdtemp(prefix="okuru-bench-tracking-")
    proc = drainer = None
    try:
        env = setup(args.pg, tmp)
        delivery_id, opens, clicks = seed(args.recipients)
        use_wrk = shutil.which("wrk") is not None and not args.python
        tool = "wrk" if use_wrk else "python threads"

        def load(port: int, paths: list[str], seconds: int = args.seconds) -> dict:
            if use_wrk:
                return run_wrk(port, paths, seconds, args.connections, tmp)
            return run_python(port, paths, seconds, args.connections)

        port = free_port()
        commands = embedded_commands(port, args.workers, args.threads)
        web = commands["web server"]
        bare = [("bare_tracking:application" if a == "okuru.wsgi:application" else a) for a in web]
        results = {}
        proc = start_server(bare, {**env, **bare_app(tmp)}, port)
        results["bare"] = measure(lambda p: load(port, p), opens)
        stop_server(proc)
        proc = None

        if args.conn_max_age is not None:
            env = {**env, **conn_max_age_settings(tmp, args.conn_max_age)}
        proc = start_server(web, env, port)
        drain_argv = commands["tracking worker"]
        if args.drain_batch:
            drain_argv = [*drain_argv, "--batch", str(args.drain_batch)]
        if args.drain_interval:
            drain_argv = [*drain_argv, "--interval", str(args.drain_interval)]
        drainer = None if args.no_drain else start_drainer(drain_argv, env)
        print(
            f"tracking bench: {'PostgreSQL' if args.pg else 'SQLite'}, gunicorn as okuru run "
            f"starts it ({args.workers} workers x {args.threads} threads"
            f"{', --reuse-port' if '--reuse-port' in web else ''}), {args.connections} connections, "
            f"{args.seconds}s per endpoint, load from {tool}, {os.cpu_count()} CPUs, "
            f"CONN_MAX_AGE {'as configured' if args.conn_max_age is None else args.conn_max_age}, "
            f"{'no drain during the load' if args.no_drain else 'trackingworker draining'}"
        )
        for name, paths in (("open", opens), ("click", clicks)):
            if args.only and name != args.only:
                continue
            warm_up = lambda paths=paths: load(port, paths, 2)  # noqa: E731
            before = settle(delivery_id, name, warm_up)
            results[name] = measure(lambda p: load(port, p), paths)
            results[name]["recorded"] = settle(delivery_id, name) - before
            results[name]["connections"] = args.connections
        ok = check(delivery_id, results)
    finally:
        for p in (proc, drainer):
            if p is not None:
                stop_server(p)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


def measure(load: Callable[[list[str]], dict], paths: list[str]) -> dict:
    before = os.getloadavg()[0]
    result = load(paths)
    result["load"] = (before, os.getloadavg()[0])
    return result


def settle(delivery_id: int, kind: str, warm_up: Callable[[], Any] | None = None) -> int:
    """Let the requests in flight finish, apply whatever is left in the inbox, and count."""
    from okuru.tracking import recording

    if warm_up is not None:
        warm_up()  # imports, connections
    time.sleep(0.5)
    recording.drain()
    return recorded(delivery_id, kind)


def recorded(delivery_id: int, kind: str) -> int:
    """Events of ``kind`` recorded so far (opens implied by clicks left out)."""
    from okuru.mailings.models import Event

    qs = Event.objects.filter(delivery_id=delivery_id, kind=kind)
    return qs.exclude(detail__has_key="implied").count()


def check(delivery_id: int, results: dict) -> bool:
    """Print the figures; False when a request was answered but not recorded. A request still
    in flight when the load stopped may be recorded without being counted as answered, so up
    to one per connection more is fine."""
    from okuru.mailings.models import Delivery
    from okuru.tracking.models import Hit

    d = Delivery.objects.get(pk=delivery_id)
    fast = complete = True
    bare = results.pop("bare")
    print(
        f"  bare  {bare['rps']:8.0f} req/s  p50 {bare['p50']:6.1f} ms  p99 {bare['p99']:6.1f} ms  "
        f"(the bare limit: the same gunicorn answering a GIF, no Django, no database; "
        f"load average {bare['load'][0]:.1f} → {bare['load'][1]:.1f})"
    )
    for name, r in results.items():
        passed = r["rps"] >= 1000 and r["p99"] < 50
        answered = r["requests"] - r["bad"]
        all_recorded = answered <= r["recorded"] <= r["requests"] + r["connections"]
        fast, complete = fast and passed, complete and all_recorded
        print(
            f"  {name:5} {r['rps']:8.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
            f"({r['requests']} requests, {r['bad']} non-2xx/3xx"
            f"{', socket errors ' + r['socket_errors'] if r['socket_errors'] else ''}; "
            f"{r['recorded']} recorded{'' if all_recorded else ' — NOT ALL RECORDED'}; "
            f"load average {r['load'][0]:.1f} → {r['load'][1]:.1f})  "
            f"{'OK' if passed else 'BELOW TARGET'}; {r['rps'] / bare['rps']:.2f}× bare"
        )
    left = Hit.objects.count()
    print(
        f"  delivery counters: opens {d.open_unique} unique / {d.open_total} total, "
        f"clicks {d.click_unique} unique / {d.click_total} total; {left} hits left in the inbox"
    )
    print("targets (>= 1,000 req/s, p99 < 50 ms):", "met" if fast else "NOT met")
    print("every answered request recorded:", "yes" if complete and not left else "NO")
    return complete and not left


if __name__ == "__main__":
    main()
