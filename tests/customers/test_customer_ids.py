"""A Customer ID is assigned on insert and never reused, whether
the customer is added on a screen, through the API or by an import."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from okuru.accounts.models import ApiToken
from okuru.customers.importer import run_import
from okuru.customers.models import Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def last_deleted():
    """Three customers; the newest is deleted. Returns its Customer ID."""
    ids = [Customer.objects.create(email=f"c{i}@example.com").pk for i in range(3)]
    Customer.objects.filter(pk=ids[-1]).delete()
    return ids[-1]


def test_a_customer_added_on_the_screen_gets_a_new_id(owner_client, last_deleted):
    owner_client.post("/customers/new/", {"email": "new@example.com"})
    assert Customer.objects.get(email="new@example.com").pk > last_deleted


def test_a_customer_added_through_the_api_gets_a_new_id(member, last_deleted):
    _token, key = ApiToken.issue(member, "t")
    client = Client(headers={"authorization": f"Bearer {key}"})
    r = client.post("/api/customers", json.dumps({"email": "new@example.com"}), "application/json")
    assert r.json()["customer_id"] > last_deleted


@pytest.mark.parametrize("mode", ["insert", "upsert"])
def test_imported_customers_get_new_ids(tmp_path, last_deleted, mode):
    path = tmp_path / "in.csv"
    path.write_text("Customer ID,PC e-mail\n,new1@example.com\n,new2@example.com\n")
    assert run_import(path, mode=mode, key="customer_id").inserted == 2
    new = Customer.objects.filter(email__startswith="new").values_list("pk", flat=True)
    assert min(new) > last_deleted


def test_a_deleted_customers_id_cannot_be_imported_back(tmp_path, last_deleted):
    path = tmp_path / "in.csv"
    path.write_text(f"Customer ID,PC e-mail\n{last_deleted},back@example.com\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.inserted, result.rejected) == (0, 1)
    assert not Customer.objects.filter(pk=last_deleted).exists()
