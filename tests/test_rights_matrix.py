"""Authorization: every operator screen of the customer database
and of accounts, and every API endpoint of customers, fields, views, imports, exports and jobs,
against the three personas (owner: every right; member: no database design, no operators
admin; outsider: no right). A table says what each one needs; a request without it is a 403
that names the missing right, a request with it is not.

The completeness tests fail when a URL or an API operation is added without a row here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from django.urls import URLPattern

from okuru.accounts import urls as accounts_urls
from okuru.accounts.models import ApiToken, Job, Notification, Operator
from okuru.api.main import api
from okuru.bounces import actions as bounce_actions
from okuru.bounces.models import Mailbox
from okuru.customers import design
from okuru.customers import urls as customer_urls
from okuru.customers.models import Customer, ExportSetting, Topic, View
from okuru.mailings.models import Delivery, ListCleaning
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


# --- customer data: which right may see it (okuru.accounts.access.CUSTOMER_DATA_BY_RIGHT) ------
#
# A sentinel customer's name and addresses are planted everywhere customer data can surface: the
# customer record, a delivery's ledger (address, SMTP reply, note), opens and clicks, a captured
# message, an export file, another operator's import errors. Every screen the URL resolver knows
# and every API operation the OpenAPI schema lists is then requested by each persona, with every
# value of its URL parameters; the sentinel may appear only in a response to an operator with
# Customers: read. A new view or endpoint is requested without being listed here; one with a URL
# parameter this test cannot fill fails until the parameter is added to ``_candidates``.

SENTINEL = "zq7sentinel"
SENTINEL_NAME = "Zq7Sentinel Taro"
SENTINEL_EMAILS = ("zq7sentinel-a@example.org", "zq7sentinel-b@example.org")
DATA_PERSONAS = {
    "owner": None,  # the conftest personas
    "member": None,
    "mails-only": ["mails"],
    "mails-and-sending": ["mails", "sending"],
    "reports-only": ["reports"],
    "reports-and-export": ["reports", "export_data"],
    "outsider": [],
    "anonymous": None,
}
# Query strings tried on top of the bare URL: the ways a screen can be asked for customer data.
QUERY_VARIANTS = {
    "mailings:preview": ["?customer={customer}"],
    "mailings:export": ["?fields=customer_id", "?fields=customer_id&fields=name&fields=email"],
    "accounts:job": ["?format=json"],
    "/api/deliveries/{delivery_id}/recipients/{count}/export": [
        "?fields=customer_id",
        "?fields=customer_id&fields=name&fields=email",
    ],
}
# What must show the sentinel to an operator with Customers: read and the screen's own rights
# (owner, member): the places that exist to show customer data, proving the world planted it.
MUST_SHOW = {
    "/",
    "/customers/{customer}/",
    "/mails/{mail}/preview/?customer={customer}",
    "/mails/deliveries/{delivery}/recipients/all/",
    "/mails/deliveries/{delivery}/recipients/all/export/?fields=customer_id&fields=name&fields=email",
    "/capture/",
    "/capture/{message}/",
    "/capture/{message}/raw/",
    "/bounces/{bounce}/",
    "/bounces/list-cleaning/",
    "/bounces/list-cleaning/export/",
    "/export/jobs/{export_job}/download/",
    "/api/customers",
    "/api/customers/{customer}",
    "/api/deliveries/{delivery}/recipients/all",
    "/api/deliveries/{delivery}/recipients/all/export?fields=customer_id&fields=name&fields=email",
    "/api/exports/{export_job}/file",
}


@pytest.fixture(params=list(DATA_PERSONAS))
def data_persona(request, db) -> tuple[str, Operator | None]:
    name = request.param
    if name == "anonymous":
        return name, None
    if DATA_PERSONAS[name] is None:
        return name, request.getfixturevalue(name)
    return name, make_operator(name, DATA_PERSONAS[name])


@pytest.fixture
def sentinel_world(data_persona, media) -> dict[str, int]:
    return _plant(data_persona[1], media)


@pytest.fixture
def planted(owner, media) -> dict[str, int]:
    """The sentinel world once, for the tests of one persona each."""
    return _plant(owner, media)


def _plant(persona: Operator | None, media: Path) -> dict[str, int]:
    from okuru.capture.models import CapturedMessage
    from okuru.mailings import testing
    from okuru.mailings.ledger import refresh_counts
    from okuru.mailings.models import DkimKey, Recipient, TrackedLink
    from okuru.tracking import recording

    design.add_field("name", "Name", "text")
    for address in SENTINEL_EMAILS:
        Customer.objects.create(email=address, data={"name": SENTINEL_NAME})
    first = Customer.objects.order_by("id").first()
    relay = testing.make_relay(testing.free_port())
    mail = testing.make_mail(
        name="Spring sale",
        filter={"match": "all", "conditions": []},
        subject="Hello {{ name }}",
        text_body="Hi {{ name }} <{{ email }}>\nhttps://shop.example/sale\n",
        html_body='<p>Hi {{ name }} {{ email }}</p><a href="https://shop.example/sale">Sale</a>',
    )
    delivery = testing.start(mail)
    bounced, opened = Recipient.objects.filter(delivery=delivery).order_by("id")
    Recipient.objects.filter(pk=bounced.pk).update(
        status="failed",
        error_kind="unknown_user",
        smtp_reply=f"550 5.1.1 <{bounced.address}>: no such user",
        note=f"Not a valid e-mail address: {bounced.address}",
    )
    Recipient.objects.filter(pk=opened.pk).update(status="sent", sent_at=timezone_now())
    link = TrackedLink.objects.get(mail=mail)
    recording.record_open(opened.pk)
    recording.record_click(opened.pk, link.pk)
    refresh_counts(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(status="completed")
    message = CapturedMessage.capture(
        "news@shop.example",
        [SENTINEL_EMAILS[0]],
        f"Subject: Hello {SENTINEL_NAME}\r\nTo: {SENTINEL_EMAILS[0]}\r\n\r\nHi\r\n".encode(),
    )
    bounce, _new = bounce_actions.receive(
        f"Subject: Undelivered\r\nMessage-ID: <sentinel@mx.example>\r\n\r\n"
        f"{SENTINEL_EMAILS[0]}: {SENTINEL_NAME}\r\n".encode(),
        "file",
    )
    ListCleaning.objects.create(address=SENTINEL_EMAILS[1], reason="unknown_user")
    mailbox = Mailbox.objects.create(
        name="bounces", protocol="imap", host="127.0.0.1", port=993, username="b", password="p"
    )
    out = Path(media) / "exports" / "sentinel.csv"
    out.parent.mkdir(parents=True)
    out.write_text(f"\ufeffCustomer ID,Name\r\n{first.pk},{SENTINEL_NAME}\r\n")
    export_job = Job.objects.create(
        kind="export", operator=persona, status=Job.Status.SUCCEEDED, output_file=str(out)
    )
    other = make_operator("importer", ["import_data"])
    import_job = Job.objects.create(
        kind="import",
        operator=other,
        status=Job.Status.SUCCEEDED,
        result={"inserted": 0, "errors": [[2, "email", f"{SENTINEL_EMAILS[0]} is in use"]]},
    )
    notice = (
        Notification.objects.create(operator=persona, text="Export #1 finished.", link="/")
        if persona
        else None
    )
    token = ApiToken.issue(persona or other, "mine")[0]
    from okuru.mailings import redelivery
    from tests.mailings.extraction_setup import ELIGIBLE, extract

    view = View.objects.create(name="All", fields=["customer_id", *ELIGIBLE])
    # Route 4's extraction of the delivery (its list holds the sentinel customers) and a planned
    # re-delivery of it: their pages and API reads are walked too.
    extracted = extract([delivery], view, operator=persona)
    plan = redelivery.plan_redelivery(None, "not_opened", 3, source=delivery)
    return {
        "customer": first.pk,
        "mail": mail.pk,
        "delivery": delivery.pk,
        "link": link.pk,
        "message": message.pk,
        "export_job": export_job.pk,
        "import_job": import_job.pk,
        "notice": notice.pk if notice else 0,
        "token": token.pk,
        "other": other.pk,
        "group": Group.objects.get(name="importer-group").pk,
        "relay": relay.pk,
        "view": view.pk,
        "extraction": extracted.pk,
        "plan": plan.pk,
        "dkim_key": DkimKey.objects.create(
            domain="shop.example", selector="s1", algorithm="ed25519", public_key="AAAA"
        ).pk,
        "bounce": bounce.pk,
        "mailbox": mailbox.pk,
        "topic": Topic.objects.create(key="news", name="News").pk,
        "setting": ExportSetting.objects.create(name="Mine", fields=["customer_id"]).pk,
    }


def timezone_now():
    from django.utils import timezone

    return timezone.now()


def _candidates(param: str, world: dict[str, int]) -> list[str]:
    """Every value to try for a URL parameter; an unknown parameter fails the test."""
    counts = ["all", "sent", "errors", "error:unknown_user", "opened", "clicked"]
    values = {
        "customer_id": [world["customer"]],
        "mail_id": [world["mail"]],
        "delivery_id": [world["delivery"]],
        "count": [*counts, f"clicked:{world['link']}"],
        "action": ["cancel"],
        "message_id": [world["message"]],
        "job_id": [world["export_job"], world["import_job"]],
        "notice_id": [world["notice"]],
        "token_id": [world["token"]],
        "operator_id": [world["other"]],
        "group_id": [world["group"]],
        "relay_id": [world["relay"]],
        "dkim_key_id": [world["dkim_key"]],
        "bounce_id": [world["bounce"]],
        "mailbox_id": [world["mailbox"]],
        "view_id": [world["view"]],
        "topic_id": [world["topic"]],
        "setting_id": [world["setting"]],
        "extraction_id": [world["extraction"]],
        "plan_id": [world["plan"]],
        "key": ["name"],
        "token": ["x"],  # tracking tokens: a recipient's own links, checked by signature
    }
    assert param in values, f"Unknown URL parameter {param}: add its values to _candidates."
    return [str(v) for v in values[param]]


PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\{(\w+)\}")


def _fill(template: str, world: dict[str, int]) -> list[str]:
    """``template`` with every combination of its parameters' candidate values."""
    paths = [template]
    for match in PARAM.finditer(template):
        name = match.group(1) or match.group(2)
        paths = [p.replace(match.group(0), v, 1) for p in paths for v in _candidates(name, world)]
    return paths


