"""Settings for a real server started by a test: the product's own, with a password hasher
that counts the checks (``tests.accounts.counting_hasher``)."""

from okuru.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.accounts.counting_hasher.CountingMD5PasswordHasher"]
