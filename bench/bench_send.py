"""Sending benchmark: N recipients end to end with one worker process, against the bare limit.

    .venv/bin/python bench/bench_send.py [--recipients 100000] [--bare 30000] [--pg]
        [--dkim rsa|ed25519|both]

End to end = ledger lease → send-time exclusions → render (merge fields, tracked link, open
pixel, signed tokens) → MIME → SMTP to a sink in another process (``fast_sink.py``) → ledger
update a group at a time (``--group-size``, the crash bound), by one ``manage.py sendworker
--once`` process. The bare limit = a plain ``smtplib`` loop in this process pushing
pre-rendered messages over one connection to the same sink, in the same run.

Prints messages/s of both, their ratio (targets: ≥ 1,500 msg/s and ≥ 0.6×), the worker's peak
RSS and its RSS as the run progresses (flat memory). Uses a fresh SQLite file in a temporary
directory, or with ``--pg`` a fresh PostgreSQL database ``okuru_mail_bench``.

``--dkim`` sends the same mail to the same customers twice in one run: unsigned, then after
giving the sender domain a DKIM key (RSA-2048, Ed25519, or both: two signatures per message)
signed, and prints the signed run's msg/s and its ratio to the unsigned one (targets: >= 1,500
msg/s and >= 0.6x). The worker's CPU time a message (all its threads, user + system) is printed
too: on a shared machine it moves less than the wall-clock rates.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/okuru_mail_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_database(pg: bool, tmp: str) -> str:
    if pg:
        import psycopg

        with psycopg.connect(
            "postgres://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as conn:
            conn.execute("DROP DATABASE IF EXISTS okuru_mail_bench")
            conn.execute("CREATE DATABASE okuru_mail_bench")
        url = PG_URL
    else:
        url = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["DATABASE_URL"] = url
    os.environ["OKURU_DATA_DIR"] = tmp
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "okuru.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def add_dkim_keys(dkim: str) -> None:
    from okuru.mailings import dkim_keys

    for algorithm in {"rsa": ["rsa"], "ed25519": ["ed25519"], "both": ["rsa", "ed25519"]}[dkim]:
        dkim_keys.add_key("shop.example", algorithm, None)


def new_delivery(mail_id: int) -> int:
    from okuru.mailings.models import Mail
    from okuru.mailings.testing import start

    t = time.perf_counter()
    delivery = start(Mail.objects.get(pk=mail_id))
    print(f"ledger frozen: {delivery.recipient_count} rows in {time.perf_counter() - t:.2f} s")
    return delivery.pk


def seed(n: int, port: int) -> int:
    """N customers, a relay to the sink and a mail; returns the mail's id."""
    from okuru.customers.models import Customer, Field
    from okuru.mailings.testing import make_mail, make_relay

    Field.objects.create(key="name", label="Name", type="text")
    step = 5000
    for i in range(0, n, step):
        Customer.objects.bulk_create(
            Customer(email=f"user{j}@example{j % 50}.com", data={"name": f"顧客 {j}"})
            for j in range(i, min(n, i + step))
        )
    make_relay(port, timeout=30)
    mail = make_mail(
        subject="{{ name }}様へ 春のセールのお知らせ",
        text_body=(
            "{{ name }}様\n\nいつもご利用ありがとうございます。春のセールを開催します。\n"
            "詳しくは https://shop.example/sale をご覧ください。\n\n"
            "配信停止: {{ unsubscribe_url }}\n"
        ),
        html_body=(
            "<html><body><p>{{ name }}様</p><p>いつもご利用ありがとうございます。"
            '春のセールを開催します。</p><p><a href="https://shop.example/sale">セール会場へ</a>'
            '</p><p><a href="{{ unsubscribe_url }}">配信停止</a></p></body></html>'
        ),
    )
    return mail.pk


