import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from okuru.accounts.models import OperationLog
from okuru.customers import views
from okuru.customers.models import Customer, Field, Topic, View
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    Field.objects.create(key="name", label="Name", type="text")
    Field.objects.create(key="age", label="Age", type="number")
    Field.objects.create(key="code", label="Code", type="text", unique=True)
    Topic.objects.create(key="news", name="News")
    return [
        Customer.objects.create(email="a@example.com", data={"name": "Aoki", "age": 30}),
        Customer.objects.create(email="b@example.com", data={"name": "Baba", "age": 45}),
        Customer.objects.create(mobile_email="c@example.jp", data={"name": "Chiba"}),
    ]


def form_data(client, url, **changes):
    """What the browser would post: the form as shown, with ``changes``."""
    form = client.get(url).context["form"]
    data = {}
    for bf in form:
        value = bf.value()
        if value is True:
            data[bf.name] = "on"
        elif value not in (None, False):
            data[bf.name] = value
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def tree(*conditions, match="all"):
    return json.dumps({"match": match, "conditions": list(conditions)})


# --- authorization ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/customers/count/", "/customers/new/"])
def test_it_redirects_anonymous_to_login(client, url):
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", ["/", "/customers/count/", "/customers/new/"])
def test_it_forbids_outsiders(outsider_client, url):
    assert outsider_client.get(url).status_code == 403


def test_it_forbids_outsiders_the_detail_page(outsider_client, people):
    assert outsider_client.get(f"/customers/{people[0].pk}/").status_code == 403
    r = outsider_client.post(f"/customers/{people[0].pk}/delete/")
    assert r.status_code == 403
    assert Customer.objects.filter(pk=people[0].pk).exists()


def test_member_and_owner_see_the_list(member_client, owner_client, people):
    for c in (member_client, owner_client):
        r = c.get("/")
        assert r.status_code == 200
        assert b"a@example.com" in r.content


def test_a_reader_sees_values_but_cannot_save(people):
    from tests.conftest import make_operator

    reader = make_operator("reader", ["customers_read"])
    c = client_for(reader)
    r = c.get(f"/customers/{people[0].pk}/")
    assert r.status_code == 200
    assert b"Aoki" in r.content
    assert b'type="submit">Save' not in r.content
    r = c.post(f"/customers/{people[0].pk}/", {"email": "x@example.com"})
    assert r.status_code == 403
    people[0].refresh_from_db()
    assert people[0].email == "a@example.com"
    assert c.get("/customers/new/").status_code == 403


# --- list ------------------------------------------------------------------------------------


def test_it_escapes_customer_values_in_the_list(owner_client, people):
    people[0].data["name"] = "<script>alert(1)</script>"
    people[0].save()
    r = owner_client.get("/")
    assert b"<script>alert(1)</script>" not in r.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in r.content


def test_it_filters_the_list(owner_client, people):
    r = owner_client.get("/", {"filter": tree({"field": "age", "op": "gt", "value": "40"})})
    assert r.status_code == 200
    assert r.context["total"] == 1
    assert [c.email for c, _ in r.context["rows"]] == ["b@example.com"]


def test_it_shows_the_filter_error_message(owner_client, people):
    r = owner_client.get("/", {"filter": tree({"field": "age", "op": "eq", "value": "old"})})
    assert r.status_code == 200
    assert r.context["filter_error"] == "Age: not a number: old"
    assert b"Age: not a number: old" in r.content


def test_it_shows_bad_json_as_a_filter_error(owner_client, people):
    r = owner_client.get("/", {"filter": "{nope"})
    assert r.context["filter_error"].startswith("The filter is not valid JSON")


def test_choosing_a_view_loads_its_filter_and_columns(owner_client, people):
    view = View.objects.create(
        name="Over 40",
        fields=["email", "name"],
        filter={"match": "all", "conditions": [{"field": "age", "op": "gt", "value": "40"}]},
    )
    r = owner_client.get("/", {"view": view.pk})
    assert r.context["total"] == 1
    assert [s.key for s in r.context["columns"]] == ["customer_id", "email", "name"]
    assert json.loads(r.context["filter_json"]) == view.filter
    # A filter of one's own replaces the view's, the columns stay the view's.
    r = owner_client.get("/", {"view": view.pk, "filter": tree()})
    assert r.context["total"] == 3
    assert [s.key for s in r.context["columns"]] == ["customer_id", "email", "name"]


