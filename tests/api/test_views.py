from __future__ import annotations

import json

from django.test import Client

from okuru.accounts.models import OperationLog
from okuru.customers import design
from okuru.customers.models import View
from tests.api.client import api_client


def send(client: Client, method: str, url: str, data=None):
    return getattr(client, method)(url, json.dumps(data), content_type="application/json")


PRO = {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]}
ELIGIBLE = ["customer_id", "email", "email_error_count", "refused", "unsubscribed"]


def make_view(name: str = "Pro customers") -> View:
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    return View.objects.create(name=name, filter=PRO, fields=["customer_id", "plan"])


def test_rights_per_persona(owner, member, outsider):
    view = make_view()
    body = {"name": "All", "fields": ["customer_id"]}
    for persona, read, write in ((owner, 200, 201), (member, 200, 201), (outsider, 403, 403)):
        client = api_client(persona)
        assert client.get("/api/views").status_code == read
        assert client.get(f"/api/views/{view.pk}").status_code == read
        assert (
            send(client, "post", "/api/views", {**body, "name": persona.username}).status_code
            == write
        )
    client = api_client(outsider)
    assert send(client, "patch", f"/api/views/{view.pk}", {"name": "x"}).status_code == 403
    assert client.delete(f"/api/views/{view.pk}").status_code == 403
    view.refresh_from_db()
    assert view.name == "Pro customers"


def test_it_lists_and_gets_views(member):
    view = make_view()
    client = api_client(member)
    assert [v["name"] for v in client.get("/api/views").json()] == ["Pro customers"]
    body = client.get(f"/api/views/{view.pk}").json()
    assert body["filter"] == PRO
    assert body["fields"] == ["customer_id", "plan"]
    assert body["delivery_eligible"] is False
    r = client.get("/api/views/999999")
    assert r.status_code == 404
    assert r.json() == {"detail": "No view with ID 999999."}


def test_it_creates_a_view(member):
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    r = send(
        api_client(member), "post", "/api/views", {"name": "Pro", "filter": PRO, "fields": ELIGIBLE}
    )
    assert r.status_code == 201
    assert r.json()["delivery_eligible"] is True
    view = View.objects.get(name="Pro")
    assert (view.filter, view.fields, view.owner_id) == (PRO, ELIGIBLE, member.pk)
    entry = OperationLog.objects.get(action="view_create")
    assert (entry.target, entry.source_ip, entry.operator_id) == ("Pro", "198.51.100.9", member.pk)


def test_it_rejects_a_bad_view_with_the_editor_messages(member):
    make_view()
    client = api_client(member)
    r = send(client, "post", "/api/views", {"name": "Pro customers", "fields": ["customer_id"]})
    assert r.status_code == 400
    assert r.json()["detail"] == "name: A view with this name already exists."
    r = send(client, "post", "/api/views", {"name": "New", "fields": ["nope"]})
    assert r.json()["detail"] == "Unknown field: nope"
    r = send(client, "post", "/api/views", {"name": "New", "fields": []})
    assert r.json()["detail"] == "Choose at least one field."
    bad = {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "gold"}]}
    r = send(client, "post", "/api/views", {"name": "New", "filter": bad, "fields": ["email"]})
    assert r.json()["detail"] == "filter: Plan: not one of the choices: gold"
    assert View.objects.count() == 1


def test_it_changes_only_what_is_given(member):
    view = make_view()
    r = send(api_client(member), "patch", f"/api/views/{view.pk}", {"name": "Renamed"})
    assert r.status_code == 200
    view.refresh_from_db()
    assert (view.name, view.filter, view.fields) == ("Renamed", PRO, ["customer_id", "plan"])
    assert OperationLog.objects.get(action="view_update").target == "Renamed"


def test_it_deletes_a_view(member):
    view = make_view()
    r = api_client(member).delete(f"/api/views/{view.pk}")
    assert r.status_code == 204
    assert not View.objects.exists()
    assert OperationLog.objects.get(action="view_delete").detail == {"id": view.pk}
