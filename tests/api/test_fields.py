from __future__ import annotations

import json

from django.test import Client

from okuru.accounts.models import OperationLog
from okuru.customers import design
from okuru.customers.models import Customer, Field
from tests.api.client import api_client


def send(client: Client, method: str, url: str, data=None):
    return getattr(client, method)(url, json.dumps(data), content_type="application/json")


NEW_FIELD = {"key": "plan", "label": "Plan", "type": "select", "choices": ["free", "pro"]}


def test_rights_per_persona(owner, member, outsider):
    design.add_field("shop", "Shop", "text")
    for persona, read, design_status in (
        (owner, 200, 201),
        (member, 200, 403),
        (outsider, 403, 403),
    ):
        client = api_client(persona)
        assert client.get("/api/fields").status_code == read
        assert send(client, "post", "/api/fields", NEW_FIELD).status_code == design_status
    for persona in (member, outsider):
        client = api_client(persona)
        assert send(client, "patch", "/api/fields/shop", {"label": "Store"}).status_code == 403
        assert client.delete("/api/fields/shop").status_code == 403
    assert Field.objects.get(key="shop").label == "Shop"
    r = api_client(member).delete("/api/fields/shop")
    assert r.json() == {"detail": "You do not have the right to do this (needs: Database design)."}


def test_it_lists_standard_then_user_fields(member):
    design.add_field("shop", "Shop", "text", unique=True)
    body = api_client(member).get("/api/fields").json()
    keys = [f["key"] for f in body]
    assert keys[0] == "customer_id"
    assert keys[-1] == "shop"
    assert body[-1] == {
        "key": "shop",
        "label": "Shop",
        "type": "text",
        "choices": [],
        "required": False,
        "unique": True,
        "standard": False,
    }
    assert next(f for f in body if f["key"] == "email")["standard"] is True


def test_it_adds_a_field_through_the_design_action(owner):
    r = send(api_client(owner), "post", "/api/fields", NEW_FIELD)
    assert r.status_code == 201
    assert r.json()["choices"] == ["free", "pro"]
    field = Field.objects.get(key="plan")
    assert (field.label, field.type, field.choices) == ("Plan", "select", ["free", "pro"])
    entry = OperationLog.objects.get(action="field_add")
    assert (entry.target, entry.operator_id, entry.source_ip) == ("plan", owner.pk, "198.51.100.9")
    assert entry.group_names == "Administrators"


def test_it_rejects_a_bad_field_with_the_design_message(owner):
    client = api_client(owner)
    r = send(client, "post", "/api/fields", {**NEW_FIELD, "key": "Bad Key"})
    assert r.status_code == 400
    assert r.json() == {
        "detail": "key: Use lower-case letters, digits and _ ; start with a letter."
    }
    r = send(client, "post", "/api/fields", {**NEW_FIELD, "choices": []})
    assert r.json() == {"detail": "choices: A select field needs at least one choice."}
    r = send(client, "post", "/api/fields", {"key": "x"})
    assert r.status_code == 400
    assert (
        r.json()["detail"]
        == "Invalid request: payload.label: Field required; payload.type: Field required"
    )
    assert not Field.objects.exists()


def test_it_renames_a_field_and_keeps_its_data(owner):
    design.add_field("shop", "Shop", "text")
    customer = Customer.objects.create(data={"shop": "Ginza"})
    r = send(api_client(owner), "patch", "/api/fields/shop", {"label": "Store"})
    assert r.status_code == 200
    assert r.json()["label"] == "Store"
    assert Field.objects.get(key="shop").label == "Store"
    customer.refresh_from_db()
    assert customer.data == {"shop": "Ginza"}
    assert OperationLog.objects.get(action="field_rename").detail == {"from": "Shop", "to": "Store"}


def test_it_changes_options_and_refuses_unique_over_duplicates(owner):
    design.add_field("shop", "Shop", "text")
    Customer.objects.create(data={"shop": "Ginza"})
    Customer.objects.create(data={"shop": "Ginza"})
    client = api_client(owner)
    r = send(client, "patch", "/api/fields/shop", {"label": "Store", "unique": True})
    assert r.status_code == 400
    assert r.json() == {
        "detail": "Store cannot be made unique: some customers share a value."
        " Make the values unique first."
    }
    # All or nothing: the rename in the same request did not happen either.
    assert Field.objects.get(key="shop").label == "Shop"
    r = send(client, "patch", "/api/fields/shop", {"required": True})
    assert r.status_code == 200
    assert Field.objects.get(key="shop").required


def test_it_deletes_a_field_and_its_data(owner):
    design.add_field("shop", "Shop", "text")
    customer = Customer.objects.create(data={"shop": "Ginza", "x": 1})
    r = api_client(owner).delete("/api/fields/shop")
    assert r.status_code == 204
    assert not Field.objects.filter(key="shop").exists()
    customer.refresh_from_db()
    assert "shop" not in customer.data
    assert OperationLog.objects.get(action="field_delete").target == "shop"


def test_standard_and_missing_fields(owner):
    client = api_client(owner)
    r = client.delete("/api/fields/email")
    assert r.status_code == 400
    assert r.json() == {"detail": "email is a standard field: it cannot be changed or deleted."}
    r = send(client, "patch", "/api/fields/nope", {"label": "x"})
    assert r.status_code == 404
    assert r.json() == {"detail": "No such field: nope"}
