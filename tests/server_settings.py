"""Settings for a real server started by a test: the product's own, with a password hasher
that counts the checks (``tests.counting_hasher``)."""

from okuru.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.counting_hasher.CountingMD5PasswordHasher"]
