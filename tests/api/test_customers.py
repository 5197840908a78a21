from __future__ import annotations

import json

import pytest
from django.test import Client

from okuru.accounts.models import OperationLog
from okuru.customers import design
from okuru.customers.models import Customer
from tests.api.client import api_client


@pytest.fixture
def fields(db):
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    design.add_field("points", "Points", "number")
    design.add_field("member_no", "Member number", "text", unique=True)
    design.add_field("tags", "Tags", "multiselect", choices=["a", "b", "c"])
    design.add_field("birthday", "Birthday", "date")


@pytest.fixture
def customers(fields):
    return [
        Customer.objects.create(email=f"c{i}@example.com", data={"plan": plan, "points": i})
        for i, plan in enumerate(["free", "pro", "pro", "free", "pro"])
    ]


def post_json(client: Client, url: str, data, method: str = "post"):
    return getattr(client, method)(url, json.dumps(data), content_type="application/json")


# --- rights ----------------------------------------------------------------------------------


def test_every_persona_gets_what_the_ui_gives(owner, member, outsider, customers):
    c = customers[0]
    for persona, read, write in ((owner, 200, 201), (member, 200, 201), (outsider, 403, 403)):
        client = api_client(persona)
        assert client.get("/api/customers").status_code == read
        assert client.get("/api/customers/count").status_code == read
        assert client.get(f"/api/customers/{c.pk}").status_code == read
        assert post_json(client, "/api/customers", {"email": "x@example.com"}).status_code == write
    outsider_client = api_client(outsider)
    r = post_json(outsider_client, f"/api/customers/{c.pk}", {"email": "o@example.com"}, "patch")
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "You do not have the right to do this (needs: Customers: read, Customers: write)."
    )
    assert outsider_client.delete(f"/api/customers/{c.pk}").status_code == 403
    c.refresh_from_db()
    assert c.email == "c0@example.com"


def test_a_reader_cannot_write(db, customers):
    from tests.conftest import make_operator

    reader = make_operator("reader", ["customers_read"])
    client = api_client(reader)
    assert client.get("/api/customers").status_code == 200
    assert client.delete(f"/api/customers/{customers[0].pk}").status_code == 403
    assert Customer.objects.filter(pk=customers[0].pk).exists()


# --- reading ---------------------------------------------------------------------------------


def test_it_lists_customers_with_every_field(member, customers):
    r = api_client(member).get("/api/customers")
    assert r.status_code == 200
    body = r.json()
    assert body["next_after"] is None
    first = body["items"][0]
    assert first["customer_id"] == customers[0].pk
    assert first["email"] == "c0@example.com"
    assert first["plan"] == "free"
    assert first["points"] == 0
    assert first["tags"] is None
    assert first["refused"] is False
    assert first["unsubscribed"] == []
    assert "created_at" in first and "updated_at" in first


def test_it_filters_and_pages(member, customers):
    client = api_client(member)
    tree = json.dumps(
        {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]}
    )
    r = client.get("/api/customers", {"filter": tree, "limit": 2})
    body = r.json()
    assert [c["customer_id"] for c in body["items"]] == [customers[1].pk, customers[2].pk]
    assert body["next_after"] == customers[2].pk
    r = client.get("/api/customers", {"filter": tree, "limit": 2, "after": body["next_after"]})
    body = r.json()
    assert [c["customer_id"] for c in body["items"]] == [customers[4].pk]
    assert body["next_after"] is None
    assert client.get("/api/customers/count", {"filter": tree}).json() == {"count": 3}
    assert client.get("/api/customers/count").json() == {"count": 5}