def _screens() -> list[tuple[str, str]]:
    """(url name, route) of every screen the URL resolver knows, the API excepted."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix="", ns=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern).startswith("api/"):
                    continue
                yield from walk(p.url_patterns, prefix + str(p.pattern), p.namespace or ns)
            else:
                yield (f"{ns}:{p.name}" if ns else p.name), "/" + prefix + str(p.pattern)

    return list(walk(get_resolver().url_patterns))


def _api_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return [(m, path) for path, ops in schema["paths"].items() for m in ops]


def _text(response) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode("utf-8", errors="replace").lower()


def _reads(persona: Operator | None) -> bool:
    return persona is not None and persona.has_right(READ)


def _api_client(persona: Operator | None) -> Client:
    if persona is None:
        return Client()
    _token, key = ApiToken.issue(persona, "sentinel")
    return Client(headers={"authorization": f"Bearer {key}", "accept-language": "en"})


def _requests(world: dict[str, int]):
    """(label, kind, path) of every request the walk makes: kind "ui" or "api"."""
    for name, route in _screens():
        for variant in ["", *QUERY_VARIANTS.get(name, [])]:
            for path in _fill(route + variant.format(**world), world):
                yield name, "ui", path
    for method, template in _api_operations():
        if method != "get":
            continue  # writes: the rights table above; none answers with another customer
        for variant in ["", *QUERY_VARIANTS.get(template, [])]:
            for path in _fill(template + variant.format(**world), world):
                yield template, "api", path


def test_customer_data_shows_only_to_operators_who_may_read_customers(data_persona, sentinel_world):
    name, persona = data_persona
    ui = client_for(persona) if persona else Client()
    api_client = _api_client(persona)
    must_show = {p.format(**sentinel_world) for p in MUST_SHOW}
    leaks, missing, seen = [], [], set()
    for label, kind, path in _requests(sentinel_world):
        r = (ui if kind == "ui" else api_client).get(path)
        visible = SENTINEL in _text(r)
        seen.add(path)
        if visible and not _reads(persona):
            leaks.append((label, path, r.status_code))
        if path in must_show and _reads(persona) and not visible:
            missing.append((label, path, r.status_code))
    assert not leaks, f"{name} sees customer data at {leaks}"
    assert not missing, f"{name} should see the sentinel at {missing}"
    assert must_show <= seen, must_show - seen


@pytest.fixture
def sink_relay(sentinel_world):
    from okuru.mailings import testing
    from okuru.mailings.models import Relay

    with testing.Sink() as sink:
        Relay.objects.filter(pk=sentinel_world["relay"]).update(port=sink.port)
        yield sink


def _test_send(persona, world, **extra) -> Any:
    client = client_for(persona) if persona else Client()
    data = {"addresses": "qa@outside.example", **extra}
    return client.post(f"/mails/{world['mail']}/test/", data)


def _message_text(raw: bytes) -> str:
    """Headers and every decoded text part of a sent message (bodies go out base64-encoded)."""
    from email import message_from_bytes, policy

    msg = message_from_bytes(raw, policy=policy.default)
    parts = [f"{k}: {v}" for k, v in msg.items()]
    parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    return "\n".join(parts).lower()


def test_a_test_send_carries_customer_data_only_for_readers(
    data_persona, sentinel_world, sink_relay
):
    name, persona = data_persona
    r = _test_send(persona, sentinel_world, customer=str(sentinel_world["customer"]))
    if persona is None:
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    elif not persona.has_right("mails"):
        assert r.status_code == 403
    elif not _reads(persona):
        assert r.status_code == 403
        assert r.context["message"] == _denial([READ])
    else:
        assert r.status_code == 302
        sink_relay.wait_for(1)
        assert SENTINEL in _message_text(sink_relay.handler.messages[-1][2])
    before = len(sink_relay.handler.messages)
    # Without a customer: a reader's test uses the first customer, anyone else's sample data.
    r = _test_send(persona, sentinel_world)
    if persona is not None and persona.has_right("mails"):
        assert r.status_code == 302
        sink_relay.wait_for(before + 1)
        sent = sink_relay.handler.messages[before:]
        assert len(sent) == 1, name
        body = _message_text(sent[0][2])
        assert (SENTINEL in body) == _reads(persona), name
        if not _reads(persona):
            assert "[name]" in body and "sample@example.com" in body
    else:
        assert len(sink_relay.handler.messages) == before


def test_a_preview_without_customers_read_says_it_uses_sample_data(planted):
    mailer = client_for(make_operator("mailer", ["mails"]))
    r = mailer.get(f"/mails/{planted['mail']}/preview/")
    page = r.content.decode()
    assert r.status_code == 200
    assert "This preview uses sample data" in page
    assert "Hello [Name]" in page and "sample@example.com" in page
    assert 'name="customer"' not in page  # no "preview as this customer" form
    detail = mailer.get(f"/mails/{planted['mail']}/").content.decode()
    assert "The test uses sample data" in detail


def test_naming_a_customer_is_refused_before_the_customer_is_looked_up(planted):
    mailer = client_for(make_operator("mailer", ["mails"]))
    # An unknown Customer ID gets the same 403 as a known one: nothing tells which IDs exist.
    for customer in (str(planted["customer"]), "999999", "x"):
        r = mailer.get(f"/mails/{planted['mail']}/preview/?customer={customer}")
        assert r.status_code == 403
        assert r.context["message"] == _denial([READ])


def test_another_operators_import_errors_need_customers_read(planted):
    admin = make_operator("admin", [ADMIN])
    job = planted["import_job"]
    page = client_for(admin).get(f"/accounts/jobs/{job}/").content.decode().lower()
    assert SENTINEL not in page
    assert client_for(admin).get(f"/accounts/jobs/{job}/?format=json").json()["result"] == {
        "inserted": 0
    }
    assert _api_client(admin).get(f"/api/jobs/{job}").json()["result"] == {"inserted": 0}
    importer = Operator.objects.get(username="importer")
    own = _api_client(importer).get(f"/api/jobs/{job}").json()["result"]
    assert SENTINEL in own["errors"][0][2]


def test_the_api_drops_addresses_and_replies_without_customers_read(planted):
    analyst = make_operator("analyst", ["reports"])
    r = _api_client(analyst).get(f"/api/deliveries/{planted['delivery']}/recipients/all")
    items = r.json()["items"]
    assert len(items) == 2
    assert {"address", "smtp_reply"}.isdisjoint(items[0])
    assert {"customer_id", "status", "error_kind", "open_count"} <= set(items[0])


def test_a_count_export_without_customers_read_holds_customer_ids_only(planted):
    exporter = client_for(make_operator("exporter", ["reports", "export_data"]))
    base = f"/mails/deliveries/{planted['delivery']}/recipients/all/export/"
    r = exporter.get(base)
    assert r.status_code == 200
    lines = _text(r).splitlines()
    assert lines[0].lstrip("\ufeff") == "customer id" and len(lines) == 3
    r = exporter.get(base + "?fields=customer_id&fields=name")
    assert r.status_code == 403
    assert r.context["message"] == _denial([READ])


def test_every_right_says_what_customer_data_it_shows():
    from okuru.accounts.access import CUSTOMER_DATA_BY_RIGHT
    from okuru.accounts.models import RIGHTS

    assert [code for code, _text in CUSTOMER_DATA_BY_RIGHT] == [code for code, _l in RIGHTS]
