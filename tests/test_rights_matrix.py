"""Authorization: every operator screen (customers, accounts, mailings, capture) and every API
operation, against the three personas (owner: every right; member: no database design, no
operators admin; outsider: no right) and, row by row, against operators who hold all of a row's
rights but one. A table says what each one needs; a request without it is a 403 that names the
missing right, a request with exactly the row's rights is not.

The completeness tests walk the URL resolver and the OpenAPI schema: a URL or an API operation
added without a row here fails them. The tracking URLs are public (recipients' mail programs
call them) and are checked to stay so, as are the webhooks other systems call (Amazon SNS)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from okuru.accounts.models import RIGHTS, ApiToken, Job, Notification, Operator
from okuru.api.main import api
from okuru.bounces import actions as bounce_actions
from okuru.bounces.models import Mailbox
from okuru.customers import design
from okuru.customers.models import Customer, ExportSetting, Topic, View
from okuru.mailings.models import Delivery, ListCleaning
from tests.api.client import api_client
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.usefixtures("media")

READ, WRITE = "customers_read", "customers_write"
DESIGN, IMPORT, EXPORT = "database_design", "import_data", "export_data"
MAILS, SENDING, REPORTS = "mails", "sending", "reports"
ADMIN = "operators_admin"
LOGIN = ()  # logged in, no right needed (own profile, own jobs, own notices)

NAMED_EXPORT = "/mails/deliveries/{delivery}/recipients/all/export/?fields=customer_id&fields=note"
NAMED_API_EXPORT = "/api/deliveries/{delivery}/recipients/all/export?fields=customer_id&fields=note"

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
    ("mailings:list", "get", "/mails/", (MAILS,)),
    ("mailings:create", "get", "/mails/new/", (MAILS,)),
    ("mailings:create", "post", "/mails/new/", (MAILS,)),
    ("mailings:compose_count", "get", "/mails/count/", (MAILS,)),
    ("mailings:detail", "get", "/mails/{mail}/", (MAILS,)),
    ("mailings:edit", "get", "/mails/{mail}/edit/", (MAILS,)),
    ("mailings:edit", "post", "/mails/{mail}/edit/", (MAILS,)),
    ("mailings:preview", "get", "/mails/{mail}/preview/", (MAILS,)),
    ("mailings:preview", "get", "/mails/{mail}/preview/?customer={customer}", (MAILS, READ)),
    ("mailings:counts", "get", "/mails/{mail}/counts/", (MAILS,)),
    ("mailings:test", "post", "/mails/{mail}/test/", (MAILS,)),
    ("mailings:links", "post", "/mails/{mail}/links/", (MAILS,)),
    ("mailings:send", "post", "/mails/{mail}/send/", (SENDING,)),
    ("mailings:extractions", "get", "/mails/extractions/", (REPORTS,)),
    ("mailings:extraction_new", "get", "/mails/extractions/new/", (SENDING, REPORTS)),
    ("mailings:extraction_new", "post", "/mails/extractions/new/", (SENDING, REPORTS)),
    ("mailings:extraction_purge", "post", "/mails/extractions/purge/", (SENDING,)),
    ("mailings:extraction", "get", "/mails/extractions/{extraction}/", (REPORTS,)),
    ("mailings:extraction_discard", "post", "/mails/extractions/{extraction}/discard/", (SENDING,)),
    ("mailings:extraction_continue", "get", "/mails/extractions/{extraction}/continue/", (MAILS,)),
    ("mailings:extraction_continue", "post", "/mails/extractions/{extraction}/continue/", (MAILS,)),
    ("mailings:dkim_keys", "get", "/mails/dkim/", (SENDING,)),
    ("mailings:dkim_keys", "post", "/mails/dkim/", (SENDING,)),
    ("mailings:dkim_key", "get", "/mails/dkim/{dkim_key}/", (SENDING,)),
    ("mailings:dkim_key_activate", "post", "/mails/dkim/{dkim_key}/activate/", (SENDING,)),
    ("mailings:dkim_key_delete", "post", "/mails/dkim/{dkim_key}/delete/", (SENDING,)),
    ("mailings:relays", "get", "/mails/relays/", (SENDING,)),
    ("mailings:relay_create", "get", "/mails/relays/new/", (SENDING,)),
    ("mailings:relay_create", "post", "/mails/relays/new/", (SENDING,)),
    ("mailings:relay", "get", "/mails/relays/{relay}/", (SENDING,)),
    ("mailings:relay", "post", "/mails/relays/{relay}/", (SENDING,)),
    ("mailings:relay_default", "post", "/mails/relays/{relay}/default/", (SENDING,)),
    ("mailings:relay_test", "post", "/mails/relays/{relay}/test/", (SENDING,)),
    ("mailings:relay_delete", "post", "/mails/relays/{relay}/delete/", (SENDING,)),
    ("mailings:deliveries", "get", "/mails/deliveries/", (REPORTS,)),
    ("mailings:report", "get", "/mails/deliveries/{delivery}/", (REPORTS,)),
    ("mailings:unknown", "post", "/mails/deliveries/{delivery}/unknown/", (SENDING,)),
    ("mailings:resend", "post", "/mails/deliveries/{delivery}/resend/", (SENDING, MAILS)),
    ("mailings:redeliver", "get", "/mails/deliveries/{delivery}/redeliver/", (REPORTS,)),
    ("mailings:redeliver", "post", "/mails/deliveries/{delivery}/redeliver/", (REPORTS, SENDING)),
    (
        "mailings:redeliver_counts",
        "get",
        "/mails/deliveries/{delivery}/redeliver/counts/",
        (REPORTS,),
    ),
    ("mailings:plan", "post", "/mails/deliveries/{delivery}/plans/", (SENDING,)),
    ("mailings:set_field", "get", "/mails/deliveries/{delivery}/set-field/", (REPORTS, WRITE)),
    ("mailings:set_field", "post", "/mails/deliveries/{delivery}/set-field/", (REPORTS, WRITE)),
    ("mailings:plan_cancel", "post", "/mails/plans/{plan}/cancel/", (SENDING,)),
    ("mailings:delivery_action", "post", "/mails/deliveries/{delivery}/pause/", (SENDING,)),
    ("mailings:events", "get", "/mails/deliveries/{delivery}/events.csv", (REPORTS, EXPORT)),
    ("mailings:recipients", "get", "/mails/deliveries/{delivery}/recipients/all/", (REPORTS,)),
    (
        "mailings:export",
        "get",
        "/mails/deliveries/{delivery}/recipients/all/export/",
        (REPORTS, EXPORT),
    ),
    ("mailings:export", "get", NAMED_EXPORT, (REPORTS, EXPORT, READ)),
    ("bounces:list", "get", "/bounces/", (SENDING, READ)),
    ("bounces:queue", "get", "/bounces/queue/", (SENDING, READ)),
    ("bounces:detail", "get", "/bounces/{bounce}/", (SENDING, READ)),
    ("bounces:reparse", "post", "/bounces/{bounce}/reparse/", (SENDING, READ)),
    ("bounces:discard", "post", "/bounces/{bounce}/discard/", (SENDING, READ)),
    ("bounces:list_cleaning", "get", "/bounces/list-cleaning/", (SENDING, READ)),
    ("bounces:list_cleaning", "post", "/bounces/list-cleaning/", (SENDING, READ)),
    (
        "bounces:list_cleaning_export",
        "get",
        "/bounces/list-cleaning/export/",
        (SENDING, READ, EXPORT),
    ),
    ("bounces:mailboxes", "get", "/bounces/mailboxes/", (SENDING,)),
    ("bounces:mailbox_create", "get", "/bounces/mailboxes/new/", (SENDING,)),
    ("bounces:mailbox_create", "post", "/bounces/mailboxes/new/", (SENDING,)),
    ("bounces:mailbox", "get", "/bounces/mailboxes/{mailbox}/", (SENDING,)),
    ("bounces:mailbox", "post", "/bounces/mailboxes/{mailbox}/", (SENDING,)),
    ("bounces:mailbox_test", "post", "/bounces/mailboxes/{mailbox}/test/", (SENDING,)),
    ("bounces:mailbox_delete", "post", "/bounces/mailboxes/{mailbox}/delete/", (SENDING,)),
    ("capture:list", "get", "/capture/", (MAILS, READ)),
    ("capture:detail", "get", "/capture/{message}/", (MAILS, READ)),
    ("capture:html", "get", "/capture/{message}/html/", (MAILS, READ)),
    ("capture:raw", "get", "/capture/{message}/raw/", (MAILS, READ)),
]
# Rows whose rights are checked in stages (the decorator, then the view on what the request asks
# for): a request is refused naming what it misses of the first stage it fails.
STAGED = {
    ("post", "/customers/{customer}/"): ((READ,), (WRITE,)),
    ("get", "/mails/{mail}/preview/?customer={customer}"): ((MAILS,), (READ,)),
    ("post", "/mails/deliveries/{delivery}/redeliver/"): ((REPORTS,), (SENDING,)),
    ("get", NAMED_EXPORT): ((REPORTS, EXPORT), (READ,)),
    ("get", NAMED_API_EXPORT): ((REPORTS, EXPORT), (READ,)),
}
# Screens anyone may open, logged in or not.
PUBLIC = {"accounts:login", "accounts:logout"}
# Endpoints other systems call without logging in; their authenticity comes from a signature
# the view checks (Amazon SNS's, for the SES notifications). See test_the_webhooks_stay_public.
WEBHOOKS = {"bounces:sns": "/bounces/sns/"}

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
    ("get", "/api/mails", (MAILS,)),
    ("post", "/api/mails", (MAILS,)),
    ("get", "/api/mails/{mail}", (MAILS,)),
    ("patch", "/api/mails/{mail}", (MAILS,)),
    ("get", "/api/mails/{mail}/counts", (MAILS,)),
    ("get", "/api/mails/{mail}/targeting-text", (MAILS,)),
    ("post", "/api/mails/{mail}/send", (SENDING,)),
    ("put", "/api/mails/{mail}/planned-redelivery", (MAILS, SENDING)),
    ("get", "/api/deliveries", (REPORTS,)),
    ("get", "/api/deliveries/{delivery}", (REPORTS,)),
    ("get", "/api/deliveries/{delivery}/targeting-text", (REPORTS,)),
    ("post", "/api/deliveries/{delivery}/unknown", (SENDING,)),
    ("post", "/api/deliveries/{delivery}/pause", (SENDING,)),
    ("get", "/api/deliveries/{delivery}/recipients/all", (REPORTS,)),
    ("get", "/api/deliveries/{delivery}/recipients/all/export", (REPORTS, EXPORT)),
    ("get", NAMED_API_EXPORT, (REPORTS, EXPORT, READ)),
    ("get", "/api/deliveries/{delivery}/events/export", (REPORTS, EXPORT)),
    ("post", "/api/deliveries/{delivery}/resend", (SENDING, MAILS)),
    ("get", "/api/deliveries/{delivery}/redeliver/preview", (REPORTS,)),
    ("post", "/api/deliveries/{delivery}/redeliver", (SENDING,)),
    ("get", "/api/deliveries/{delivery}/planned-redeliveries", (REPORTS,)),
    ("post", "/api/deliveries/{delivery}/planned-redeliveries", (SENDING,)),
    ("delete", "/api/planned-redeliveries/{plan}", (SENDING,)),
    ("post", "/api/deliveries/{delivery}/set-field", (REPORTS, WRITE)),
    ("get", "/api/relays", (SENDING,)),
    ("post", "/api/relays", (SENDING,)),
    ("get", "/api/relays/{relay}", (SENDING,)),
    ("patch", "/api/relays/{relay}", (SENDING,)),
    ("delete", "/api/relays/{relay}", (SENDING,)),
    ("post", "/api/relays/{relay}/test", (SENDING,)),
    ("post", "/api/extractions/preview", (SENDING, REPORTS)),
    ("post", "/api/extractions", (SENDING, REPORTS)),
    ("get", "/api/extractions", (REPORTS,)),
    ("get", "/api/extractions/{extraction}", (REPORTS,)),
    ("post", "/api/extractions/{extraction}/discard", (SENDING,)),
]

RIGHT_LABELS = {
    READ: "Customers: read",
    WRITE: "Customers: write",
    DESIGN: "Database design",
    IMPORT: "Import",
    EXPORT: "Export",
    MAILS: "Mails",
    SENDING: "Sending",
    REPORTS: "Reports",
    ADMIN: "Operators admin",
}


@pytest.fixture(params=["owner", "member", "outsider"])
def persona(request, owner, member, outsider) -> Operator:
    return {"owner": owner, "member": member, "outsider": outsider}[request.param]


@pytest.fixture
def world(persona, media) -> dict[str, int]:
    return _world(persona, media)


def _world(persona: Operator, media: Path) -> dict[str, int]:
    """One of everything the table's paths name; the job and the notice are ``persona``'s."""
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
        **_mailing_world(persona),
    }


def _mailing_world(persona: Operator) -> dict[str, int]:
    """A completed delivery of a mail with a tracked link, its extraction and a planned
    re-delivery of it, a relay, a DKIM key and a captured message with an HTML part."""
    from email.message import EmailMessage

    from okuru.capture.models import CapturedMessage
    from okuru.mailings import redelivery, testing
    from okuru.mailings.models import DkimKey
    from tests.mailings.extraction_setup import ELIGIBLE, extract

    relay = testing.make_relay(testing.free_port(), timeout=2)
    mail = testing.make_mail()
    delivery = testing.start(mail)
    Delivery.objects.filter(pk=delivery.pk).update(status="completed")
    view = View.objects.create(name="Eligible", fields=["customer_id", *ELIGIBLE])
    extracted = extract([delivery], view, operator=persona)
    plan = redelivery.plan_redelivery(None, "not_opened", 3, source=delivery)
    key = DkimKey.objects.create(
        domain="shop.example", selector="s1", algorithm="ed25519", public_key="AAAA"
    )
    raw = EmailMessage()
    raw["Subject"], raw["From"], raw["To"] = "Hello", "news@shop.example", "a@example.com"
    raw.set_content("Hi")
    raw.add_alternative("<p>Hi</p>", subtype="html")
    message = CapturedMessage.capture("news@shop.example", ["a@example.com"], raw.as_bytes())
    bounce, _new = bounce_actions.receive(
        b"Subject: Undelivered\r\nMessage-ID: <t@mx.example>\r\n\r\nnot a bounce\r\n", "file"
    )
    mailbox = Mailbox.objects.create(
        name="bounces", protocol="imap", host="127.0.0.1", port=993, username="b", password="p"
    )
    return {
        "bounce": bounce.pk,
        "mailbox": mailbox.pk,
        "mail": mail.pk,
        "delivery": delivery.pk,
        "relay": relay.pk,
        "extraction": extracted.pk,
        "plan": plan.pk,
        "dkim_key": key.pk,
        "message": message.pk,
    }


def _missing(persona: Operator, rights: tuple[str, ...]) -> list[str]:
    return [r for r in rights if not persona.has_right(r)]


def _denial(missing: list[str]) -> str:
    labels = ", ".join(RIGHT_LABELS[r] for r in missing)
    return f"You do not have the right to do this (needs: {labels})."


def _expected_denial(method: str, path: str, persona: Operator, rights: tuple[str, ...]) -> str:
    """The 403's message for ``persona``, or "" when it holds the row's rights."""
    for stage in STAGED.get((method, path), (rights,)):
        missing = _missing(persona, stage)
        if missing:
            return _denial(missing)
    return ""


def test_the_stages_of_a_row_are_its_rights():
    rows = {(m, p): r for _n, m, p, r in UI} | {(m, p): r for m, p, r in API}
    for key, stages in STAGED.items():
        assert tuple(r for stage in stages for r in stage) == rows[key], key


# Not refused: the page, a redirect after the write, the form's 400 naming what is wrong (the
# requests carry no data) or a 409 naming the state that forbids it (a completed delivery is not
# paused). Never a 404: the world plants what every path names.
ALLOWED = (200, 201, 202, 204, 302, 400, 409)


def _screen(persona: Operator, method: str, path: str, rights: tuple[str, ...], world) -> None:
    r = getattr(client_for(persona), method)(path.format(**world))
    denial = _expected_denial(method, path, persona, rights)
    if denial:
        assert r.status_code == 403, (persona.username, r.status_code)
        assert r.context["message"] == denial, persona.username
    else:
        assert r.status_code in ALLOWED, (persona.username, r.status_code)


def _endpoint(persona: Operator, method: str, path: str, rights: tuple[str, ...], world) -> None:
    client = api_client(persona)
    url = path.format(**world)
    if method == "get":
        r = client.get(url)
    else:
        r = getattr(client, method)(url, "{}", content_type="application/json")
    denial = _expected_denial(method, path, persona, rights)
    if denial:
        assert r.status_code == 403, (persona.username, r.status_code)
        assert r.json() == {"detail": denial}, persona.username
    else:
        # Allowed: whatever the empty body makes of it (a 400 names what is missing), never 403.
        assert r.status_code in ALLOWED, (persona.username, r.content)


@pytest.mark.parametrize("name, method, path, rights", UI, ids=[f"{m} {p}" for _n, m, p, _r in UI])
def test_each_screen_needs_its_rights(persona, world, name, method, path, rights):
    _screen(persona, method, path, rights, world)


@pytest.mark.parametrize("method, path, rights", API, ids=[f"{m} {p}" for m, p, _r in API])
def test_each_api_endpoint_needs_its_rights(persona, world, method, path, rights):
    _endpoint(persona, method, path, rights, world)


def _short_of_each_right(rights: tuple[str, ...]) -> list[Operator]:
    """For each right of a row, an operator holding every right but that one; last, one holding
    exactly the row's rights (it may write: it comes after the refused ones)."""
    every = [code for code, _label in RIGHTS]
    made = [make_operator(f"no-{right}", [r for r in every if r != right]) for right in rights]
    return [*made, make_operator("exactly", list(rights))]