def test_it_rejects_a_bad_filter_with_the_engines_message(member, customers):
    client = api_client(member)
    bad = json.dumps({"match": "all", "conditions": [{"field": "nope", "op": "eq", "value": 1}]})
    r = client.get("/api/customers", {"filter": bad})
    assert r.status_code == 400
    assert r.json() == {"detail": "Unknown field in filter: nope"}
    r = client.get("/api/customers/count", {"filter": "{not json"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("The filter is not valid JSON:")


def test_it_rejects_a_limit_out_of_range(member, customers):
    r = api_client(member).get("/api/customers", {"limit": 0})
    assert r.status_code == 400
    assert r.json() == {"detail": "limit must be between 1 and 1000."}


def test_a_missing_customer_is_a_404(member, db):
    r = api_client(member).get("/api/customers/424242")
    assert r.status_code == 404
    assert r.json() == {"detail": "No customer with Customer ID 424242."}


def test_the_list_does_not_query_per_row(member, customers, django_assert_max_num_queries):
    client = api_client(member)
    # token, last used, rights (2), topics, fields, customers
    with django_assert_max_num_queries(7):
        assert len(client.get("/api/customers").json()["items"]) == 5


# --- writing ---------------------------------------------------------------------------------


def test_it_creates_a_customer_and_logs_it_with_the_ip(member, fields):
    r = post_json(
        api_client(member),
        "/api/customers",
        {
            "email": "new@example.com",
            "plan": "pro",
            "points": 12.5,
            "tags": ["a", "c"],
            "birthday": "1990-02-03",
            "refused": True,
        },
    )
    assert r.status_code == 201
    body = r.json()
    customer = Customer.objects.get(pk=body["customer_id"])
    assert customer.email == "new@example.com"
    assert customer.refused is True
    assert customer.data == {
        "plan": "pro",
        "points": 12.5,
        "tags": ["a", "c"],
        "birthday": "1990-02-03",
    }
    entry = OperationLog.objects.get(action="customer_create")
    assert entry.target == str(customer.pk)
    assert entry.operator_id == member.pk
    assert entry.group_names == "Marketing"
    assert entry.source_ip == "198.51.100.9"
    assert entry.detail["fields"] == sorted(entry.detail["fields"])
    assert "email" in entry.detail["fields"]


@pytest.mark.parametrize(
    "payload, detail",
    [
        (
            {"email": "not-an-address"},
            "email: not an e-mail address (it needs the form name@example.com): not-an-address",
        ),
        ({"plan": "gold"}, "plan: not one of the choices: gold"),
        ({"points": "lots"}, "points: not a number: lots"),
        ({"birthday": "2023-02-30"}, "birthday: no such date: 2023-02-30"),
        ({"tags": ["z"]}, "tags: not one of the choices: z"),
        ({"refused": "maybe"}, "refused: not a flag (1 or 0): maybe"),
        ({"nope": "x"}, "Unknown field: nope"),
        ({"customer_id": 5}, "customer_id is set by Okuru and cannot be written."),
        ({"plan": ["free"]}, "plan: give a single value."),
    ],
)
def test_it_rejects_bad_values_with_the_import_messages(member, fields, payload, detail):
    r = post_json(api_client(member), "/api/customers", payload)
    assert r.status_code == 400
    assert r.json()["detail"] == detail
    assert not Customer.objects.exists()
    assert not OperationLog.objects.filter(action="customer_create").exists()


def test_it_enforces_unique_fields(member, fields):
    Customer.objects.create(data={"member_no": "M-1"})
    r = post_json(api_client(member), "/api/customers", {"member_no": "M-1"})
    assert r.status_code == 400
    assert r.json()["detail"] == "member_no: Another customer already has this value."
    assert r.json()["errors"] == {"member_no": ["Another customer already has this value."]}


def test_it_enforces_required_fields_on_create(member, fields):
    design.set_field_options("plan", required=True)
    r = post_json(api_client(member), "/api/customers", {"email": "x@example.com"})
    assert r.status_code == 400
    assert r.json()["detail"] == "plan: a value is required"


def test_an_update_changes_only_the_given_fields(member, fields):
    customer = Customer.objects.create(
        email="keep@example.com",
        refused=True,
        unsubscribed=[],
        data={"plan": "free", "tags": ["a"], "points": 3, "member_no": "=1+1"},
    )
    r = post_json(
        api_client(member), f"/api/customers/{customer.pk}", {"plan": "pro"}, method="patch"
    )
    assert r.status_code == 200
    assert r.json()["plan"] == "pro"
    customer.refresh_from_db()
    assert customer.email == "keep@example.com"
    assert customer.refused is True
    assert customer.data == {"plan": "pro", "tags": ["a"], "points": 3, "member_no": "=1+1"}
    assert OperationLog.objects.get(action="customer_update").detail == {"fields": ["plan"]}


def test_an_update_clears_a_field_with_null(member, fields):
    customer = Customer.objects.create(email="a@example.com", data={"plan": "free"})
    client = api_client(member)
    r = post_json(client, f"/api/customers/{customer.pk}", {"plan": None}, method="patch")
    assert r.status_code == 200
    customer.refresh_from_db()
    assert "plan" not in customer.data


def test_it_deletes_a_customer(member, customers):
    target = customers[0]
    r = api_client(member).delete(f"/api/customers/{target.pk}")
    assert r.status_code == 204
    assert not Customer.objects.filter(pk=target.pk).exists()
    entry = OperationLog.objects.get(action="customer_delete")
    assert (entry.target, entry.source_ip) == (str(target.pk), "198.51.100.9")
    assert api_client(member).delete(f"/api/customers/{target.pk}").status_code == 404