def test_it_pages_by_customer_id(owner_client, people, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    r = owner_client.get("/")
    ids = [c.pk for c, _ in r.context["rows"]]
    assert ids == [people[0].pk, people[1].pk]
    assert r.context["prev_url"] == ""
    r = owner_client.get("/" + r.context["next_url"])
    assert [c.pk for c, _ in r.context["rows"]] == [people[2].pk]
    assert r.context["next_url"] == ""
    r = owner_client.get("/" + r.context["prev_url"])
    assert [c.pk for c, _ in r.context["rows"]] == [people[0].pk, people[1].pk]
    assert r.context["prev_url"] == ""


def _list_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_a_list_page_costs_the_same_queries_whatever_its_size(owner_client, people):
    few = _list_queries(owner_client, "/")
    Customer.objects.bulk_create(
        Customer(email=f"x{i}@example.com", data={"name": f"n{i}"}) for i in range(60)
    )
    assert _list_queries(owner_client, "/") == few
    assert _list_queries(owner_client, "/?after=10") == few


def test_the_list_page_query_count(owner_client, people, django_assert_num_queries):
    owner_client.get("/")  # warm the session
    # session, operator, its permissions (2), topics + fields (catalogue), topics (builder),
    # count, one page of rows, views for the selector, unread notices.
    with django_assert_num_queries(11):
        owner_client.get("/")


# --- live count ------------------------------------------------------------------------------


def test_the_count_endpoint_counts(member_client, people):
    r = member_client.get(
        "/customers/count/", {"filter": tree({"field": "email", "op": "has_value"})}
    )
    assert r.status_code == 200
    assert r.json() == {"count": 2, "text": "2 customers match"}


def test_the_count_endpoint_reports_filter_errors(member_client, people):
    r = member_client.get(
        "/customers/count/", {"filter": tree({"field": "nope", "op": "eq", "value": "1"})}
    )
    assert r.status_code == 400
    assert r.json() == {"error": "Unknown field in filter: nope"}


def test_the_count_endpoint_refuses_absurd_filters(member_client, people):
    r = member_client.get("/customers/count/", {"filter": "x" * (views.MAX_FILTER_CHARS + 1)})
    assert r.status_code == 400
    assert r.json() == {"error": "The filter is too long."}


def test_the_count_endpoint_is_get_only(member_client, people):
    assert member_client.post("/customers/count/").status_code == 405


# --- detail, create, edit, delete ------------------------------------------------------------


def test_it_edits_a_customer_and_logs_it(member_client, people):
    c = people[0]
    url = f"/customers/{c.pk}/"
    r = member_client.post(url, form_data(member_client, url, email="new@example.com", age="31"))
    assert r.status_code == 302
    c.refresh_from_db()
    assert c.email == "new@example.com"
    assert c.data == {"name": "Aoki", "age": 31}
    log = OperationLog.objects.get(action="customer_update")
    assert log.target == str(c.pk)
    assert log.operator_name == "member"
    assert log.detail == {"fields": ["age", "email"]}


def test_it_rejects_bad_values_with_the_import_messages(member_client, people):
    c = people[0]
    url = f"/customers/{c.pk}/"
    r = member_client.post(url, form_data(member_client, url, email="not-an-address", age="old"))
    assert r.status_code == 200
    assert r.context["form"].errors == {
        "email": ["not an e-mail address (it needs the form name@example.com): not-an-address"],
        "age": ["not a number: old"],
    }
    c.refresh_from_db()
    assert c.email == "a@example.com"
    assert not OperationLog.objects.filter(action="customer_update").exists()


def test_it_requires_a_required_field_on_create(member_client, people):
    Field.objects.create(key="shop", label="Shop", type="select", choices=["A", "B"], required=True)
    r = member_client.post("/customers/new/", {"email": "n@example.com", "shop": ""})
    assert r.status_code == 200
    assert r.context["form"].errors == {"shop": ["a value is required"]}
    r = member_client.post("/customers/new/", {"email": "n@example.com", "shop": "C"})
    assert r.context["form"].errors == {"shop": ["not one of the choices: C"]}
    assert Customer.objects.count() == 3


def test_it_rejects_a_duplicate_unique_value(member_client, people):
    people[1].data["code"] = "X1"
    people[1].save()
    url = f"/customers/{people[0].pk}/"
    r = member_client.post(url, form_data(member_client, url, code="X1"))
    assert r.context["form"].errors == {"code": ["Another customer already has this value."]}
    people[0].refresh_from_db()
    assert "code" not in people[0].data


def test_it_creates_a_customer_with_unsubscribe_flags(member_client, people):
    r = member_client.post(
        "/customers/new/",
        {"email": "n@example.com", "refused": "on", "unsubscribed": ["news"], "age": "1.5"},
    )
    assert r.status_code == 302
    c = Customer.objects.get(email="n@example.com")
    assert r["Location"] == f"/customers/{c.pk}/"
    assert c.refused is True
    assert c.unsubscribed == ["news"]
    assert c.data == {"age": 1.5}
    assert OperationLog.objects.get(action="customer_create").target == str(c.pk)


def test_clearing_a_value_removes_it(member_client, people):
    c = people[0]
    url = f"/customers/{c.pk}/"
    r = member_client.post(url, form_data(member_client, url, name=""))
    assert r.status_code == 302
    c.refresh_from_db()
    assert c.data == {"age": 30}


def test_it_deletes_a_customer_after_confirmation(member_client, people):
    c = people[0]
    r = member_client.get(f"/customers/{c.pk}/delete/")
    assert b"will be deleted" in r.content
    assert Customer.objects.filter(pk=c.pk).exists()
    r = member_client.post(f"/customers/{c.pk}/delete/")
    assert r.status_code == 302
    assert not Customer.objects.filter(pk=c.pk).exists()
    assert OperationLog.objects.get(action="customer_delete").target == str(c.pk)


def test_it_404s_for_a_missing_customer(member_client, people):
    assert member_client.get("/customers/999999/").status_code == 404