@pytest.mark.parametrize("name, method, path, rights", UI, ids=[f"{m} {p}" for _n, m, p, _r in UI])
def test_each_right_of_a_screen_is_needed_and_they_suffice(db, media, name, method, path, rights):
    operators = _short_of_each_right(rights)
    world = _world(operators[-1], media)
    for operator in operators:
        _screen(operator, method, path, rights, world)


@pytest.mark.parametrize("method, path, rights", API, ids=[f"{m} {p}" for m, p, _r in API])
def test_each_right_of_an_api_endpoint_is_needed_and_they_suffice(db, media, method, path, rights):
    operators = _short_of_each_right(rights)
    world = _world(operators[-1], media)
    for operator in operators:
        _endpoint(operator, method, path, rights, world)


def test_the_member_lacks_database_design_and_operators_admin(member):
    assert not member.has_right(DESIGN)
    assert not member.has_right(ADMIN)
    assert member.has_right(READ) and member.has_right(IMPORT) and member.has_right(EXPORT)


def test_anonymous_visitors_are_sent_to_log_in(db):
    client = Client()
    world = defaultdict(lambda: 1)
    for _name, method, path, _rights in UI:
        r = getattr(client, method)(path.format_map(world))
        assert r.status_code == 302, path
        assert r["Location"].startswith("/accounts/login/"), path


