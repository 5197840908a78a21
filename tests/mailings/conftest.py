"""Fixtures the mailings tests share."""

import pytest

from okuru.mailings import testing


@pytest.fixture
def sink():
    """An SMTP sink on a free port, and the default relay pointing at it."""
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        yield sink
