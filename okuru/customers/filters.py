"""The filter engine (絞り込み条件): a JSON condition tree compiled to one SQL WHERE clause.

Tree::

    {"match": "all" | "any", "conditions": [CONDITION | TREE, ...]}
    CONDITION = {"field": KEY, "op": OP, "value": ..., "value2": ...}

OPs: has_value, no_value, eq, ne, contains, starts_with, lt (before), gt (after), between,
in (list). Values arrive as text (or lists of text) and are parsed by the field's own parser, so
a filter rejects what an import would reject, with the same message. A date alone given for a
date-and-time field means that whole local day ("after 2024-05-01" starts on May 2nd, "between
2024-05-01 and 2024-05-31" ends on the evening of the 31st).

Other kinds of condition (behaviour history, delivery outcomes) plug in through
``register_kind``: a condition with ``"kind": NAME`` is compiled by that kind's function.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext as _

from okuru.customers import sql
from okuru.customers.fields import (
    DATE_RE,
    FieldSpec,
    catalogue,
    parse_date,
    parse_datetime_value,
    parser_for,
)
from okuru.customers.models import Customer

OPS = ("has_value", "no_value", "eq", "ne", "contains", "starts_with", "lt", "gt", "between", "in")
MAX_DEPTH = 8
MAX_CONDITIONS = 200

KindCompiler = Callable[[dict[str, Any]], tuple[str, list[Any]]]
_KINDS: dict[str, KindCompiler] = {}


class FilterError(ValueError):
    pass


def register_kind(name: str, compiler: KindCompiler) -> None:
    _KINDS[name] = compiler


def parse_tree(value: str | dict | None) -> dict:
    """Accept a tree as JSON text or dict; an empty value is the match-everything tree."""
    if value in (None, "", {}):
        return {"match": "all", "conditions": []}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise FilterError(_("The filter is not valid JSON: %(error)s") % {"error": e}) from None
    if not isinstance(value, dict):
        raise FilterError(_("A filter must be an object with match and conditions."))
    return value


class Compiler:
    def __init__(self, specs: dict[str, FieldSpec] | None = None):
        self.specs = specs if specs is not None else catalogue()
        self.count = 0

    def compile(self, tree: dict, depth: int = 0) -> tuple[str, list[Any]]:
        if depth > MAX_DEPTH:
            raise FilterError(_("The filter is nested too deeply."))
        match = tree.get("match", "all")
        if match not in ("all", "any"):
            raise FilterError(_("match must be all or any, not %(value)s") % {"value": match})
        conditions = tree.get("conditions", [])
        if not isinstance(conditions, list):
            raise FilterError(_("conditions must be a list."))
        parts, params = [], []
        for cond in conditions:
            if not isinstance(cond, dict):
                raise FilterError(_("Each condition must be an object."))
            self.count += 1
            if self.count > MAX_CONDITIONS:
                raise FilterError(_("The filter has too many conditions."))
            if "conditions" in cond:
                part, p = self.compile(cond, depth + 1)
            elif cond.get("kind", "field") != "field":
                kind = _KINDS.get(cond["kind"])
                if kind is None:
                    raise FilterError(
                        _("Unknown condition kind: %(kind)s") % {"kind": cond["kind"]}
                    )
                part, p = kind(cond)
            else:
                part, p = self.condition(cond)
            parts.append(part)
            params.extend(p)
        if not parts:
            return ("1=1" if match == "all" else "1=0") if conditions else "1=1", []
        joiner = " AND " if match == "all" else " OR "
        return "(" + joiner.join(parts) + ")", params

    def condition(self, cond: dict) -> tuple[str, list[Any]]:
        key, op = cond.get("field"), cond.get("op")
        spec = self.specs.get(key)  # type: ignore[arg-type]
        if spec is None:
            raise FilterError(_("Unknown field in filter: %(field)s") % {"field": key})
        if op not in OPS:
            raise FilterError(_("Unknown operator in filter: %(op)s") % {"op": op})
        expr = sql.value_expr(spec)
        if op in ("has_value", "no_value"):
            part = self.has_value(spec, expr)
            return (part if op == "has_value" else f"NOT {part}"), []
        if spec.type == "multiselect":
            return self.multiselect(spec, expr, op, cond)
        if op in ("contains", "starts_with"):
            if spec.type not in ("text", "email", "select"):
                raise FilterError(_("%(op)s works on text fields only.") % {"op": op})
            pattern = _like_escape(str(cond.get("value", "")))
            pattern = f"%{pattern}%" if op == "contains" else f"{pattern}%"
            like = "ILIKE" if sql.vendor() == "postgresql" else "LIKE"
            return f"({expr} {like} %s ESCAPE '\\')", [pattern]
        if op == "in":
            values = cond.get("value")
            if not isinstance(values, list) or not values:
                raise FilterError(_("in needs a non-empty list of values."))
            if spec.type == "datetime" and self.has_day(cond):
                return self.datetime_days(spec, expr, op, cond)
            parsed = [self.param(spec, v) for v in values]
            return f"({expr} IN ({', '.join(['%s'] * len(parsed))}))", parsed
        if op in ("lt", "gt", "between") and spec.type not in (
            "integer",
            "number",
            "date",
            "datetime",
        ):
            raise FilterError(_("%(op)s works on numbers and dates only.") % {"op": op})
        if spec.type == "datetime" and self.has_day(cond):
            return self.datetime_days(spec, expr, op, cond)
        value = self.param(spec, cond.get("value"))
        if op == "eq":
            return f"({expr} = %s)", [value]
        if op == "ne":
            return f"({expr} IS NULL OR {expr} <> %s)", [value]
        if op == "lt":
            return f"({expr} < %s)", [value]
        if op == "gt":
            return f"({expr} > %s)", [value]
        value2 = self.param(spec, cond.get("value2"))
        return f"({expr} BETWEEN %s AND %s)", [value, value2]

    # --- a date alone on a date-and-time field: the whole local day -----------------------

    @staticmethod
    def has_day(cond: dict) -> bool:
        values = cond.get("value")
        values = values if isinstance(values, list) else [values, cond.get("value2")]
        return any(isinstance(v, str) and DATE_RE.match(v.strip()) for v in values)

    def day(self, spec: FieldSpec, raw: Any) -> tuple[Any, Any] | None:
        """The first moment of the local day ``raw`` names and of the day after, as stored
        values; None when ``raw`` is a date and time rather than a date."""
        if not isinstance(raw, str) or not DATE_RE.match(raw.strip()):
            return None
        try:
            day = date.fromisoformat(parse_date(raw.strip()))
        except ValueError as e:
            raise FilterError(f"{spec.label}: {e}") from None
        tz = ZoneInfo(settings.TIME_ZONE)
        start = datetime.combine(day, time.min, tzinfo=tz)
        end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
        return self.moment(spec, start), self.moment(spec, end)

    @staticmethod
    def moment(spec: FieldSpec, value: datetime) -> Any:
        # Standard columns hold datetimes; user fields hold UTC text, which sorts as time does.
        utc = value.astimezone(UTC)
        return _column_datetime(utc) if spec.standard else utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    def on(self, spec: FieldSpec, expr: str, raw: Any) -> tuple[str, list[Any]]:
        """``expr`` falls on the day ``raw`` names, or equals the moment it names."""
        bounds = self.day(spec, raw)
        if bounds is None:
            return f"({expr} = %s)", [self.param(spec, raw)]
        return f"({expr} >= %s AND {expr} < %s)", list(bounds)

    def datetime_days(
        self, spec: FieldSpec, expr: str, op: str, cond: dict
    ) -> tuple[str, list[Any]]:
        raw, raw2 = cond.get("value"), cond.get("value2")
        if op == "in":
            parts = [self.on(spec, expr, v) for v in raw]
            sql_parts = " OR ".join(part for part, _params in parts)
            return f"({sql_parts})", [x for _part, params in parts for x in params]
        if op in ("eq", "ne"):
            part, params = self.on(spec, expr, raw)
            return (part if op == "eq" else f"({expr} IS NULL OR NOT {part})"), params
        first = self.day(spec, raw)
        if op == "lt":
            return f"({expr} < %s)", [first[0] if first else self.param(spec, raw)]
        if op == "gt":
            if first:
                return f"({expr} >= %s)", [first[1]]
            return f"({expr} > %s)", [self.param(spec, raw)]
        low = first[0] if first else self.param(spec, raw)
        last = self.day(spec, raw2)
        if last:
            return f"({expr} >= %s AND {expr} < %s)", [low, last[1]]
        return f"({expr} >= %s AND {expr} <= %s)", [low, self.param(spec, raw2)]

    def has_value(self, spec: FieldSpec, expr: str) -> str:
        if spec.type == "multiselect":
            return sql.json_array_nonempty(expr)
        if spec.standard and spec.type in ("flag", "integer", "datetime"):
            return "(1=1)"
        if spec.type in ("number", "integer", "flag", "datetime") or not spec.is_text_like:
            return f"({expr} IS NOT NULL)"
        return f"({expr} IS NOT NULL AND {expr} <> '')"

    def multiselect(self, spec: FieldSpec, expr: str, op: str, cond: dict) -> tuple[str, list]:
        if op not in ("in", "eq", "contains", "ne"):
            raise FilterError(_("%(op)s does not work on multi-select fields.") % {"op": op})
        raw = cond.get("value")
        values = raw if isinstance(raw, list) else [raw]
        choices = set(spec.choices)
        for v in values:
            if v not in choices:
                raise FilterError(
                    _("%(field)s: not one of the choices: %(value)s")
                    % {"field": spec.label, "value": v}
                )
        part = sql.json_array_contains_any(expr, len(values))
        return (f"NOT {part}" if op == "ne" else part), list(values)

    def param(self, spec: FieldSpec, raw: Any) -> Any:
        if raw is None or str(raw).strip() == "":
            raise FilterError(_("%(field)s: a value is needed.") % {"field": spec.label})
        try:
            if spec.standard and spec.type == "datetime":
                return _column_datetime(parse_datetime_value(str(raw).strip()))
            value = parser_for(spec)(str(raw).strip())
        except ValueError as e:
            raise FilterError(f"{spec.label}: {e}") from None
        if spec.type == "flag" and sql.vendor() != "postgresql":
            return int(value)
        if spec.type == "number" and sql.vendor() == "postgresql":
            return str(value)  # compared with ::numeric
        return value


def _column_datetime(value: datetime) -> Any:
    """A datetime as the database stores a DateTimeField. Raw SQL gets no conversion: SQLite
    holds naive UTC text ("2024-01-31 15:00:00"), and comparing it with Python's default
    adapter's "...+00:00" would get the boundaries wrong."""
    return connection.ops.adapt_datetimefield_value(value)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile_filter(
    tree: str | dict | None, specs: dict[str, FieldSpec] | None = None
) -> tuple[str, list[Any]]:
    return Compiler(specs).compile(parse_tree(tree))


def filtered(
    tree: str | dict | None, specs: dict[str, FieldSpec] | None = None
) -> QuerySet[Customer]:
    where, params = compile_filter(tree, specs)
    qs = Customer.objects.all()
    if where != "1=1":
        qs = qs.filter(RawSQL(where, params, output_field=BooleanField()))
    return qs


def count(tree: str | dict | None, specs: dict[str, FieldSpec] | None = None) -> int:
    """Customers matching the filter: one COUNT(*) query."""
    where, params = compile_filter(tree, specs)
    with connection.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {sql.TABLE} WHERE {where}", params)
        return cur.fetchone()[0]