def test_every_screen_is_in_the_table():
    named = {n for n, *_ in UI} | PUBLIC | OPEN | set(WEBHOOKS)
    for name, route in _screens():
        if name.startswith("tracking:"):
            continue  # public: see test_the_tracking_urls_stay_public
        assert name in named, f"{name} ({route}) has no row in UI"


def test_every_row_names_its_screen():
    from django.urls import resolve

    world = defaultdict(lambda: 1)
    for name, _method, path, _rights in UI:
        assert resolve(path.format_map(world).split("?")[0]).view_name == name, path


def test_every_api_operation_is_in_the_table():
    listed = {(m, _template(p)) for m, p, _r in API}
    operations = set(_api_operations())
    assert operations <= listed, sorted(operations - listed)
    assert listed <= operations, sorted(listed - operations)


def _template(path: str) -> str:
    """Our concrete paths as the schema writes them: ``{customer}`` is ``{customer_id}``."""
    path = re.sub(r"\{(\w+)\}", r"{\1_id}", path.split("?")[0])
    for concrete, template in (
        ("/api/fields/note", "/api/fields/{key}"),
        ("/recipients/all", "/recipients/{count}"),
        ("/{delivery_id}/pause", "/{delivery_id}/{action}"),
    ):
        path = path.replace(concrete, template)
    return path