def prerender(delivery_id: int, count: int) -> list[tuple[str, str, bytes]]:
    from okuru.customers.fields import catalogue
    from okuru.customers.models import Customer
    from okuru.lib import signing
    from okuru.mailings.dkim_keys import signer_for
    from okuru.mailings.messages import MessageBuilder
    from okuru.mailings.models import Delivery, Recipient
    from okuru.mailings.rendering import CompiledMail

    d = Delivery.objects.get(pk=delivery_id)
    compiled = CompiledMail(d.content, catalogue())
    builder = MessageBuilder(d.pk, d.content, signer_for(d.content["from_address"]))
    out = []
    for r in Recipient.objects.filter(delivery=d).order_by("id")[:count]:
        c = Customer.objects.filter(pk=r.customer_id).values().get()
        env = builder.build(
            r.id, r.address, compiled.render(r.id, c), signing.url_for("unsubscribe", r.id)
        )
        out.append((env.sender, env.recipient, env.data))
    return out


def bare_loop(port: int, messages: list[tuple[str, str, bytes]], n: int) -> float:
    smtp = smtplib.SMTP("127.0.0.1", port)
    smtp.ehlo()
    t = time.perf_counter()
    for i in range(n):
        sender, rcpt, data = messages[i % len(messages)]
        smtp.sendmail(sender, [rcpt], data)
    elapsed = time.perf_counter() - t
    smtp.quit()
    return n / elapsed


def bare_pipelined_loop(port: int, messages: list[tuple[str, str, bytes]], n: int) -> float:
    """The same pre-rendered messages through Okuru's own SMTP client (PIPELINING): the
    limit of the transport the worker uses, so the ratio to it is the cost of everything else
    (ledger, rendering, MIME)."""
    from okuru.lib.smtp import Connection, RelaySettings

    conn = Connection(RelaySettings("127.0.0.1", port))
    conn.open()
    t = time.perf_counter()
    for i in range(n):
        sender, rcpt, data = messages[i % len(messages)]
        conn.send(sender, rcpt, data)  # already dot-stuffed by MessageBuilder
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sent_so_far(delivery_id: int) -> int:
    from okuru.mailings.models import Recipient

    return Recipient.objects.filter(delivery_id=delivery_id, status="sent").count()


def end_to_end(url: str, tmp: str, batch: int, group: int, delivery_id: int, n: int) -> dict:
    env = dict(os.environ, DATABASE_URL=url, OKURU_DATA_DIR=tmp)
    t = time.perf_counter()
    args = ["sendworker", "--once", "--batch-size", str(batch), "--group-size", str(group)]
    proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env)
    samples: list[tuple[float, int]] = []  # (fraction sent, RSS KB)
    done = threading.Event()

    def sample() -> None:
        from django.db import connection

        while not done.wait(1.0):
            samples.append((sent_so_far(delivery_id) / n, rss_kb(proc.pid)))
        connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    from django.db.models import Max, Min

    from okuru.mailings.models import Recipient

    span = Recipient.objects.filter(delivery_id=delivery_id).aggregate(
        first=Min("sent_at"), last=Max("sent_at")
    )
    sending_seconds = (span["last"] - span["first"]).total_seconds()
    return {
        "returncode": proc.returncode,
        "wall": wall,
        "sending_seconds": sending_seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "samples": samples,
    }


