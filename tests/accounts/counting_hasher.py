"""A password hasher that notes every password check in a file, so that a test can count the
checks a real server (its own processes) made. Used through ``tests.accounts.server_settings``."""

from __future__ import annotations

import os

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingMD5PasswordHasher(MD5PasswordHasher):
    # Same algorithm name: the hashes that the test process stored verify unchanged.
    def verify(self, password: str, encoded: str) -> bool:
        fd = os.open(os.environ["OKURU_TEST_CHECK_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            # One short O_APPEND write: atomic across processes and threads.
            os.write(fd, b"check\n")
        finally:
            os.close(fd)
        return super().verify(password, encoded)


def checks(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0
