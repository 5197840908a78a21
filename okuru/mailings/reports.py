"""Delivery results (配信実績): the counts of a delivery, their recipients, exports, the chart's series,
and the purge of per-recipient detail after the retention window.

A *count* is a named set of ledger rows that a report shows a number for and drills into:

====================  =============================================================
``all``               every ledger row (the frozen recipients)
``sent``              accepted by the relay (配信数)
``errors``            failed at send time, or bounced later (配信エラー数)
``error:<kind>``      errors of one kind (``bad_format``, ``unknown_user`` …)
``unknown``           may or may not have gone out; waiting for an operator
``excluded``          excluded just before sending (``excluded:<reason>`` for one reason)
``stopped``           never sent: an operator stopped the delivery
``opened``            opened at least once (a click counts as an open)
``not_opened``        sent and never opened
``clicked``           clicked any tracked link
``not_clicked``       sent and never clicked
``clicked:<link>``    clicked that tracked link (``TrackedLink.id``)
====================  =============================================================

Exclusions (refusal flag, unsubscribed …) are counted when the ledger is frozen, and those
customers never get a ledger row, so they have a number and no drill-down. Customers who became
excluded between the freeze and their turn to be sent keep their row (status ``excluded``), and
those have both.

Recipient exports write the customers of a count with the customers export's own machinery
(``okuru.customers.exporter``): the header "Customer ID" and field labels, formula
neutralisation, streaming. So the file is exactly what the customers importer reads with mode
"update" keyed on Customer ID — the 配信フラグ route users rely on. Customers deleted since the
delivery are not in it (there is nothing left to update).

Per-recipient detail (ledger rows and events) of deliveries that started more than
``MAILINGS_RETENTION_DAYS`` ago is purged by ``purge_expired``; what the report computes from
that detail (errors by kind, clicks per link, the chart) is frozen first into
``ReportArchive``; the other counts live on the ``Delivery`` row and stay.

Opens and clicks reach the counters and events through the tracking inbox, which
``okuru trackingworker`` drains continuously; the summary, the chart, the drill-downs and the
exports first run the catch-ups registered with ``register_catch_up`` (the tracking app
registers that drain), so they never trail the traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.accounts.access import check_customer_data, sees_customer_data
from okuru.customers import exporter, filters, sql
from okuru.customers.fields import neutralize
from okuru.customers.filters import FilterError
from okuru.lib import csvio
from okuru.mailings import extraction, targeting
from okuru.mailings.models import (
    Delivery,
    ErrorKind,
    Event,
    Exclusion,
    Recipient,
    ReportArchive,
    TrackedLink,
)

PAGE_SIZE = 50
EPOCH = datetime.min.replace(tzinfo=UTC)
EXPORT_CHUNK = 2000
FINISHED = (Delivery.Status.COMPLETED, Delivery.Status.STOPPED, Delivery.Status.CANCELLED)
SIMPLE_COUNTS = (
    "all",
    "sent",
    "errors",
    "unknown",
    "excluded",
    "stopped",
    "opened",
    "not_opened",
    "clicked",
    "not_clicked",
)


COUNTERS = ("open_unique", "open_total", "click_unique", "click_total")


# What brings the counters and events up to date before a report reads them: the tracking app
# registers the drain of its inbox here (it knows mailings; mailings does not know it). Each
# returns how many changes it applied, and logs rather than raises on failure.
_catch_up: list[Callable[[], int]] = []


def register_catch_up(apply_pending: Callable[[], int]) -> None:
    """Run ``apply_pending`` before every report read (once, however often registered)."""
    if apply_pending not in _catch_up:
        _catch_up.append(apply_pending)


def _current(delivery: Delivery | None = None) -> None:
    """Apply the opens and clicks still waiting to be recorded, and reload ``delivery``'s
    counters if that changed anything. A failure is logged: the report then shows the counts
    as the last catch-up left them."""
    if sum(apply_pending() for apply_pending in _catch_up) and delivery is not None:
        delivery.refresh_from_db(fields=COUNTERS)


class ReportError(ValueError):
    """A request the report cannot answer, with the message for the operator."""


def is_selectable_source(delivery: Delivery) -> bool:
    """Only deliveries started in the last 3 months may be the source of a re-delivery, a
    delivery history condition or a customer set; older ones show their summary only."""
    return delivery.started_at is not None and delivery.started_at >= targeting.source_cutoff()


def deliveries() -> QuerySet[Delivery]:
    """The delivery results list: every delivery that was reserved or sent, newest first."""
    return (
        Delivery.objects.exclude(status=Delivery.Status.DRAFT)
        .select_related("mail")
        .order_by("-created", "-id")
    )


def is_purged(delivery: Delivery) -> bool:
    return ReportArchive.objects.filter(delivery=delivery).exists()


# ---------------------------------------------------------------------------------------------
# Counts and their recipients


def _link(delivery: Delivery, raw: str) -> TrackedLink:
    link = (
        TrackedLink.objects.filter(pk=int(raw), mail_id=delivery.mail_id).first()
        if raw.isdigit()
        else None
    )
    if link is None:
        raise ReportError(_("This delivery's mail has no link %(link)s.") % {"link": raw})
    return link


def count_condition(delivery: Delivery, count: str) -> Q:
    """The ledger rows of ``count`` (see the module docstring) as a filter on ``Recipient``."""
    sent = Q(status=Recipient.Status.SENT)
    simple = {
        "all": Q(),
        "sent": sent,
        "errors": Q(status=Recipient.Status.FAILED) | ~Q(error_kind=""),
        "unknown": Q(status=Recipient.Status.UNKNOWN),
        "excluded": Q(status=Recipient.Status.EXCLUDED),
        "stopped": Q(status=Recipient.Status.STOPPED),
        "opened": Q(first_open_at__isnull=False),
        "not_opened": sent & Q(first_open_at__isnull=True),
        "clicked": Q(click_count__gt=0),
        "not_clicked": sent & Q(click_count=0),
    }
    if count in simple:
        return simple[count]
    name, _sep, arg = count.partition(":")
    if name == "error" and arg in ErrorKind.values:
        return Q(error_kind=arg)
    if name == "excluded" and arg in Exclusion.values:
        return Q(status=Recipient.Status.EXCLUDED, exclusion=arg)
    if name == "clicked" and arg:
        link = _link(delivery, arg)
        clicked = Event.objects.filter(
            recipient_id=OuterRef("pk"), kind=Event.Kind.CLICK, link_id=link.pk
        )
        return Q(Exists(clicked))
    raise ReportError(_("Unknown count: %(count)s") % {"count": count})


def recipients(delivery: Delivery, count: str) -> QuerySet[Recipient]:
    return Recipient.objects.filter(count_condition(delivery, count), delivery=delivery)


# What a ledger row holds of the customer's data: the address it went to, and what repeats it
# (relays name the address in their replies; a note may quote it). Shown only to operators who
# may see customer data (``okuru.accounts.access``); the rest of a row is about the delivery.
RECIPIENT_CUSTOMER_DATA = ("address", "smtp_reply", "note")


def recipient_columns(user: Any, columns: tuple[str, ...]) -> tuple[str, ...]:
    """``columns`` of a ledger row that ``user`` may see."""
    if sees_customer_data(user):
        return columns
    return tuple(c for c in columns if c not in RECIPIENT_CUSTOMER_DATA)


def check_export_fields(user: Any, fields: list[str]) -> None:
    """A count's export is Customer IDs for anyone with the rights to export it; any other
    field is customer data (403 naming Customers: read)."""
    if any(f != "customer_id" for f in fields):
        check_customer_data(user)


def count_label(delivery: Delivery, count: str) -> str:
    labels = {
        "all": _("Recipients (every recipient, errors included)"),
        "sent": _("Sent (accepted by the relay)"),
        "errors": _("Errors"),
        "unknown": _("Unknown"),
        "excluded": _("Excluded at send time"),
        "stopped": _("Not sent: delivery stopped"),
        "opened": _("Opened"),
        "not_opened": _("Not opened"),
        "clicked": _("Clicked"),
        "not_clicked": _("Not clicked"),
    }
    if count in labels:
        return labels[count]
    name, _sep, arg = count.partition(":")
    if name == "error":
        return _("Errors: %(kind)s") % {"kind": ErrorKind(arg).label}
    if name == "excluded":
        return _("Excluded at send time: %(reason)s") % {"reason": Exclusion(arg).label}
    link = _link(delivery, arg)
    return _("Clicked: %(link)s") % {"link": link.name or link.url}


def page(
    delivery: Delivery, count: str, after: int | None = None
) -> tuple[list[Recipient], int | None]:
    """One keyset page of a count's ledger rows in ledger order; (rows, next ``after``)."""
    _current()
    qs = recipients(delivery, count).order_by("id")
    if after is not None:
        qs = qs.filter(id__gt=after)
    rows = list(qs[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, (rows[-1].id if rows and more else None)


# ---------------------------------------------------------------------------------------------
# Summary


@dataclass
class LinkStat:
    link_id: int
    url: str
    name: str
    unique: int
    total: int

    @property
    def count(self) -> str:
        """The name of this link's "clicked" count."""
        return f"clicked:{self.link_id}"


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def errors_by_kind(delivery: Delivery) -> dict[str, int]:
    rows = (
        Recipient.objects.filter(delivery=delivery)
        .exclude(error_kind="")
        .order_by()
        .values_list("error_kind")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def link_stats(delivery: Delivery) -> list[LinkStat]:
    """Clicks per tracked link: unique (recipients) and total (clicks). Links of the mail that
    nobody clicked are listed with zeros, in the order they appear in the mail."""
    clicks = {
        row["link_id"]: row
        for row in Event.objects.filter(delivery=delivery, kind=Event.Kind.CLICK)
        .order_by()
        .values("link_id")
        .annotate(total=Count("id"), unique=Count("recipient_id", distinct=True))
    }
    sent_links = {int(i) for i, _url in (delivery.content or {}).get("links", [])}
    out = []
    for link in TrackedLink.objects.filter(mail_id=delivery.mail_id).order_by("position", "id"):
        row = clicks.get(link.pk)
        if row is None and link.pk not in sent_links:
            continue
        out.append(
            LinkStat(
                link.pk,
                link.url,
                link.name,
                row["unique"] if row else 0,
                row["total"] if row else 0,
            )
        )
    return out


def summary(delivery: Delivery) -> dict[str, Any]:
    """Everything the report page shows, from the delivery row, the ledger and the events, or
    from the archive once per-recipient detail is purged."""
    _current(delivery)
    archive = ReportArchive.objects.filter(delivery=delivery).first()
    if archive is not None:
        errors = archive.errors
        links = [LinkStat(**item) for item in archive.links]
    else:
        errors = errors_by_kind(delivery)
        links = link_stats(delivery)
    sent = delivery.sent_count
    excluded = {k: v for k, v in (delivery.excluded or {}).items() if v}
    at_send = {k: v for k, v in (delivery.excluded_at_send or {}).items() if v}
    return {
        "matched": delivery.matched_count,
        "excluded": excluded,
        "excluded_total": sum(excluded.values()),
        "excluded_at_send": at_send,
        "stopped": delivery.stopped_count,
        "recipients": delivery.recipient_count,
        "sent": sent,
        "failed": delivery.failed_count,
        "unknown": delivery.unknown_count,
        "errors": sum(errors.values()),
        "errors_by_kind": [(k, ErrorKind(k).label, n) for k, n in sorted(errors.items())],
        "open_unique": delivery.open_unique,
        "open_total": delivery.open_total,
        "open_rate": _rate(delivery.open_unique, sent),
        "click_unique": delivery.click_unique,
        "click_total": delivery.click_total,
        "click_rate": _rate(delivery.click_unique, sent),
        "links": links,
        "archive": archive,
        "selectable": is_selectable_source(delivery),
    }


def summary_json(delivery: Delivery) -> dict[str, Any]:
    """The summary for the API and the CLI: plain JSON values."""
    s = summary(delivery)
    return {
        "delivery": delivery.pk,
        "mail": delivery.mail_id,
        "status": delivery.status,
        "scheduled_at": delivery.scheduled_at.isoformat() if delivery.scheduled_at else None,
        "started_at": delivery.started_at.isoformat() if delivery.started_at else None,
        "finished_at": delivery.finished_at.isoformat() if delivery.finished_at else None,
        "selectable_as_source": s["selectable"],
        "purged": s["archive"] is not None,
        "matched": s["matched"],
        "excluded": s["excluded"],
        "recipients": s["recipients"],
        "sent": s["sent"],
        "failed": s["failed"],
        "unknown": s["unknown"],
        "excluded_at_send": s["excluded_at_send"],
        "stopped": s["stopped"],
        "errors": s["errors"],
        "errors_by_kind": {k: n for k, _label, n in s["errors_by_kind"]},
        "opens": {"unique": s["open_unique"], "total": s["open_total"], "rate": s["open_rate"]},
        "clicks": {
            "unique": s["click_unique"],
            "total": s["click_total"],
            "rate": s["click_rate"],
        },
        "links": [
            {"link": s.link_id, "url": s.url, "name": s.name, "unique": s.unique, "total": s.total}
            for s in s["links"]
        ],
    }


# ---------------------------------------------------------------------------------------------
# Opens and clicks over time


def series(delivery: Delivery) -> dict[str, Any]:
    """Opens and clicks per hour (per day when the events span more than three days)."""
    archive = ReportArchive.objects.filter(delivery=delivery).first()
    if archive is not None:
        return archive.series
    _current()
    events = Event.objects.filter(
        delivery=delivery, kind__in=(Event.Kind.OPEN, Event.Kind.CLICK)
    ).order_by()
    span = events.aggregate(first=Min("created"), last=Max("created"))
    if span["first"] is None:
        return {"unit": "hour", "points": []}
    unit = "day" if span["last"] - span["first"] > timedelta(days=3) else "hour"
    trunc = (TruncDay if unit == "day" else TruncHour)(
        "created", tzinfo=timezone.get_current_timezone()
    )
    buckets: dict[datetime, list[int]] = {}
    for row in events.annotate(t=trunc).values("t", "kind").annotate(n=Count("id")):
        point = buckets.setdefault(_local(row["t"]), [0, 0])
        point[0 if row["kind"] == Event.Kind.OPEN else 1] += row["n"]
    return {"unit": unit, "points": _fill(buckets, unit)}


def _local(t: datetime) -> datetime:
    """A bucket's start as naive local time (SQLite and PostgreSQL return it differently)."""
    if timezone.is_aware(t):
        t = timezone.localtime(t)
    return t.replace(tzinfo=None)


def _fill(buckets: dict[datetime, list[int]], unit: str) -> list[list[Any]]:
    """Every bucket from the first to the last, empty ones as zeros, so the chart's x axis is
    time and a quiet hour shows as a dip rather than disappearing. Steps are taken in local
    time: a day is a calendar day even across a daylight-saving change."""
    if not buckets:
        return []
    step = timedelta(days=1) if unit == "day" else timedelta(hours=1)
    t, last = min(buckets), max(buckets)
    points = []
    while t <= last:
        opens, clicks = buckets.get(t, (0, 0))
        points.append([timezone.make_aware(t).isoformat(), opens, clicks])
        t += step
    return points


# ---------------------------------------------------------------------------------------------
# Exports


def iter_recipient_export(
    delivery: Delivery, count: str, fields: list[str], encoding: str = "utf-8-sig", minus: str = ""
) -> Iterator[bytes]:
    """The customers of a count as CSV chunks: Customer ID first, then ``fields``.

    This is the customers export itself with one condition, ``delivery_count`` (below), so
    the file is what the customers export writes and the importer reads. Checks everything
    before the first chunk (unknown count, field, encoding: ``ReportError``) so a bad request
    fails before a download starts. The caller writes the operation log."""
    _current()
    recipients(delivery, count)  # an unknown count fails here, with its own message
    if minus:
        recipients(delivery, minus)
    keys = ["customer_id", *[k for k in fields if k != "customer_id"]]
    tree = {"match": "all", "conditions": [count_filter(delivery, count, minus)]}
    try:
        return exporter.iter_export_chunks(keys, tree, encoding)
    except exporter.ExportError as e:
        raise ReportError(str(e)) from None


def count_filter(delivery: Delivery, count: str, minus: str = "") -> dict[str, Any]:
    """A customers filter condition: "is among the recipients of this count" (and, with
    ``minus``, not among those of that other count: route 3's "sent minus errors")."""
    cond = {"kind": "delivery_count", "delivery": delivery.pk, "count": count}
    if minus:
        cond["minus"] = minus
    return cond


def compile_delivery_count(cond: dict[str, Any]) -> tuple[str, list[Any]]:
    """The ``delivery_count`` filter condition as SQL: a semi-join over the ledger's
    (delivery_id, customer_id) unique index. Unlike ``delivery_history`` it has no 3-month
    window: it serves exports of any delivery whose detail is still kept."""
    delivery = Delivery.objects.filter(pk=_int(cond.get("delivery"))).first()
    if delivery is None:
        raise FilterError(_("No such delivery: %(id)s") % {"id": cond.get("delivery")})
    try:
        qs = recipients(delivery, str(cond.get("count", "")))
    except ReportError as e:
        raise FilterError(str(e)) from None
    sub, params = qs.values("customer_id").query.sql_with_params()
    where, params = f'"{sql.TABLE}"."id" IN ({sub})', list(params)
    if cond.get("minus"):
        try:
            other = recipients(delivery, str(cond["minus"]))
        except ReportError as e:
            raise FilterError(str(e)) from None
        sub2, params2 = other.values("customer_id").query.sql_with_params()
        where = f'({where} AND "{sql.TABLE}"."id" NOT IN ({sub2}))'
        params += list(params2)
    return where, params


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


filters.register_kind("delivery_count", compile_delivery_count)


def event_label(kind: str, link_name: str = "", link_url: str = "") -> str:
    if kind == Event.Kind.CLICK:
        return f"click:{link_name or link_url}"
    return kind


def _time(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def iter_event_rows(delivery: Delivery) -> Iterator[list[Any]]:
    """One row per event, recipient by recipient in ledger order, each recipient's events in
    time order: (Customer ID, event, time). Events are ``sent``, ``open``,
    ``click:<name or URL>``, ``error:<kind>`` and ``maybe_duplicate`` (sent again after being
    unknown: the recipient may hold two copies). Memory holds one chunk of recipients."""
    _current()
    after = 0
    while True:
        rows = list(
            Recipient.objects.filter(delivery=delivery, id__gt=after)
            .order_by("id")
            .values(
                "id",
                "customer_id",
                "status",
                "sent_at",
                "error_kind",
                "claimed_at",
                "maybe_duplicate",
            )[:EXPORT_CHUNK]
        )
        if not rows:
            return
        after = rows[-1]["id"]
        events: dict[int, list[tuple[datetime, str]]] = {}
        bounces: dict[int, datetime] = {}
        for e in (
            Event.objects.filter(recipient_id__in=[r["id"] for r in rows])
            .exclude(kind=Event.Kind.UNSUBSCRIBE)
            .order_by("created", "id")
            .values_list("recipient_id", "kind", "link__name", "link__url", "created")
        ):
            if e[1] == Event.Kind.BOUNCE:
                bounces.setdefault(e[0], e[4])
                continue
            events.setdefault(e[0], []).append((e[4], event_label(e[1], e[2] or "", e[3] or "")))
        for r in rows:
            yield from _recipient_events(r, events.get(r["id"], []), bounces.get(r["id"]))


def _recipient_events(
    r: dict[str, Any], events: list[tuple[datetime, str]], bounced_at: datetime | None
) -> Iterator[list[Any]]:
    items: list[tuple[datetime | None, str]] = []
    if r["status"] == Recipient.Status.SENT:
        items.append((r["sent_at"], "sent"))
    if r["maybe_duplicate"]:  # sent again after "unknown": the first copy may have arrived
        items.append((r["sent_at"] or r["claimed_at"], "maybe_duplicate"))
    if r["error_kind"]:
        items.append((bounced_at or r["sent_at"] or r["claimed_at"], f"error:{r['error_kind']}"))
    items.extend(events)
    items.sort(key=lambda item: item[0] or EPOCH)
    for when, label in items:
        yield [str(r["customer_id"]), label, _time(when)]


def iter_event_export(delivery: Delivery, encoding: str = "utf-8-sig") -> Iterator[bytes]:
    try:
        codec = exporter.resolve_encoding(encoding)
    except exporter.ExportError as e:
        raise ReportError(str(e)) from None
    return _event_chunks(delivery, codec)


def _event_chunks(delivery: Delivery, codec: str) -> Iterator[bytes]:
    out = csvio.ChunkWriter(codec)
    out.writerow([_("Customer ID"), _("Event"), _("Time")])
    n = 0
    for row in iter_event_rows(delivery):
        row[1] = neutralize(row[1])  # a link name is the operators' text
        out.writerow(row)
        n += 1
        if n % EXPORT_CHUNK == 0:
            yield _encode(out)
    yield _encode(out)


def _encode(out: csvio.ChunkWriter) -> bytes:
    try:
        return out.take()
    except UnicodeEncodeError as e:
        raise ReportError(
            _("A link name cannot be written in CP932: %(text)s. Export in UTF-8 instead.")
            % {"text": e.object[e.start : e.end]}
        ) from None


# ---------------------------------------------------------------------------------------------
# Purge


def retention_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.MAILINGS_RETENTION_DAYS)


def purgeable(now: datetime | None = None) -> QuerySet[Delivery]:
    """Finished deliveries started before the retention window that still hold detail."""
    has_rows = Recipient.objects.filter(delivery=OuterRef("pk"))
    has_events = Event.objects.filter(delivery=OuterRef("pk"))
    return (
        Delivery.objects.filter(status__in=FINISHED, started_at__lt=retention_cutoff(now))
        .filter(Q(Exists(has_rows)) | Q(Exists(has_events)))
        .order_by("id")
    )


def archive(delivery: Delivery) -> Any:
    """Freeze what the report computes from per-recipient detail (idempotent: a second call
    after a partial purge keeps the first, complete, archive)."""
    existing = ReportArchive.objects.filter(delivery=delivery).first()
    if existing is not None:
        return existing
    links = [s.__dict__ for s in link_stats(delivery)]
    return ReportArchive.objects.create(
        delivery=delivery,
        errors=errors_by_kind(delivery),
        links=links,
        series=series(delivery),
    )


def _purge_chunk(delivery: Delivery, batch: int) -> int:
    """Delete one chunk of ledger rows with their events; 0 when none is left.

    The rows are locked first: a drain of the tracking inbox meanwhile inserts events that
    reference their ledger rows, and the lock makes it wait (then fail on the foreign key, roll
    back whole, and drop the purged rows' hits on its next try) instead of the delete failing."""
    with transaction.atomic():
        ids = list(
            Recipient.objects.select_for_update()
            .filter(delivery=delivery)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            return 0
        n = Event.objects.filter(recipient_id__in=ids).delete()[0]
        return n + Recipient.objects.filter(pk__in=ids).delete()[0]


def purge_delivery(delivery: Delivery, batch: int = 5000) -> int:
    """Archive, then delete the delivery's ledger rows and events in chunks (short
    transactions: the tracking endpoints keep writing meanwhile). Returns rows deleted."""
    record = archive(delivery)
    n = 0
    while deleted := _purge_chunk(delivery, batch):
        n += deleted
    # Events with no ledger row (their row went first, or never existed).
    n += Event.objects.filter(delivery=delivery).delete()[0]
    type(record).objects.filter(pk=record.pk).update(purged_rows=record.purged_rows + n)
    return n


def purge_expired(now: datetime | None = None, batch: int = 5000) -> dict[str, int]:
    """Purge every delivery past the retention window, and the extracted lists past it (the
    periodic task calls this)."""
    done = {"deliveries": 0, "rows": 0}
    for delivery in purgeable(now).select_related("mail"):
        done["rows"] += purge_delivery(delivery, batch)
        done["deliveries"] += 1
    done["lists"] = extraction.purge(now)
    if done["deliveries"] or done["lists"]:
        audit.log(None, "delivery.purge_detail", "", dict(done))
    return done
