"""The mailings API: mails (create, edit, preview counts, send or reserve), deliveries (list,
report, state changes, unknown rows), the recipients of a report's counts (JSON pages and
CSV exports), and the SMTP relays (``sending`` right; the password is write-only). Registered on
the project API in ``okuru.api.main``.

Rights are the UI's: ``mails`` to compose, ``sending`` to send and change a delivery's state,
``reports`` for results, plus ``export_data`` for CSV exports; customer data (a recipient's
address and SMTP reply, exported fields) also needs ``customers_read``
(``okuru.accounts.access``). Writes go through the named
actions in ``okuru.mailings.actions`` (which write the operation log), exports are logged here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status

from okuru.accounts import audit
from okuru.api.auth import needs
from okuru.api.errors import ApiError, bad_request, not_found
from okuru.customers.filters import FilterError
from okuru.customers.models import Topic
from okuru.mailings import actions, extraction, relays, rendering, reports, targeting
from okuru.mailings.models import Delivery, Mail, Relay

router = Router(tags=["mailings"])
MAX_LIMIT = 1000

MAIL_FIELDS = (
    "name",
    "from_address",
    "from_name",
    "reply_to",
    "return_path_domain",
    "error_threshold",
    "duplicate_rule",
    "address_field",
    "open_tracking",
    "click_tracking",
    "subject",
    "text_body",
    "html_body",
    "filter",
    "customer_set",
    "view_id",
    "recipient_list_id",
    "relay_id",
)


class MailIn(Schema):
    name: str
    kind: str = "basic"
    from_address: str
    from_name: str = ""
    reply_to: str = ""
    return_path_domain: str = ""
    error_threshold: int = 5
    duplicate_rule: str = "ignore"
    address_field: str = "email"
    open_tracking: bool = True
    click_tracking: bool = True
    topic: str | None = None
    subject: str
    text_body: str = ""
    html_body: str = ""
    filter: dict[str, Any] | None = None
    view_id: int | None = None
    customer_set: dict[str, Any] | None = None
    recipient_list_id: int | None = None
    relay_id: int | None = None


class MailPatch(Schema):
    name: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    return_path_domain: str | None = None
    error_threshold: int | None = None
    duplicate_rule: str | None = None
    address_field: str | None = None
    open_tracking: bool | None = None
    click_tracking: bool | None = None
    topic: str | None = None
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    filter: dict[str, Any] | None = None
    view_id: int | None = None
    customer_set: dict[str, Any] | None = None
    recipient_list_id: int | None = None
    relay_id: int | None = None


class SendIn(Schema):
    at: datetime | None = None


class UnknownIn(Schema):
    resend: bool


class DeliveryParams(Schema):
    mail: int | None = None
    status: str | None = None
    before: int | None = None
    limit: int = 100


class PageParams(Schema):
    after: int | None = None
    limit: int = 100


class ExportParams(Schema):
    fields: list[str] = []
    encoding: str = "utf-8-sig"


# ---------------------------------------------------------------------------------------------
# Helpers


# A mail's references are ``<name>_id`` in the API (the topic goes by its key).
API_KEYS = {"relay": "relay_id", "view": "view_id", "recipient_list": "recipient_list_id"}


def _validation(e: ValidationError) -> ApiError:
    errors = None
    if hasattr(e, "error_dict"):
        errors = {API_KEYS.get(k, k): v for k, v in e.message_dict.items()}
    return ApiError(400, " ".join(e.messages), errors)


def _get_mail(mail_id: int) -> Mail:
    mail = Mail.objects.select_related("topic").filter(pk=mail_id).first()
    if mail is None:
        raise not_found(_("No mail with id %(id)s.") % {"id": mail_id})
    return mail


def _get_delivery(delivery_id: int) -> Delivery:
    delivery = Delivery.objects.select_related("mail").filter(pk=delivery_id).first()
    if delivery is None:
        raise not_found(_("No delivery with id %(id)s.") % {"id": delivery_id})
    return delivery


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(_("limit must be between 1 and %(max)s.") % {"max": MAX_LIMIT})
    return limit


def _topic(key: str | None) -> Topic | None:
    if not key:
        return None
    if actions.UNSTORABLE_RE.search(key):  # not a key, and a query with it would fail
        raise bad_request(_("No newsletter topic with key %(key)s.") % {"key": ascii(key)})
    topic = Topic.objects.filter(key=key).first()
    if topic is None:
        raise bad_request(_("No newsletter topic with key %(key)s.") % {"key": key})
    return topic


def mail_json(mail: Mail) -> dict[str, Any]:
    out: dict[str, Any] = {"id": mail.pk, "kind": mail.kind}
    out.update({f: getattr(mail, f) for f in MAIL_FIELDS})
    out["topic"] = mail.topic.key if mail.topic_id else None
    out["links"] = [
        {"id": link.pk, "url": link.url, "name": link.name}
        for link in mail.links.filter(active=True)
    ]
    out["locked"] = actions.is_locked(mail)
    out["created"] = mail.created
    out["updated"] = mail.updated
    return out


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.pk,
        "mail": d.mail_id,
        "mail_name": d.mail.name,
        "status": d.status,
        "scheduled_at": d.scheduled_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "selectable_as_source": reports.is_selectable_source(d),
        "recipients": d.recipient_count,
        "sent": d.sent_count,
        "failed": d.failed_count,
        "unknown": d.unknown_count,
        "open_unique": d.open_unique,
        "open_total": d.open_total,
        "click_unique": d.click_unique,
        "click_total": d.click_total,
        "note": d.note,
    }


def new_mail(payload: MailIn, owner: Any) -> Mail:
    """The unsaved mail a ``MailIn`` describes (the CLI's ``okuru mails create`` too)."""
    if payload.kind not in (Mail.Kind.BASIC, Mail.Kind.SPOT):
        raise bad_request(_("Unknown kind %(kind)s: use basic or spot.") % {"kind": payload.kind})
    values = payload.dict(exclude={"topic"})
    values["filter"] = values["filter"] or {}
    values["customer_set"] = values["customer_set"] or {}
    mail = Mail(**values, topic=_topic(payload.topic), owner=owner)
    return _check_relay(extraction.mail_defaults(mail, payload.model_fields_set))


def _check_relay(mail: Mail) -> Mail:
    # Checked here: an unknown id would otherwise fail only at commit, as a server error.
    if mail.relay_id is not None and not Relay.objects.filter(pk=mail.relay_id).exists():
        raise bad_request(_("No relay with id %(id)s.") % {"id": mail.relay_id})
    return mail


def _save(request: HttpRequest, mail: Mail) -> Mail:
    _check_relay(mail)
    try:
        return actions.save_mail(mail, request)
    except ValidationError as e:
        raise _validation(e) from None


# ---------------------------------------------------------------------------------------------
# Mails


@router.get("/mails", summary="List mails", auth=needs("mails"))
def list_mails(request: HttpRequest, params: Query[PageParams]):
    """Mails, newest first; page on with ``after`` = the last id of the previous page."""
    qs = Mail.objects.select_related("topic").order_by("-id")
    if params.after is not None:
        qs = qs.filter(id__lt=params.after)
    limit = _limit(params.limit)
    rows = list(qs[: limit + 1])
    return {
        "items": [mail_json(m) for m in rows[:limit]],
        "next_after": rows[limit - 1].pk if len(rows) > limit else None,
    }


@router.post("/mails", response={201: dict}, summary="Create a mail", auth=needs("mails"))
def create_mail(request: HttpRequest, payload: MailIn):
    """``kind``: basic or spot. Merge fields in ``subject``/``text_body``/``html_body`` are
    checked now: an unknown field is a 400. Basic: ``filter`` (a filter tree, which may hold
    ``delivery_history`` conditions). Spot: ``view_id`` + optional ``customer_set``, or
    ``recipient_list_id``."""
    operator = request.user
    return Status(201, mail_json(_save(request, new_mail(payload, operator))))


@router.get("/mails/{mail_id}", summary="Get a mail", auth=needs("mails"))
def get_mail(request: HttpRequest, mail_id: int):
    return mail_json(_get_mail(mail_id))


@router.patch("/mails/{mail_id}", summary="Change a mail", auth=needs("mails"))
def update_mail(request: HttpRequest, mail_id: int, payload: MailPatch):
    """Only the given keys change. While a delivery of the mail is reserved or running its
    target conditions cannot change (400 with the reason)."""
    mail = _get_mail(mail_id)
    changes = payload.dict(exclude_unset=True)
    if "topic" in changes:
        mail.topic = _topic(changes.pop("topic"))
    for key, value in changes.items():
        if key in ("filter", "customer_set") and value is None:
            value = {}
        setattr(mail, key, value)
    return mail_json(_save(request, mail))


@router.get("/mails/{mail_id}/counts", summary="Preview a mail's counts", auth=needs("mails"))
def mail_counts(request: HttpRequest, mail_id: int):
    """Matched, excluded by reason, after exclusions, after the duplicate rule."""
    mail = _get_mail(mail_id)
    if not actions.has_target(mail):
        raise bad_request(_("A spot delivery needs a view or a recipient list."))
    try:
        return targeting.preview(mail)
    except FilterError as e:
        raise bad_request(str(e)) from None


@router.post(
    "/mails/{mail_id}/send",
    response={201: dict},
    summary="Send or reserve a mail",
    auth=needs("sending"),
)
def send_mail(request: HttpRequest, mail_id: int, payload: SendIn):
    """Without ``at``: send now. With ``at`` (ISO 8601 with offset): reserve (配信予約)."""
    mail = _get_mail(mail_id)
    if payload.at is not None and payload.at.tzinfo is None:
        raise bad_request(_("at needs a time zone offset, like 2025-04-01T09:00:00+09:00."))
    try:
        actions.check_reservation_time(payload.at)
    except ValidationError as e:
        raise bad_request(" ".join(e.messages), {"at": e.messages}) from None
    try:
        actions.validate_targeting(mail)
        rendering.validate_templates(mail)
        delivery = actions.reserve(actions.create_delivery(mail, request), request, payload.at)
    except ValidationError as e:
        raise _validation(e) from None
    delivery.mail = mail
    return Status(201, delivery_json(delivery))


# ---------------------------------------------------------------------------------------------
# Deliveries


@router.get("/deliveries", summary="List deliveries (delivery results)", auth=needs("reports"))
def list_deliveries(request: HttpRequest, params: Query[DeliveryParams]):
    """Newest first; page on with ``before`` = the last id of the previous page."""
    qs = reports.deliveries().order_by("-id")
    if params.mail is not None:
        qs = qs.filter(mail_id=params.mail)
    if params.status:
        if params.status not in Delivery.Status.values:
            raise bad_request(_("Unknown status: %(status)s") % {"status": params.status})
        qs = qs.filter(status=params.status)
    if params.before is not None:
        qs = qs.filter(id__lt=params.before)
    limit = _limit(params.limit)
    rows = list(qs[: limit + 1])
    return {
        "items": [delivery_json(d) for d in rows[:limit]],
        "next_before": rows[limit - 1].pk if len(rows) > limit else None,
    }


@router.get("/deliveries/{delivery_id}", summary="A delivery's report", auth=needs("reports"))
def delivery_report(request: HttpRequest, delivery_id: int):
    """Sent, errors by kind, opens and clicks (unique, total, rate), clicks per link,
    exclusions, and the opens/clicks series."""
    delivery = _get_delivery(delivery_id)
    report = reports.summary_json(delivery)
    report["series"] = reports.series(delivery)
    return report


@router.post(
    "/deliveries/{delivery_id}/unknown", summary="Decide on unknown rows", auth=needs("sending")
)
def resolve_unknown(request: HttpRequest, delivery_id: int, payload: UnknownIn):
    """``resend``: true sends the unknown rows again (some may get a second copy), false
    leaves them unsent for good."""
    delivery = _get_delivery(delivery_id)
    try:
        n = actions.resolve_unknown(delivery, request, resend=payload.resend)
    except ValidationError as e:
        raise ApiError(409, " ".join(e.messages)) from None
    return {"rows": n, "delivery": delivery_json(delivery)}


@router.post(
    "/deliveries/{delivery_id}/{action}",
    summary="Cancel, pause, resume or stop",
    auth=needs("sending"),
)
def delivery_action(request: HttpRequest, delivery_id: int, action: str):
    """``action``: cancel (a reservation), pause, resume, stop."""
    do = {
        "cancel": actions.cancel,
        "pause": actions.pause,
        "resume": actions.resume,
        "stop": actions.stop,
    }.get(action)
    if do is None:
        raise not_found(_("Unknown action: %(action)s") % {"action": action})
    delivery = _get_delivery(delivery_id)
    try:
        do(delivery, request)
    except ValidationError as e:
        raise ApiError(409, " ".join(e.messages)) from None
    delivery.refresh_from_db()
    return delivery_json(delivery)


def _count(delivery: Delivery, count: str) -> None:
    try:
        reports.count_condition(delivery, count)
    except (reports.ReportError, ValueError) as e:
        raise not_found(str(e)) from None


@router.get(
    "/deliveries/{delivery_id}/recipients/{count}",
    summary="Recipients of a count",
    auth=needs("reports"),
)
def count_recipients(request: HttpRequest, delivery_id: int, count: str, params: Query[PageParams]):
    """``count``: all, sent, errors, error:<kind>, unknown, opened, not_opened, clicked,
    not_clicked, clicked:<link id>. Ledger rows in order; page on with ``after``. ``address``
    and ``smtp_reply`` are customer data: only a caller with customers read gets them.
    ``maybe_duplicate``: the row was sent again after being unknown (two copies possible)."""
    delivery = _get_delivery(delivery_id)
    _count(delivery, count)
    limit = _limit(params.limit)
    qs = reports.recipients(delivery, count).order_by("id")
    if params.after is not None:
        qs = qs.filter(id__gt=params.after)
    rows = list(qs.values(*reports.recipient_columns(request.user, RECIPIENT_COLUMNS))[: limit + 1])
    return {
        "items": rows[:limit],
        "next_after": rows[limit - 1]["id"] if len(rows) > limit else None,
    }


RECIPIENT_COLUMNS = (
    "id",
    "customer_id",
    "address",
    "status",
    "error_kind",
    "smtp_reply",
    "sent_at",
    "first_open_at",
    "open_count",
    "first_click_at",
    "click_count",
    "maybe_duplicate",
)


def _csv(chunks: Any, name: str, encoding: str) -> StreamingHttpResponse:
    charset = "cp932" if encoding == "cp932" else "utf-8"
    response = StreamingHttpResponse(chunks, content_type=f"text/csv; charset={charset}")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@router.get(
    "/deliveries/{delivery_id}/recipients/{count}/export",
    response={200: None},
    summary="Export the customers of a count (CSV)",
    auth=needs("reports", "export_data"),
)
def export_count(request: HttpRequest, delivery_id: int, count: str, params: Query[ExportParams]):
    """Customer ID plus ``fields`` (keys), streamed; importable with mode "update" keyed on
    Customer ID. ``encoding``: utf-8-sig or cp932. ``fields`` other than ``customer_id`` need
    customers read as well."""
    delivery = _get_delivery(delivery_id)
    _count(delivery, count)
    reports.check_export_fields(request.user, params.fields)
    try:
        chunks = reports.iter_recipient_export(delivery, count, params.fields, params.encoding)
    except reports.ReportError as e:
        raise bad_request(str(e)) from None
    audit.log(
        request,
        "delivery.export_recipients",
        f"delivery:{delivery.pk}",
        {"count": count, "fields": params.fields, "encoding": params.encoding},
    )
    return _csv(chunks, f"delivery-{delivery.pk}-{count.replace(':', '-')}.csv", params.encoding)


@router.get(
    "/deliveries/{delivery_id}/events/export",
    response={200: None},
    summary="Export a delivery's events (CSV)",
    auth=needs("reports", "export_data"),
)
def export_events(request: HttpRequest, delivery_id: int, encoding: str = "utf-8-sig"):
    """One row per event: Customer ID, event (sent, open, click:<name or URL>,
    error:<kind>), time."""
    delivery = _get_delivery(delivery_id)
    try:
        chunks = reports.iter_event_export(delivery, encoding)
    except reports.ReportError as e:
        raise bad_request(str(e)) from None
    audit.log(request, "delivery.export_events", f"delivery:{delivery.pk}", {"encoding": encoding})
    return _csv(chunks, f"delivery-{delivery.pk}-events.csv", encoding)


# ---------------------------------------------------------------------------------------------
# Relays (the named actions are in ``okuru.mailings.relays``)


class RelayIn(Schema):
    name: str
    host: str
    port: int = 25
    security: str = "none"
    username: str = ""
    password: str = ""
    timeout: int = 30
    max_per_second: int = 0
    per_domain_per_second: int = 0
    verify_tls: bool = True
    is_default: bool = False


class RelayPatch(Schema):
    name: str | None = None
    host: str | None = None
    port: int | None = None
    security: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: int | None = None
    max_per_second: int | None = None
    per_domain_per_second: int | None = None
    verify_tls: bool | None = None
    is_default: bool | None = None


def relay_json(relay: Relay) -> dict[str, Any]:
    """A relay as the API and the CLI show it: never the password, ``has_password`` instead."""
    return {"id": relay.pk, **relays.public(relay), "created": relay.created}


def _get_relay(relay_id: int) -> Relay:
    relay = Relay.objects.filter(pk=relay_id).first()
    if relay is None:
        raise not_found(_("No relay with id %(id)s.") % {"id": relay_id})
    return relay


def _save_relay(request: HttpRequest, relay: Relay, make_default: bool) -> Relay:
    try:
        return relays.save_relay(relay, request, make_default)
    except ValidationError as e:
        raise _validation(e) from None


@router.get("/relays", summary="List relays", auth=needs("sending"))
def list_relays(request: HttpRequest):
    return {"items": [relay_json(r) for r in Relay.objects.order_by("name")]}


@router.post("/relays", response={201: dict}, summary="Create a relay", auth=needs("sending"))
def create_relay(request: HttpRequest, payload: RelayIn):
    """``security``: none, starttls or tls. ``password`` is stored and never returned.
    ``max_per_second`` / ``per_domain_per_second``: 0 is no limit. ``is_default``: mails
    without a relay of their own go through this one (the first relay is the default)."""
    values = payload.dict()
    make_default = values.pop("is_default")
    return Status(201, relay_json(_save_relay(request, Relay(**values), make_default)))


@router.get("/relays/{relay_id}", summary="Get a relay", auth=needs("sending"))
def get_relay(request: HttpRequest, relay_id: int):
    return relay_json(_get_relay(relay_id))


@router.patch("/relays/{relay_id}", summary="Change a relay", auth=needs("sending"))
def update_relay(request: HttpRequest, relay_id: int, payload: RelayPatch):
    """Only the given keys change; without ``password`` the stored one is kept, ``""`` removes
    it. ``is_default`` true makes this the default; false is refused on the default relay
    (make another one the default instead)."""
    relay = _get_relay(relay_id)
    changes = payload.dict(exclude_unset=True)
    make_default = changes.pop("is_default", None)
    if make_default is False and relay.is_default:
        raise bad_request(
            _("There must be a default relay: make another relay the default instead.")
        )
    for key, value in changes.items():
        if value is None:
            raise bad_request(_("%(key)s cannot be null.") % {"key": key})
        setattr(relay, key, value)
    return relay_json(_save_relay(request, relay, bool(make_default)))


@router.delete(
    "/relays/{relay_id}", response={204: None}, summary="Delete a relay", auth=needs("sending")
)
def delete_relay(request: HttpRequest, relay_id: int):
    """Refused (409, with the reason) while a mail, or a reserved, running or paused delivery,
    uses the relay, and for the default relay."""
    relay = _get_relay(relay_id)
    try:
        relays.delete_relay(relay, request)
    except ValidationError as e:
        raise ApiError(409, " ".join(e.messages)) from None
    return Status(204, None)


@router.post("/relays/{relay_id}/test", summary="Test a relay's settings", auth=needs("sending"))
def test_relay(request: HttpRequest, relay_id: int):
    """Connect, EHLO, STARTTLS or TLS, log in, QUIT: no message is sent. ``ok`` and a
    ``message`` saying what happened or what to change."""
    result = relays.test_relay(_get_relay(relay_id), request)
    return {"ok": result.ok, "message": result.message}
