"""The DKIM signing child process (``okuru.lib.dkim_process``): it signs exactly what the
worker would sign itself, in order, and when it dies or cannot sign nothing is lost or wrong."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from okuru.lib import dkim, dkim_process
from okuru.lib.dkim_process import SigningProcess

RSA = dkim.SigningKey("shop.example", "s1", "rsa", dkim.generate("rsa").private_pem)
ED = dkim.SigningKey("shop.example", "s2", "ed25519", dkim.generate("ed25519").private_pem)


def message(i: int) -> tuple[list[tuple[str, str]], bytes]:
    headers = [
        ("From", "shop@shop.example"),
        ("To", f"user{i}@example.org"),
        ("Subject", f"Sale {i}"),
        ("Date", "Wed, 02 Dec 2026 09:00:00 +0000"),
        ("Message-ID", f"<{i}@shop.example>"),
    ]
    return headers, f"Hello {i}\r\n".encode()


def fixed_time(signer: dkim.Signer) -> dkim.Signer:
    signer._now = lambda: 1_800_000_000  # type: ignore[method-assign]
    return signer


@pytest.fixture
def process():
    p = SigningProcess()
    yield p
    p.close()


def test_the_child_signs_what_the_worker_would_in_order(process):
    # RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic: the child's must be identical.
    signer = fixed_time(dkim.Signer([RSA, ED]))
    tickets = [process.submit(signer.prepare(*message(i))) for i in range(300)]
    assert process.proc is not None and process.proc.poll() is None
    # read back out of order: a later ticket's wait fills the earlier ones
    assert tickets[299].result() == signer.sign(*message(299))
    for i, ticket in enumerate(tickets):
        assert ticket.result() == signer.sign(*message(i))
    assert process.starts == 1


def test_ed25519_alone_is_signed_in_the_worker_without_a_child(process):
    # 50 microseconds a signature: less than the round trip to a child.
    signer = fixed_time(dkim.Signer([ED]))
    tickets = [process.submit(signer.prepare(*message(i))) for i in range(5)]
    assert process.proc is None and process.starts == 0
    assert [t.result() for t in tickets] == [signer.sign(*message(i)) for i in range(5)]


def test_a_killed_child_loses_nothing_and_a_new_one_takes_over(process):
    signer = fixed_time(dkim.Signer([RSA]))
    first = [process.submit(signer.prepare(*message(i))) for i in range(20)]
    assert first[0].result() == signer.sign(*message(0))
    os.kill(process.proc.pid, signal.SIGKILL)
    process.proc.wait()
    # Unanswered tickets of the dead child sign in-process; the next message starts a new child.
    assert [t.result() for t in first] == [signer.sign(*message(i)) for i in range(20)]
    later = [process.submit(signer.prepare(*message(i))) for i in range(20, 40)]
    assert process.starts == 2 and process.proc is not None
    assert [t.result() for t in later] == [signer.sign(*message(i)) for i in range(20, 40)]


def test_after_too_many_deaths_it_signs_in_process(process):
    signer = fixed_time(dkim.Signer([RSA]))
    for _ in range(dkim_process.MAX_STARTS):
        ticket = process.submit(signer.prepare(*message(1)))
        os.kill(process.proc.pid, signal.SIGKILL)
        process.proc.wait()
        assert ticket.result() == signer.sign(*message(1))
        process.submit(signer.prepare(*message(2))).result()  # notices the death
    ticket = process.submit(signer.prepare(*message(3)))
    assert process.proc is None and process.starts == dkim_process.MAX_STARTS
    assert ticket.result() == signer.sign(*message(3))


def test_a_key_the_child_cannot_use_fails_the_same_way_in_the_worker(process):
    broken = dkim.SigningKey("shop.example", "s1", "rsa", RSA.private_pem)
    broken.private_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    signer = fixed_time(dkim.Signer([broken]))
    ticket = process.submit(signer.prepare(*message(1)))
    # The child answers "failed"; the ticket signs in the worker with the key object it has
    # (which works), so a key the child alone cannot load costs speed, not correctness.
    assert ticket.result() == fixed_time(dkim.Signer([RSA])).sign(*message(1))
    assert process.proc.poll() is None  # the child lives on


def test_the_child_answers_failed_for_an_unknown_key_and_a_bad_pem():
    bad = b"rsa\n-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n"
    requests = (
        dkim_process._REQUEST.pack(b"K", 0, len(bad)) + bad
        + dkim_process._REQUEST.pack(b"S", 0, 3) + b"abc"
        + dkim_process._REQUEST.pack(b"S", 7, 3) + b"abc"
    )  # fmt: skip
    out = io.BytesIO()
    dkim_process.serve(io.BytesIO(requests), out)
    answers, data = [], out.getvalue()
    while data:
        status, length = dkim_process._ANSWER.unpack(data[: dkim_process._ANSWER.size])
        payload = data[dkim_process._ANSWER.size : dkim_process._ANSWER.size + length]
        answers.append((status, payload))
        data = data[dkim_process._ANSWER.size + length :]
    assert [a[0] for a in answers] == [dkim_process.FAILED, dkim_process.FAILED]
    assert b"KeyError" in answers[1][1]


def test_the_child_ends_when_its_worker_is_killed(tmp_path):
    # A worker killed with SIGKILL cannot close anything: the kernel closes its end of the
    # child's stdin, and the child must take that as the end rather than linger.
    script = (
        "import sys, time\n"
        "from okuru.lib import dkim\n"
        "from okuru.lib.dkim_process import SigningProcess\n"
        "key = dkim.SigningKey('shop.example', 's1', 'rsa', sys.stdin.read())\n"
        "p = SigningProcess()\n"
        "p.submit(dkim.Signer([key]).prepare([('From', 'a@shop.example')], b'x')).result()\n"
        "print(p.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    parent.stdin.write(RSA.private_pem)
    parent.stdin.close()
    child_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the signing process outlived its killed worker")
