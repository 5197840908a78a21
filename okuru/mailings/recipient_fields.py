"""Set a field on these recipients (この配信先に項目を設定): the in-app shortcut for routes 2 and 3.

The CSV route is: export a report count's recipients (Customer ID only) → add a 配信フラグ
column → import "update existing only" keyed on Customer ID → filter "配信フラグ has a value".
This does the same inside the database, as a job: the customers among the recipients of
``count`` (optionally minus those of another count, route 3's "sent minus errors") get
``field = value`` and an ``updated_at`` of now, exactly as the import writes them; customers
deleted since the delivery are not touched (there is nothing left to update). As on every
route, the delivery must have started within the last 3 months.

``clear_others`` first removes the field's value from every other customer that has one — the
trap it removes: flags left from an earlier campaign silently widen the next "has a value"
target. Only customers that had a value are touched, so the duplicate rule's "newest record"
is not moved for everybody else.

Why the SQL reads this way: one UPDATE per range of Customer IDs, each in its own transaction,
with the range repeated inside the ledger subquery so both databases walk the (delivery_id,
customer_id) unique index over that range only — never a Python list of ids, never a statement
holding the write lock for the whole master database. A range is idempotent (the same value is
written again), so a job that failed half-way is simply started again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.accounts import audit, jobs
from okuru.accounts.models import Job
from okuru.customers import sql
from okuru.customers.fields import FieldSpec, catalogue, empty_value, parse_value
from okuru.mailings import reports
from okuru.mailings.models import Delivery

JOB_KIND = "set_field"
CHUNK_IDS = 50_000
CUSTOMERS = sql.TABLE


@dataclass
class Choice:
    """A checked request: which recipients, which field, which value."""

    delivery: Delivery
    count: str
    minus: str
    spec: FieldSpec
    raw_value: str
    value: Any
    clear_others: bool

    def params(self) -> dict[str, Any]:
        return {
            "delivery": self.delivery.pk,
            "count": self.count,
            "minus": self.minus,
            "field": self.spec.key,
            "value": self.raw_value,
            "clear_others": self.clear_others,
        }


def settable_fields(specs: dict[str, FieldSpec] | None = None) -> list[FieldSpec]:
    """Fields a value can be set on for many customers at once: not the system's own
    (Customer ID, created, updated) and not a unique field (one value cannot be everyone's)."""
    specs = specs if specs is not None else catalogue()
    return [s for s in specs.values() if not s.readonly and not s.unique]


def check(
    delivery: Delivery,
    count: str,
    field: str,
    value: str,
    *,
    minus: str = "",
    clear_others: bool = False,
) -> Choice:
    """Check a request as the UI, the API and the CLI make it; ``ValidationError`` says what is
    wrong, in the operator's language."""
    count, minus = (count or "").strip(), (minus or "").strip()
    if not reports.is_selectable_source(delivery):
        # As for every route: a delivery is a source for 3 months after it started.
        raise ValidationError(
            _(
                "Delivery #%(id)s was not sent or was sent more than 3 months ago: its "
                "recipients cannot be the target of a new delivery."
            )
            % {"id": delivery.pk}
        )
    if reports.is_purged(delivery):
        raise ValidationError(
            _(
                "The per-recipient detail of delivery #%(id)s was purged after the retention "
                "period: its recipients are no longer known."
            )
            % {"id": delivery.pk}
        )
    for name in filter(None, (count, minus)):
        try:
            reports.count_condition(delivery, name)
        except reports.ReportError as e:
            raise ValidationError(str(e)) from None
    if not count:
        raise ValidationError(_("Choose the count whose recipients get the value."))
    if minus == count:
        raise ValidationError(_("The count to subtract must differ from the count itself."))
    specs = catalogue()
    spec = specs.get((field or "").strip())
    if spec is None:
        raise ValidationError(_("No such field: %(field)s") % {"field": field})
    if spec.readonly or spec.unique:
        raise ValidationError(
            _(
                "The field %(field)s cannot be set on many customers at once: it is the "
                "system's own or unique."
            )
            % {"field": spec.label}
        )
    try:
        parsed = parse_value(spec, value)
    except ValueError as e:
        raise ValidationError(
            _("Not a valid value for %(field)s: %(error)s") % {"field": spec.label, "error": e}
        ) from None
    if clear_others and spec.required:
        raise ValidationError(
            _("The field %(field)s is required: it cannot be cleared on the other customers.")
            % {"field": spec.label}
        )
    return Choice(delivery, count, minus, spec, (value or "").strip(), parsed, clear_others)


def expected(choice: Choice) -> int:
    """How many customers (still in the master database) the value is set on."""
    where, params = _target_where(choice, None)
    with connection.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {CUSTOMERS} WHERE {where}", params)
        return cur.fetchone()[0]


# ---------------------------------------------------------------------------------------------
# Actions


def _operator(actor: Any) -> Any:
    user = getattr(actor, "user", actor)
    return user if getattr(user, "is_authenticated", False) else None


def start(choice: Choice, actor: Any, *, enqueue: bool = True) -> Job:
    """Record the request in the operation log and queue its job (``enqueue=False``: the caller
    runs it in the foreground with ``jobs.run``)."""
    with transaction.atomic(durable=True):
        job = jobs.start(
            JOB_KIND,
            _operator(actor),
            choice.params(),
            source_ip=audit.client_ip(actor if hasattr(actor, "META") else None),
            enqueue=enqueue,
        )
        audit.log(
            actor,
            "delivery.set_field",
            f"delivery:{choice.delivery.pk}",
            {**{k: v for k, v in choice.params().items() if k != "delivery"}, "job": job.pk},
        )
    return job


@jobs.runner(JOB_KIND, lambda: str(gettext_lazy("Set a field on recipients")))
def set_field_job(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    delivery = Delivery.objects.filter(pk=p.get("delivery")).first()
    if delivery is None:
        raise jobs.JobError(_("No such delivery: %(id)s") % {"id": p.get("delivery")})
    try:
        choice = check(
            delivery,
            p.get("count", ""),
            p.get("field", ""),
            p.get("value", ""),
            minus=p.get("minus", ""),
            clear_others=bool(p.get("clear_others")),
        )
    except ValidationError as e:
        raise jobs.JobError(" ".join(e.messages)) from None
    return run(choice, progress)


def run(choice: Choice, progress: Any = None) -> dict[str, Any]:
    """Write the value range by range; returns how many customers were set and cleared."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT MIN(id), MAX(id) FROM {CUSTOMERS}")
        low, high = cur.fetchone()
    updated = cleared = 0
    if low is not None:
        if progress is not None:
            progress.total(high - low + 1)
        now = timezone.now()
        for start_id in range(low, high + 1, CHUNK_IDS):
            bounds = (start_id, min(start_id + CHUNK_IDS - 1, high))
            with transaction.atomic():
                if choice.clear_others:
                    cleared += _clear_others(choice, bounds, now)
                updated += _set(choice, bounds, now)
            if progress is not None:
                progress(bounds[1] - low + 1)
    return {
        "updated": updated,
        "cleared": cleared,
        "field": choice.spec.key,
        "value": choice.raw_value,
        "count": choice.count,
        "minus": choice.minus,
    }


# ---------------------------------------------------------------------------------------------
# SQL


def _target_where(choice: Choice, bounds: tuple[int, int] | None) -> tuple[str, list[Any]]:
    """Customers among the recipients of the count (minus the other count's), in ``bounds``."""
    rows = reports.recipients(choice.delivery, choice.count)
    if bounds is not None:
        rows = rows.filter(customer_id__gte=bounds[0], customer_id__lte=bounds[1])
    if choice.minus:
        minus = reports.recipients(choice.delivery, choice.minus)
        if bounds is not None:
            minus = minus.filter(customer_id__gte=bounds[0], customer_id__lte=bounds[1])
        rows = rows.exclude(customer_id__in=minus.values("customer_id"))
    sub, params = rows.values("customer_id").query.sql_with_params()
    where = f'"{CUSTOMERS}"."id" IN ({sub})'
    if bounds is not None:
        where = f'"{CUSTOMERS}"."id" BETWEEN %s AND %s AND {where}'
        return where, [*bounds, *params]
    return where, list(params)


def _json_param(spec: FieldSpec, value: Any) -> Any:
    if spec.type in ("date", "datetime") and value is not None and not isinstance(value, str):
        value = value.isoformat()
    return json.dumps(value, ensure_ascii=False)


def _assignment(spec: FieldSpec, value: Any) -> tuple[str, list[Any]]:
    """``SET`` text writing ``value`` into the field, stored as the importer stores it: a
    standard field in its column, a user field in ``data`` (a missing key for no value)."""
    if spec.standard:
        if spec.type == "multiselect":
            cast = "%s::jsonb" if sql.vendor() == "postgresql" else "json(%s)"
            return f'"{spec.column}" = {cast}', [json.dumps(value or [], ensure_ascii=False)]
        return f'"{spec.column}" = %s', [value]
    if sql.vendor() == "postgresql":
        if value is None:
            return '"data" = "data" - %s', [spec.key]
        return '"data" = jsonb_set("data", %s::text[], %s::jsonb)', [
            "{" + spec.key + "}",
            _json_param(spec, value),
        ]
    if value is None:
        return f'"data" = json_remove("data", \'$.{spec.key}\')', []
    # json_extract of a one-element array gives the value as the importer's ``->>`` gives it
    # (a flag as 1/0, a number as a number); an array keeps its JSON type through json().
    if spec.type == "multiselect":
        return f'"data" = json_set("data", \'$.{spec.key}\', json(%s))', [_json_param(spec, value)]
    return f"\"data\" = json_set(\"data\", '$.{spec.key}', json_extract(%s, '$[0]'))", [
        "[" + _json_param(spec, value) + "]"
    ]


def _set(choice: Choice, bounds: tuple[int, int], now: Any) -> int:
    assign, aparams = _assignment(choice.spec, choice.value)
    where, wparams = _target_where(choice, bounds)
    with connection.cursor() as cur:
        cur.execute(
            f'UPDATE {CUSTOMERS} SET {assign}, "updated_at" = %s WHERE {where}',
            [*aparams, now, *wparams],
        )
        return cur.rowcount


def _clear_others(choice: Choice, bounds: tuple[int, int], now: Any) -> int:
    spec = choice.spec
    empty = empty_value(spec)
    assign, aparams = _assignment(spec, empty)
    target, tparams = _target_where(choice, bounds)
    has_value, hparams = _has_value(spec)
    with connection.cursor() as cur:
        cur.execute(
            f'UPDATE {CUSTOMERS} SET {assign}, "updated_at" = %s WHERE "{CUSTOMERS}"."id" '
            f"BETWEEN %s AND %s AND {has_value} AND NOT ({target})",
            [*aparams, now, *bounds, *hparams, *tparams],
        )
        return cur.rowcount


def _has_value(spec: FieldSpec) -> tuple[str, list[Any]]:
    """The field holds something other than its empty value."""
    if not spec.standard:
        if sql.vendor() == "postgresql":
            return '"data" ? %s', [spec.key]
        return f"json_type(\"data\", '$.{spec.key}') IS NOT NULL", []
    column = f'"{CUSTOMERS}"."{spec.column}"'
    if spec.type == "multiselect":
        return sql.json_array_nonempty(column), []
    if spec.type == "flag":
        return f"{column} = %s", [True]
    if spec.type == "integer":
        return f"COALESCE({column}, 0) <> 0", []
    return f"COALESCE({column}, '') <> ''", []
