import json

import pytest

from okuru.accounts.models import OperationLog
from okuru.customers.models import Field, View
from tests.conftest import make_operator

pytestmark = pytest.mark.django_db

ELIGIBLE = ["customer_id", "email", "email_error_count", "refused", "unsubscribed"]


@pytest.fixture
def view():
    Field.objects.create(key="age", label="Age", type="number")
    return View.objects.create(name="All", fields=["email", "age"], filter={})


def post_data(name="Adults", fields=("email", "age"), conditions=()):
    return {
        "name": name,
        "filter": json.dumps({"match": "all", "conditions": list(conditions)}),
        "fields": list(fields),
    }


@pytest.mark.parametrize("path", ["/views/", "/views/new/", "/views/{id}/", "/views/{id}/delete/"])
def test_it_redirects_anonymous_and_forbids_outsiders(client, outsider_client, view, path):
    url = path.format(id=view.pk)
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")
    assert outsider_client.get(url).status_code == 403


def test_readers_see_views_but_cannot_change_them(client, view):
    reader = make_operator("reader", ["customers_read"])
    client.force_login(reader)
    r = client.get("/views/")
    assert r.status_code == 200
    assert b"All" in r.content
    assert client.get("/views/new/").status_code == 403
    assert client.post(f"/views/{view.pk}/delete/").status_code == 403
    assert View.objects.filter(pk=view.pk).exists()


def test_the_list_shows_the_delivery_eligible_badge(member_client, view):
    View.objects.create(name="Deliverable", fields=ELIGIBLE)
    r = member_client.get("/views/")
    assert r.status_code == 200
    assert r.content.decode().count("delivery-eligible</span>") == 1


def test_a_new_view_starts_delivery_eligible(member_client, view):
    r = member_client.get("/views/new/")
    assert [k for k, _ in r.context["chosen_fields"]] == ELIGIBLE


def test_it_creates_a_view_with_ordered_fields_and_logs_it(member_client, member, view):
    cond = {"field": "age", "op": "gt", "value": "20"}
    r = member_client.post(
        "/views/new/", post_data(fields=["age", "email", "age"], conditions=[cond])
    )
    assert r.status_code == 302
    v = View.objects.get(name="Adults")
    assert v.fields == ["age", "email"]
    assert v.filter == {"match": "all", "conditions": [cond]}
    assert v.owner == member
    assert OperationLog.objects.get(action="view_create").target == "Adults"


@pytest.mark.parametrize(
    "data, message",
    [
        (post_data(name=""), "This field is required."),
        (post_data(name="All"), "A view with this name already exists."),
        (post_data(fields=[]), "Choose at least one field."),
        (post_data(fields=["email", "nope"]), "Unknown field: nope"),
        (
            post_data(conditions=[{"field": "age", "op": "eq", "value": "old"}]),
            "Age: not a number: old",
        ),
    ],
)
def test_it_rejects_bad_views(member_client, view, data, message):
    r = member_client.post("/views/new/", data)
    assert r.status_code == 200
    assert message in r.content.decode()
    assert View.objects.count() == 1


def test_a_rejected_view_keeps_what_was_typed(member_client, view):
    cond = {"field": "age", "op": "eq", "value": "old"}
    r = member_client.post("/views/new/", post_data(fields=["age"], conditions=[cond]))
    assert json.loads(r.context["filter_json"])["conditions"] == [cond]
    assert [k for k, _ in r.context["chosen_fields"]] == ["age"]


def test_it_edits_a_view(member_client, view):
    r = member_client.post(f"/views/{view.pk}/", post_data(name="All", fields=ELIGIBLE))
    assert r.status_code == 302
    view.refresh_from_db()
    assert view.fields == ELIGIBLE
    assert view.is_delivery_eligible
    assert OperationLog.objects.get(action="view_update").target == "All"


def test_it_deletes_a_view_after_confirmation(member_client, view):
    assert b"will be deleted" in member_client.get(f"/views/{view.pk}/delete/").content
    r = member_client.post(f"/views/{view.pk}/delete/")
    assert r.status_code == 302
    assert not View.objects.exists()
    assert OperationLog.objects.get(action="view_delete").target == "All"
