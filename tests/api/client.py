"""The API as an integrator calls it: a test client carrying a bearer token of its own."""

from __future__ import annotations

from typing import Any

from django.test import Client

from okuru.accounts.models import ApiToken, Operator

# Where the calls come from, as the operation log records it.
CALLER_IP = "198.51.100.9"


def api_client(operator: Operator, ip: str = CALLER_IP, **kwargs: Any) -> Client:
    """A client calling the API as ``operator`` (a fresh token, English messages) from ``ip``;
    ``kwargs`` go to the Client (``raise_request_exception=False`` to see the 500 page)."""
    _token, key = ApiToken.issue(operator, "tests")
    return Client(
        headers={"authorization": f"Bearer {key}", "accept-language": "en"},
        REMOTE_ADDR=ip,
        **kwargs,
    )
