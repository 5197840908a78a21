"""DKIM private-key operations in a child process, beside the sending worker.

An RSA-2048 signature costs about as much CPU as everything else the worker does for a message
(rendering, MIME, SMTP, ledger). Threads cannot take it off the worker's path: the signature's
Python half and the rendering share one GIL, and the hand-overs cost more than they save. A
child process has its own interpreter, so the signatures of the messages the worker has just
rendered are computed on another core while it sends the ones before them.

The worker prepares each message's signatures itself (``dkim.Signer.prepare``: canonical
headers, body hash) and sends the child only the bytes each key must sign; answers come back in
order. If the child cannot be started or dies, the signatures are computed in the worker instead
(slower, never wrong), and a new child is tried for the next message, a few times at most.

Frames on the child's stdin: kind (``K`` a key, ``S`` something to sign), the key's number and
the payload's length (``!cII``), the payload (``K``: algorithm, newline, PEM; ``S``: the bytes
to sign). On its stdout, one frame per ``S``: status (0 signed, 1 failed) and length (``!cI``),
then the signature or the error text. The child exits when its stdin closes (the worker ended,
or died: the kernel closes the pipe either way).

    python -m okuru.lib.dkim_process
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import BinaryIO

from okuru.lib import dkim

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("!cII")
_ANSWER = struct.Struct("!cI")
OK, FAILED = b"\0", b"\1"
MAX_IN_FLIGHT = 128  # signatures asked and not read back: keeps both pipes below their buffers
MAX_STARTS = 3  # children started by one SigningProcess before it signs in-process for good
# Ed25519 signs in about 50 microseconds: less than handing it over and reading it back, so the
# worker does those itself and the child takes the RSA signatures (about 0.3 ms each).
IN_PROCESS = frozenset({dkim.ED25519})


class Ticket:
    """The signatures of one message, asked of the child (``SigningProcess.submit``)."""

    def __init__(self, owner: SigningProcess, unsigned: dkim.Unsigned):
        self.owner = owner
        self.unsigned = unsigned
        self.signatures: list[bytes | None] = [None] * len(unsigned.to_sign)
        self.due = 0  # answers the child still owes this ticket
        self.generation = owner.generation  # which child was asked

    def result(self) -> str:
        """The DKIM-Signature lines: the child's answers (it waits for them), and what the child
        was not asked, or failed, or died before answering, signed here."""
        while self.due:
            if not self.owner.read_one(self):
                break  # the child is gone: sign what is missing here
        for i, sig in enumerate(self.signatures):
            if sig is None:
                key, data = self.unsigned.to_sign[i]
                self.signatures[i] = key.sign(data)
        return self.unsigned.finish(self.signatures)  # type: ignore[arg-type]


class SigningProcess:
    """A child process computing DKIM signatures for one worker, started on first use."""

    def __init__(self, enabled: bool = True) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.starts = 0 if enabled else MAX_STARTS  # disabled: every ticket signs in-process
        self._keys: dict[tuple[str, str], int] = {}  # (algorithm, PEM) -> number in the child
        self._waiting: deque[tuple[Ticket, int]] = deque()  # (ticket, index) in asking order

    # -- the worker's side ----------------------------------------------------------------

    def submit(self, unsigned: dkim.Unsigned) -> Ticket:
        """Ask the child for the signatures it should compute; the rest (Ed25519, or all when
        there is no child) are computed by ``Ticket.result``, where errors are handled."""
        ticket = Ticket(self, unsigned)
        remote = [
            i for i, (key, _d) in enumerate(unsigned.to_sign) if key.algorithm not in IN_PROCESS
        ]
        if not remote or not self._running():
            return ticket
        ticket.generation = self.generation
        try:
            while len(self._waiting) + len(remote) > MAX_IN_FLIGHT:
                if not self.read_one(None):
                    return ticket
            assert self.proc is not None and self.proc.stdin is not None
            for i in remote:
                key, data = unsigned.to_sign[i]
                number = self._key_number(key)
                self.proc.stdin.write(_REQUEST.pack(b"S", number, len(data)) + data)
                self._waiting.append((ticket, i))
                ticket.due += 1
            self.proc.stdin.flush()
        except OSError as e:
            self._lost(f"cannot write to it: {e}")
        return ticket

    def read_one(self, ticket: Ticket | None) -> bool:
        """Read the next answer into the ticket that asked for it; False if the child is
        gone (what it had not answered is then signed in-process)."""
        if ticket is not None and ticket.generation != self.generation:
            return False  # asked of a child that has died since
        if not self._waiting or self.proc is None or self.proc.stdout is None:
            return False
        try:
            head = _read_exact(self.proc.stdout, _ANSWER.size)
            status, length = _ANSWER.unpack(head)
            payload = _read_exact(self.proc.stdout, length)
        except (OSError, EOFError, struct.error) as e:
            self._lost(f"cannot read from it: {e}")
            return False
        owner, i = self._waiting.popleft()
        owner.due -= 1
        if status == OK:
            owner.signatures[i] = payload
        else:  # signed again in-process by Ticket.result, which raises the same error there
            log.warning("DKIM signing process: %s", payload.decode(errors="replace"))
        return True

    def close(self) -> None:
        proc, self.proc = self.proc, None
        self._waiting.clear()
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    # -- the child's lifecycle ------------------------------------------------------------

    def _running(self) -> bool:
        if self.proc is not None:
            return True
        if self.starts >= MAX_STARTS:
            return False
        self.starts += 1
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "okuru.lib.dkim_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            log.warning("cannot start the DKIM signing process (%s): signing in-process", e)
            return False
        self.generation += 1
        self._keys.clear()
        return True

    def _key_number(self, key: dkim.SigningKey) -> int:
        ident = (key.algorithm, key.private_pem)
        number = self._keys.get(ident)
        if number is None:
            assert self.proc is not None and self.proc.stdin is not None
            number = self._keys[ident] = len(self._keys)
            payload = key.algorithm.encode("ascii") + b"\n" + key.private_pem.encode("ascii")
            self.proc.stdin.write(_REQUEST.pack(b"K", number, len(payload)) + payload)
        return number

    def _lost(self, why: str) -> None:
        log.warning("DKIM signing process lost (%s): signing in-process meanwhile", why)
        self.generation += 1  # tickets of the dead child sign what they lack themselves
        self.close()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("the other end closed the pipe")
    return data


# -------------------------------------------------------------------------------------------
# The child


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    keys: dict[int, dkim.SigningKey | Exception] = {}
    while True:
        head = inp.read(_REQUEST.size)
        if not head or len(head) != _REQUEST.size:
            return
        kind, number, length = _REQUEST.unpack(head)
        payload = _read_exact(inp, length)
        if kind == b"K":
            algorithm, _nl, pem = payload.partition(b"\n")
            try:
                keys[number] = dkim.SigningKey("", "", algorithm.decode(), pem.decode())
            except Exception as e:  # reported with each signature asked of it
                keys[number] = e
            continue
        key = keys.get(number, KeyError(f"no key {number}"))
        try:
            if isinstance(key, Exception):
                raise key
            answer = OK, key.sign(payload)
        except Exception as e:
            answer = FAILED, f"{type(e).__name__}: {e}".encode()
        out.write(_ANSWER.pack(answer[0], len(answer[1])) + answer[1])
        out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when it ends: stdin EOF
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
