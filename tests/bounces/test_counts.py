"""The error-count update (``okuru.bounces.counts``) that sending and bounces both use."""

from __future__ import annotations

import pytest

from okuru.bounces import counts
from okuru.customers.models import Customer

pytestmark = pytest.mark.django_db


def test_it_adds_each_weight_to_the_address_used_in_one_statement(django_assert_num_queries):
    a = Customer.objects.create(email="A@Example.com", mobile_email="a@mobile.example")
    b = Customer.objects.create(email="b@example.com", email_error_count=2)
    moved = Customer.objects.create(email="new@example.com")
    with django_assert_num_queries(1):
        counts.add(
            "email",
            [
                (a.pk, "a@example.com", 99),  # matched case-insensitively
                (b.pk, "b@example.com", 1),
                (moved.pk, "old@example.com", 99),  # the customer has a new address since
            ],
        )
    a.refresh_from_db(), b.refresh_from_db(), moved.refresh_from_db()
    assert (a.email_error_count, a.mobile_error_count) == (99, 0)
    assert b.email_error_count == 3
    assert moved.email_error_count == 0


def test_it_counts_the_mobile_address_on_its_own_count():
    c = Customer.objects.create(email="c@example.com", mobile_email="c@mobile.example")
    counts.add("mobile_email", [(c.pk, "C@MOBILE.example", 1)])
    c.refresh_from_db()
    assert (c.email_error_count, c.mobile_error_count) == (0, 1)


def test_nothing_to_add_runs_no_query(django_assert_num_queries):
    c = Customer.objects.create(email="c@example.com")
    with django_assert_num_queries(0):
        counts.add("email", [])
        counts.add("email", [(c.pk, "c@example.com", 0)])
