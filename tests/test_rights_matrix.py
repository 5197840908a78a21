"""Acceptance check of issue #2's authorization: every operator screen of the customer database
and of accounts, and every API endpoint of customers, fields, views, imports, exports and jobs,
against the three personas (owner: every right; member: no database design, no operators
admin; outsider: no right). A table says what each one needs; a request without it is a 403
that names the missing right, a request with it is not.

The completeness tests fail when a URL or an API operation is added without a row here."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from django.urls import URLPattern

from okuru.accounts import urls as accounts_urls
from okuru.accounts.models import ApiToken, Job, Notification, Operator
from okuru.api.main import api
from okuru.customers import design
from okuru.customers import urls as customer_urls
from okuru.customers.models import Customer, ExportSetting, Topic, View
from tests.conftest import client_for, make_operator

READ, WRITE = "customers_read", "customers_write"
DESIGN, IMPORT, EXPORT = "database_design", "import_data", "export_data"
ADMIN = "operators_admin"
LOGIN = ()  # logged in, no right needed (own profile, own jobs, own notices)

# (url name, method, path, rights). Paths are formatted with the ids of ``world``.
UI = [
    ("customers:list", "get", "/", (READ,)),
    ("customers:count", "get", "/customers/count/", (READ,)),
    ("customers:create", "get", "/customers/new/", (READ, WRITE)),
    ("customers:create", "post", "/customers/new/", (READ, WRITE)),
    ("customers:detail", "get", "/customers/{customer}/", (READ,)),
    ("customers:detail", "post", "/customers/{customer}/", (READ, WRITE)),
    ("customers:delete", "get", "/customers/{customer}/delete/", (READ, WRITE)),
    ("customers:delete", "post", "/customers/{customer}/delete/", (READ, WRITE)),
    ("customers:views", "get", "/views/", (READ,)),
    ("customers:view_create", "get", "/views/new/", (READ, WRITE)),
    ("customers:view_create", "post", "/views/new/", (READ, WRITE)),
    ("customers:view_edit", "get", "/views/{view}/", (READ, WRITE)),
    ("customers:view_edit", "post", "/views/{view}/", (READ, WRITE)),
    ("customers:view_delete", "get", "/views/{view}/delete/", (READ, WRITE)),
    ("customers:view_delete", "post", "/views/{view}/delete/", (READ, WRITE)),
    ("customers:design", "get", "/design/", (DESIGN,)),
    ("customers:field_add", "get", "/design/fields/new/", (DESIGN,)),
    ("customers:field_add", "post", "/design/fields/new/", (DESIGN,)),
    ("customers:field_edit", "get", "/design/fields/note/", (DESIGN,)),
    ("customers:field_edit", "post", "/design/fields/note/", (DESIGN,)),
    ("customers:field_delete", "get", "/design/fields/note/delete/", (DESIGN,)),
    ("customers:field_delete", "post", "/design/fields/note/delete/", (DESIGN,)),
    ("customers:topic_add", "post", "/design/topics/new/", (DESIGN,)),
    ("customers:topic_edit", "get", "/design/topics/{topic}/", (DESIGN,)),
    ("customers:topic_edit", "post", "/design/topics/{topic}/", (DESIGN,)),
    ("customers:topic_delete", "get", "/design/topics/{topic}/delete/", (DESIGN,)),
    ("customers:topic_delete", "post", "/design/topics/{topic}/delete/", (DESIGN,)),
    ("customers:import", "get", "/import/", (IMPORT,)),
    ("customers:import", "post", "/import/", (IMPORT,)),
    ("customers:export", "get", "/export/", (READ, EXPORT)),
    ("customers:export", "post", "/export/", (READ, EXPORT)),
    ("customers:export_setting_delete", "post", "/export/settings/{setting}/delete/", (EXPORT,)),
    ("customers:export_download", "get", "/export/jobs/{job}/download/", (READ, EXPORT)),
    ("accounts:profile", "get", "/accounts/profile/", LOGIN),
    ("accounts:profile", "post", "/accounts/profile/", LOGIN),
    ("accounts:password_change", "post", "/accounts/profile/password/", LOGIN),
    ("accounts:token_create", "post", "/accounts/profile/tokens/", LOGIN),
    ("accounts:token_revoke", "post", "/accounts/profile/tokens/{token}/revoke/", LOGIN),
    ("accounts:operators", "get", "/accounts/operators/", (ADMIN,)),
    ("accounts:operator_create", "get", "/accounts/operators/new/", (ADMIN,)),
    ("accounts:operator_create", "post", "/accounts/operators/new/", (ADMIN,)),
    ("accounts:operator", "get", "/accounts/operators/{other}/", (ADMIN,)),
    ("accounts:operator", "post", "/accounts/operators/{other}/", (ADMIN,)),
    ("accounts:operator_password", "post", "/accounts/operators/{other}/password/", (ADMIN,)),
    ("accounts:operator_active", "post", "/accounts/operators/{other}/active/", (ADMIN,)),
    ("accounts:operator_unlock", "post", "/accounts/operators/{other}/unlock/", (ADMIN,)),
    ("accounts:groups", "get", "/accounts/groups/", (ADMIN,)),
    ("accounts:group_create", "get", "/accounts/groups/new/", (ADMIN,)),
    ("accounts:group_create", "post", "/accounts/groups/new/", (ADMIN,)),
    ("accounts:group", "get", "/accounts/groups/{group}/", (ADMIN,)),
    ("accounts:group", "post", "/accounts/groups/{group}/", (ADMIN,)),
    ("accounts:group_delete", "post", "/accounts/groups/{group}/delete/", (ADMIN,)),
    ("accounts:log", "get", "/accounts/log/", (ADMIN,)),
    ("accounts:jobs", "get", "/accounts/jobs/", LOGIN),
    ("accounts:job", "get", "/accounts/jobs/{job}/", LOGIN),
    ("accounts:notices", "get", "/accounts/notices/", LOGIN),
    ("accounts:notices_read", "post", "/accounts/notices/read/", LOGIN),
    ("accounts:notice", "get", "/accounts/notices/{notice}/", LOGIN),
]
# Screens anyone may open, logged in or not.
PUBLIC = {"accounts:login", "accounts:logout"}

API = [
    ("get", "/api/customers", (READ,)),
    ("post", "/api/customers", (READ, WRITE)),
    ("get", "/api/customers/count", (READ,)),
    ("get", "/api/customers/{customer}", (READ,)),
    ("patch", "/api/customers/{customer}", (READ, WRITE)),
    ("delete", "/api/customers/{customer}", (READ, WRITE)),
    ("get", "/api/fields", (READ,)),
    ("post", "/api/fields", (DESIGN,)),
    ("patch", "/api/fields/note", (DESIGN,)),
    ("delete", "/api/fields/note", (DESIGN,)),
    ("get", "/api/views", (READ,)),
    ("post", "/api/views", (READ, WRITE)),
    ("get", "/api/views/{view}", (READ,)),
    ("patch", "/api/views/{view}", (READ, WRITE)),
    ("delete", "/api/views/{view}", (READ, WRITE)),
    ("post", "/api/imports", (IMPORT,)),
    ("post", "/api/exports", (READ, EXPORT)),
    ("get", "/api/exports/{job}/file", (READ, EXPORT)),
    ("get", "/api/jobs", LOGIN),
    ("get", "/api/jobs/{job}", LOGIN),
]
API_TAGS = {"customers", "fields", "views", "imports", "exports", "jobs"}

RIGHT_LABELS = {
    READ: "Customers: read",
    WRITE: "Customers: write",
    DESIGN: "Database design",
    IMPORT: "Import",
    EXPORT: "Export",
    ADMIN: "Operators admin",
}


@pytest.fixture(autouse=True)
def media(tmp_path):
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


@pytest.fixture(params=["owner", "member", "outsider"])
def persona(request, owner, member, outsider) -> Operator:
    return {"owner": owner, "member": member, "outsider": outsider}[request.param]


@pytest.fixture
def world(persona, media) -> dict[str, int]:
    """One of everything the table's paths name; the job and the notice are the persona's."""
    design.add_field("note", "Note", "text")
    customer = Customer.objects.create(email="a@example.com", data={"note": "hello"})
    topic = Topic.objects.create(key="news", name="News")
    view = View.objects.create(name="Everyone", fields=["customer_id", "email"])
    setting = ExportSetting.objects.create(name="Mine", fields=["customer_id"])
    out = Path(media) / "exports" / "1.csv"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"\xef\xbb\xbfCustomer ID\r\n1\r\n")
    job = Job.objects.create(
        kind="export", operator=persona, status=Job.Status.SUCCEEDED, output_file=str(out)
    )
    other = make_operator("other", ["customers_read"], "Readers")
    token, _key = ApiToken.issue(persona, "mine")
    notice = Notification.objects.create(operator=persona, text="Export #1 finished.", link="/")
    return {
        "customer": customer.pk,
        "topic": topic.pk,
        "view": view.pk,
        "setting": setting.pk,
        "job": job.pk,
        "other": other.pk,
        "group": Group.objects.get(name="Readers").pk,
        "token": token.pk,
        "notice": notice.pk,
    }


def _missing(persona: Operator, rights: tuple[str, ...]) -> list[str]:
    return [r for r in rights if not persona.has_right(r)]


def _denial(missing: list[str]) -> str:
    labels = ", ".join(RIGHT_LABELS[r] for r in missing)
    return f"You do not have the right to do this (needs: {labels})."


@pytest.mark.parametrize("name, method, path, rights", UI, ids=[f"{m} {p}" for _n, m, p, _r in UI])
def test_each_screen_needs_its_rights(persona, world, name, method, path, rights):
    client = client_for(persona)
    r = getattr(client, method)(path.format(**world))
    missing = _missing(persona, rights)
    if missing:
        assert r.status_code == 403
        if (method, path) == ("post", "/customers/{customer}/"):
            # The page is read first (the decorator), then the save needs the write right.
            missing = missing[:1]
        assert r.context["message"] == _denial(missing)
    else:
        assert r.status_code in (200, 302), r.status_code


@pytest.mark.parametrize("method, path, rights", API, ids=[f"{m} {p}" for m, p, _r in API])
def test_each_api_endpoint_needs_its_rights(persona, world, method, path, rights):
    _token, key = ApiToken.issue(persona, "tests")
    client = Client(headers={"authorization": f"Bearer {key}", "accept-language": "en"})
    url = path.format(**world)
    if method == "get":
        r = client.get(url)
    else:
        r = getattr(client, method)(url, "{}", content_type="application/json")
    missing = _missing(persona, rights)
    if missing:
        assert r.status_code == 403
        assert r.json() == {"detail": _denial(missing)}
    else:
        # Allowed: whatever the empty body makes of it (a 400 names what is missing), never 403.
        assert r.status_code in (200, 201, 202, 204, 400), r.content


def test_the_member_lacks_database_design_and_operators_admin(member):
    assert not member.has_right(DESIGN)
    assert not member.has_right(ADMIN)
    assert member.has_right(READ) and member.has_right(IMPORT) and member.has_right(EXPORT)


def test_anonymous_visitors_are_sent_to_log_in(db):
    client = Client()
    world = dict.fromkeys(
        ("customer", "topic", "view", "setting", "job", "other", "group", "token", "notice"), 1
    )
    for _name, method, path, _rights in UI:
        r = getattr(client, method)(path.format(**world))
        assert r.status_code == 302, path
        assert r["Location"].startswith("/accounts/login/"), path


def test_every_screen_is_in_the_table():
    named = {n for n, *_ in UI} | PUBLIC
    for module in (customer_urls, accounts_urls):
        for pattern in module.urlpatterns:
            assert isinstance(pattern, URLPattern)
            assert f"{module.app_name}:{pattern.name}" in named, pattern.name


def test_every_api_operation_is_in_the_table():
    schema = api.get_openapi_schema()
    listed = {(m, _template(p)) for m, p, _r in API}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if API_TAGS & set(operation.get("tags", [])):
                assert (method, path) in listed, (method, path)


def _template(path: str) -> str:
    """Our concrete paths as the schema writes them."""
    names = {
        "/api/customers/{customer}": "/api/customers/{customer_id}",
        "/api/fields/note": "/api/fields/{key}",
        "/api/views/{view}": "/api/views/{view_id}",
        "/api/exports/{job}/file": "/api/exports/{job_id}/file",
        "/api/jobs/{job}": "/api/jobs/{job_id}",
    }
    return names.get(path, path)


# --- a safety net over the whole project: every screen and endpoint refuses an outsider ------

# Screens that need no right beyond logging in (own profile, own jobs, own notices), and the
# public ones (log-in, language switch, the tracking endpoints recipients' mail programs call).
LOGIN_ONLY = {n for n, _m, _p, r in UI if r == LOGIN}
OPEN = PUBLIC | {"set_language"}


def _every_screen():
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix="", ns=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern).startswith("api/"):
                    continue
                yield from walk(p.url_patterns, prefix + str(p.pattern), p.namespace or ns)
            else:
                yield (f"{ns}:{p.name}" if ns else p.name), "/" + prefix + str(p.pattern)

    for name, route in walk(get_resolver().url_patterns):
        if name in OPEN or name.startswith("tracking:"):
            continue
        path = route.replace("<int:", "<").split("<")
        # Fill every converter with 1 (ints) or "x" (strings): the check comes before lookups.
        filled = path[0] + "".join(
            ("1" if "_id" in part.split(">")[0] else "x") + part.split(">", 1)[1]
            for part in path[1:]
        )
        yield name, filled


@pytest.mark.parametrize("name, path", list(_every_screen()))
def test_every_screen_refuses_an_outsider_and_an_anonymous_visitor(outsider, name, path):
    anonymous = Client()
    for method in ("get", "post"):
        r = getattr(anonymous, method)(path)
        assert r.status_code in (302, 405), (method, path)
        if r.status_code == 302:
            assert r["Location"].startswith("/accounts/login/"), (method, path)
    if name in LOGIN_ONLY:
        return
    client = client_for(outsider)
    for method in ("get", "post"):
        r = getattr(client, method)(path)
        assert r.status_code in (403, 405), (method, path, r.status_code)


def test_every_api_operation_refuses_an_outsider_whatever_the_body(outsider):
    _token, key = ApiToken.issue(outsider, "tests")
    client = Client(headers={"authorization": f"Bearer {key}", "accept-language": "en"})
    schema = api.get_openapi_schema()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            tags = set(operation.get("tags", []))
            if "jobs" in tags or not tags & API_TAGS:
                continue  # own jobs only (tested above); mailings' endpoints have their tests
            url = path.replace("{", "").replace("}", "")
            for name in ("customer_id", "view_id", "job_id", "mail_id", "delivery_id"):
                url = url.replace(name, "1")
            url = url.replace("/key", "/x")
            if method == "get":
                r = client.get(url)
            else:
                r = getattr(client, method)(url, "{}", content_type="application/json")
            assert r.status_code == 403, (method, path, r.status_code)
            assert r.json()["detail"].startswith("You do not have the right to do this (needs: ")