def test_the_tracking_urls_stay_public(db):
    """Recipients' mail programs call them without logging in: a bad token is answered by the
    view itself (the pixel, the "link not valid" page), never by the log-in page or a 403."""
    client = Client()
    for name, route in _screens():
        if not name.startswith("tracking:"):
            continue
        path = re.sub(r"\(\?P<\w+>[^)]*\)", "x", PARAM.sub("x", route))
        path = path.replace("^", "").replace("\\Z", "")
        r = client.get(path)
        assert r.status_code in (200, 400, 404), (path, r.status_code)
        assert not r.get("Location", "").startswith("/accounts/login/"), path


def test_the_webhooks_stay_public(db, settings):
    """Called without logging in and without a CSRF token: disabled (404) until configured,
    then the view itself answers a request that is not a signed message (400), never the
    log-in page or a 403 from CSRF."""
    from django.urls import resolve

    settings.OKURU_SNS_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:t"]
    client = Client(enforce_csrf_checks=True)
    for name, path in WEBHOOKS.items():
        assert resolve(path).view_name == name
        r = client.post(path, b"{}", content_type="text/plain")
        assert r.status_code == 400, (path, r.status_code)
        assert client.get(path).status_code == 405
    settings.OKURU_SNS_TOPIC_ARNS = []
    for path in WEBHOOKS.values():
        assert client.post(path, b"{}", content_type="text/plain").status_code == 404


# --- a safety net over the whole project: every screen and endpoint refuses an outsider ------

# Screens that need no right beyond logging in (own profile, own jobs, own notices), and the
# public ones (log-in, language switch, the tracking endpoints recipients' mail programs call).
LOGIN_ONLY = {n for n, _m, _p, r in UI if r == LOGIN}
OPEN = PUBLIC | {"set_language"} | set(WEBHOOKS)


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
    client = api_client(outsider)
    schema = api.get_openapi_schema()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "jobs" in operation.get("tags", []):
                continue  # own jobs only, with no right (tested above)
            # Ids that exist nowhere: the rights are checked before anything is looked up.
            url = re.sub(r"\{(\w+)\}", lambda m: {"key": "x", "count": "all"}.get(m[1], "1"), path)
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
    return api_client(persona)


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
