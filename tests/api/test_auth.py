from __future__ import annotations

import json

import pytest
from django.test import Client

from okuru.accounts.models import ApiToken, Operator
from tests.api.client import api_client
from tests.conftest import client_for

MISSING = "Authentication required: send the header Authorization: Bearer <token>."
INVALID = "The API token is not valid: it is unknown or revoked, or its operator is deactivated."


def test_it_refuses_a_request_without_a_token(member):
    r = Client().get("/api/customers")
    assert r.status_code == 401
    assert r.json() == {"detail": MISSING}
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="okuru"'


def test_a_session_is_not_enough(member):
    r = client_for(member).get("/api/customers")
    assert r.status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer okuru_forged-token-that-was-never-issued",
        "Bearer something-else",
        "Basic bWVtYmVyOnBhc3N3b3Jk",
    ],
)
def test_it_refuses_a_forged_token(member, header):
    ApiToken.issue(member, "real")
    r = Client(headers={"authorization": header}).get("/api/customers")
    assert r.status_code == 401
    assert r.json() == {"detail": INVALID}


def test_it_refuses_a_revoked_token(member):
    token, key = ApiToken.issue(member, "old")
    token.revoke()
    r = Client(headers={"authorization": f"Bearer {key}"}).get("/api/jobs")
    assert r.status_code == 401
    assert r.json() == {"detail": INVALID}


def test_it_refuses_the_token_of_a_deactivated_operator(member):
    _token, key = ApiToken.issue(member, "sync")
    Operator.objects.filter(pk=member.pk).update(is_active=False)
    r = Client(headers={"authorization": f"Bearer {key}"}).get("/api/jobs")
    assert r.status_code == 401


def test_a_valid_token_works_and_is_marked_used(member):
    token, key = ApiToken.issue(member, "sync")
    r = Client(headers={"authorization": f"Bearer {key}"}).get("/api/jobs")
    assert r.status_code == 200
    assert r.json() == []
    token.refresh_from_db()
    assert token.last_used is not None


def test_writes_need_no_csrf_token(member):
    # Integrators send a bearer token, never a CSRF token, even when a session cookie is there.
    _token, key = ApiToken.issue(member, "sync")
    client = Client(enforce_csrf_checks=True, headers={"authorization": f"Bearer {key}"})
    client.force_login(member)
    r = client.post(
        "/api/views", json.dumps({"name": "All", "fields": ["email"]}), "application/json"
    )
    assert r.status_code == 201


def test_the_403_names_the_missing_right(outsider):
    r = api_client(outsider).get("/api/customers")
    assert r.status_code == 403
    assert r.json() == {"detail": "You do not have the right to do this (needs: Customers: read)."}


def test_a_bad_parameter_is_a_400_with_a_readable_detail(member):
    r = api_client(member).get("/api/customers", {"limit": "many"})
    assert r.status_code == 400
    body = r.json()
    assert body["detail"] == (
        "Invalid request: limit: Input should be a valid integer, "
        "unable to parse string as an integer"
    )
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_the_openapi_schema_loads(db):
    r = Client().get("/api/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["info"]["title"] == "Okuru API"
    for path in (
        "/api/customers",
        "/api/customers/count",
        "/api/customers/{customer_id}",
        "/api/fields",
        "/api/fields/{key}",
        "/api/views",
        "/api/views/{view_id}",
        "/api/imports",
        "/api/exports",
        "/api/exports/{job_id}/file",
        "/api/jobs",
        "/api/jobs/{job_id}",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"


def test_the_docs_page_uses_no_cdn(db):
    r = Client().get("/api/docs")
    assert r.status_code == 200
    page = r.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
