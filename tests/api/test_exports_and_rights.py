"""The export API's edge cases (a view naming a deleted field, the encodings the CLI names) and
rights checked before the body is validated."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from okuru.accounts.models import Job
from okuru.customers import design
from okuru.customers.models import Customer, View
from tests.api.client import api_client

# Files the jobs write go to a folder of the test's own.
pytestmark = pytest.mark.usefixtures("media")


def post(client: Client, url: str, data) -> object:
    return client.post(url, json.dumps(data), content_type="application/json")


def test_an_export_of_a_view_whose_filter_names_a_deleted_field_is_a_400(member):
    design.add_field("plan", "Plan", "text")
    view = View.objects.create(
        name="Pro",
        filter={"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "pro"}]},
        fields=["customer_id"],
    )
    design.delete_field("plan")
    r = post(api_client(member), "/api/exports", {"fields": ["customer_id"], "view_id": view.pk})
    assert r.status_code == 400
    assert r.json() == {"detail": "Unknown field in filter: plan"}
    assert not Job.objects.exists()


def test_an_export_accepts_utf_8_as_the_cli_says_it(member, django_capture_on_commit_callbacks):
    Customer.objects.create(email="a@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        r = post(api_client(member), "/api/exports", {"fields": ["email"], "encoding": "utf-8"})
    assert r.status_code == 202
    job = Job.objects.get()
    assert job.params["encoding"] == "utf-8-sig"
    assert job.status == Job.Status.SUCCEEDED, job.error


def test_a_caller_without_the_right_gets_a_403_even_for_a_bad_body(member):
    r = post(api_client(member), "/api/fields", {"label": 7})
    assert r.status_code == 403
    assert r.json() == {"detail": "You do not have the right to do this (needs: Database design)."}


def test_a_caller_with_the_right_gets_the_validation_error(owner):
    r = post(api_client(owner), "/api/fields", {"label": "Shop"})
    assert r.status_code == 400
    assert (
        r.json()["detail"]
        == "Invalid request: payload.key: Field required; payload.type: Field required"
    )
