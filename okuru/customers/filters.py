"""The filter engine (絞り込み条件): a JSON condition tree compiled to one SQL WHERE clause.

Tree::

    {"match": "all" | "any", "conditions": [CONDITION | TREE, ...]}
    CONDITION = {"field": KEY, "op": OP, "value": ..., "value2": ...}

OPs: has_value, no_value, eq, ne, contains, starts_with, lt (before), gt (after), between,
in (list). Values arrive as text (or lists of text) and are parsed by the field's own parser, so
a filter rejects what an import would reject, with the same message.

Other kinds of condition (behaviour history, delivery outcomes) plug in through
``register_kind``: a condition with ``"kind": NAME`` is compiled by that kind's function.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext as _

from okuru.customers import sql
from okuru.customers.fields import FieldSpec, catalogue, parse_datetime_value, parser_for
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
            parsed = [self.param(spec, v) for v in values]
            return f"({expr} IN ({', '.join(['%s'] * len(parsed))}))", parsed
        if op in ("lt", "gt", "between") and spec.type not in (
            "integer",
            "number",
            "date",
            "datetime",
        ):
            raise FilterError(_("%(op)s works on numbers and dates only.") % {"op": op})
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
                return parse_datetime_value(str(raw).strip())
            value = parser_for(spec)(str(raw).strip())
        except ValueError as e:
            raise FilterError(f"{spec.label}: {e}") from None
        if spec.type == "flag" and sql.vendor() != "postgresql":
            return int(value)
        if spec.type == "number" and sql.vendor() == "postgresql":
            return str(value)  # compared with ::numeric
        return value


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
