"""A delivery sent for real to three customers, for the bounces to come back about."""

from __future__ import annotations

import pytest

from okuru.customers.models import Customer
from okuru.mailings.testing import Sink, make_relay
from tests.bounces.inbound import deliver


@pytest.fixture
def sink(db):
    """An SMTP sink on a free port, and the default relay pointing at it."""
    with Sink() as s:
        make_relay(s.port)
        yield s


@pytest.fixture
def sent(sink):
    """A delivery sent to gone@, full@ and fine@example.com through ``sink``."""
    for name in ("gone", "full", "fine"):
        Customer.objects.create(email=f"{name}@example.com")
    delivery = deliver()
    assert delivery.sent_count == 3 and len(sink.handler.messages) == 3
    return delivery
