"""Concurrent log-in attempts against a running server, with the standard library only, so
that a separate process can fire them too:

    python -m tests.accounts.loginburst URL START_AT USER:PASSWORD [USER:PASSWORD ...]

sends every attempt at once (one thread each) at the wall-clock time START_AT and prints the
outcomes as JSON: "in", "locked", "source_locked", "wrong" or "http <status>".
"""

from __future__ import annotations

import http.client
import json
import secrets
import string
import sys
import threading
import time
from urllib.parse import urlencode, urlsplit

LOCKED = "Too many failed log-in attempts. Try again"
SOURCE_LOCKED = "Too many failed log-in attempts from your network address."
WRONG = "Wrong user name or password."


def attempt(url: str, username: str, password: str) -> str:
    # Any well-formed CSRF secret works as cookie and form token alike.
    csrf = "".join(secrets.choice(string.ascii_letters) for _ in range(32))
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
        conn.request(
            "POST",
            "/accounts/login/",
            body,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf}",
                "Accept-Language": "en",
            },
        )
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    if response.status == 302:
        return "in"
    if response.status != 200:
        return f"http {response.status}"
    for outcome, marker in (("source_locked", SOURCE_LOCKED), ("locked", LOCKED), ("wrong", WRONG)):
        if marker in text:
            return outcome
    return "http 200 without a known message"


def burst(url: str, attempts: list[tuple[str, str]], start_at: float | None = None) -> list[str]:
    """Every attempt from its own thread, released together."""
    outcomes: list[str] = [""] * len(attempts)
    barrier = threading.Barrier(len(attempts))

    def one(i: int, username: str, password: str) -> None:
        barrier.wait()
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        try:
            outcomes[i] = attempt(url, username, password)
        except OSError as e:
            outcomes[i] = f"error {e}"

    threads = [threading.Thread(target=one, args=(i, u, p)) for i, (u, p) in enumerate(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def main() -> None:
    url, start_at, *pairs = sys.argv[1:]
    attempts = [tuple(pair.split(":", 1)) for pair in pairs]
    print(json.dumps(burst(url, attempts, float(start_at))))


if __name__ == "__main__":
    main()
