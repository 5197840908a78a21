"""The preview's fast paths count the same as the plain query: the conditional sums on SQLite
(instead of GROUP BY) and the list-cleaning probe left out while the list is empty."""

from __future__ import annotations

import pytest
from django.db import connection

from okuru.customers.models import Customer
from okuru.mailings import targeting
from okuru.mailings.models import ListCleaning
from okuru.mailings.testing import make_mail

pytestmark = pytest.mark.django_db


def plain_counts(snap: dict) -> dict:
    eligible, params = targeting.eligible_sql(snap, targeting.catalogue())
    with connection.cursor() as cur:
        cur.execute(f"SELECT reason, COUNT(*) FROM ({eligible}) el GROUP BY reason", params)
        return {k: v for k, v in cur.fetchall()}


@pytest.mark.parametrize("cleaned", [False, True])
def test_the_counts_by_reason_are_those_of_a_plain_group_by(cleaned):
    for i in range(12):
        Customer.objects.create(
            email="" if i == 0 else f"c{i}@example.com",
            refused=i == 1,
            email_error_count=9 if i == 2 else 0,
        )
    if cleaned:
        ListCleaning.objects.create(address="c3@example.com")
    snap = targeting.snapshot(make_mail())
    counts = targeting.counts(snap)
    plain = plain_counts(snap)
    # A list-cleaned address is not excluded at freeze: it enters the ledger and the send-time
    # screen records it as a list-cleaning error (+99), so the preview counts it as matched.
    assert counts["after_exclusions"] == plain.pop(None) == 9
    assert {k: v for k, v in counts["excluded"].items() if v} == plain
    assert counts["excluded"]["list_cleaning"] == 0