def run_once(args: argparse.Namespace, url: str, tmp: str, port: int, delivery_id: int) -> float:
    """One delivery end to end between two measures of the bare loops; its msg/s."""
    from okuru.mailings.models import Delivery, Recipient

    # The machine is shared: measure the bare loops before and after the end-to-end run
    # and compare with their mean, so a change of load between phases shows up.
    messages = prerender(delivery_id, 1000)
    bare1 = bare_loop(port, messages, args.bare)
    piped1 = bare_pipelined_loop(port, messages, args.bare)
    r = end_to_end(url, tmp, args.batch_size, args.group_size, delivery_id, args.recipients)
    bare2 = bare_loop(port, messages, args.bare)
    piped2 = bare_pipelined_loop(port, messages, args.bare)
    bare, piped = (bare1 + bare2) / 2, (piped1 + piped2) / 2
    d = Delivery.objects.get(pk=delivery_id)
    sent = Recipient.objects.filter(delivery_id=delivery_id, status="sent").count()
    e2e = args.recipients / r["sending_seconds"]
    e2e_wall = args.recipients / r["wall"]
    print(
        f"bare smtplib loop:   {bare:6.0f} msg/s (before {bare1:.0f}, after {bare2:.0f}; "
        f"{args.bare} pre-rendered messages each)"
    )
    print(
        f"bare pipelined loop: {piped:6.0f} msg/s (before {piped1:.0f}, after {piped2:.0f}; "
        "okuru.lib.smtp, same messages)"
    )
    print(
        f"end to end:          {e2e:6.0f} msg/s (first to last sent_at, "
        f"{r['sending_seconds']:.1f} s); {e2e_wall:.0f} msg/s including worker start-up "
        f"({r['wall']:.1f} s)"
    )
    print(f"ratio end-to-end / bare smtplib: {e2e / bare:.2f}  (target >= 0.6; >= 1500 msg/s)")
    print(f"ratio end-to-end / bare pipelined: {e2e / piped:.2f}")
    print(
        f"worker CPU: {r['cpu_seconds'] / args.recipients * 1000:.3f} ms a message "
        f"(user + system: its threads and its DKIM signing process; {r['cpu_seconds'] / r['wall']:.2f} cores busy)"
    )
    print(f"worker peak RSS: {r['peak_rss_mb']:.0f} MB; RSS by progress:")
    for frac, kb in r["samples"][:: max(1, len(r["samples"]) // 8)]:
        print(f"    {frac * 100:5.1f}% sent  {kb / 1024:6.0f} MB")
    print(
        f"ledger: {sent} sent of {args.recipients}; delivery {d.status}; batches of "
        f"{args.batch_size}, at most {args.group_size} rows sending at once (a crash "
        "leaves at most that many unknown)"
    )
    if r["returncode"] != 0 or sent != args.recipients or d.status != "completed":
        sys.exit("benchmark run did not complete cleanly")
    return e2e


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--bare", type=int, default=20_000, help="messages per bare loop run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--group-size", type=int, default=20, help="rows sending at once (the crash bound)"
    )
    parser.add_argument("--pg", action="store_true")
    parser.add_argument(
        "--dkim", choices=["rsa", "ed25519", "both"], default="", help="sign every message"
    )
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="okuru-bench-")
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fast_sink.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        url = setup_database(args.pg, tmp)
        t = time.perf_counter()
        mail_id = seed(args.recipients, port)
        print(f"seeded {args.recipients} customers in {time.perf_counter() - t:.1f} s ({url})")

        # With --dkim the same mail goes to the same customers twice in this run: unsigned,
        # then signed, so signing's cost is a ratio between two runs on the same machine state.
        runs = [""] + ([args.dkim] if args.dkim else [])
        results = {}
        for dkim in runs:
            if dkim:
                add_dkim_keys(dkim)
            label = f"DKIM {dkim}" if dkim else "unsigned"
            print(f"-- {label}")
            delivery_id = new_delivery(mail_id)
            results[dkim] = run_once(args, url, tmp, port, delivery_id)
        if args.dkim:
            signed, unsigned = results[args.dkim], results[""]
            print(
                f"DKIM {args.dkim}: {signed:.0f} msg/s signed vs {unsigned:.0f} unsigned: "
                f"{signed / unsigned:.2f}x (targets: >= 1500 msg/s and >= 0.6x)"
            )
    finally:
        sink.terminate()
        if sink.stdout is not None:
            rest = sink.stdout.read().strip()
            if rest:
                print(f"sink: {rest} (both bare loops + end to end)")
        sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
