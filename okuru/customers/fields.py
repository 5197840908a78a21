"""The field catalogue: standard fields plus user-defined ``Field`` rows, and how each type's
values are read from text (import, filters, forms) and written back as text (export).

``parse`` and ``format`` are inverse: what export writes, import reads back unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.customers.models import Field, Topic

# The header names that mean the system id on import ("Synergy!ID" is what users migrating
# from that platform have in their files).
CUSTOMER_ID_ALIASES = ("customer_id", "Customer ID", "顧客ID", "Synergy!ID", "SynergyID")
MULTI_SEPARATOR = "|"

# A view is delivery-eligible when it holds one address plus that address's error count,
# the refusal flag and the unsubscribe flags.
DELIVERY_REQUIRED = (
    ("email", "email_error_count", "refused", "unsubscribed"),
    ("mobile_email", "mobile_error_count", "refused", "unsubscribed"),
)

EMAIL_RE = re.compile(
    r"^[^@\s\"<>,;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
INT_RE = re.compile(r"^[+-]?\d+$")
FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
DATE_RE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
DATETIME_RE = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    type: str
    choices: tuple[str, ...] = ()
    required: bool = False
    unique: bool = False
    standard: bool = False
    column: str = ""  # standard fields: the model column
    readonly: bool = False
    labels: tuple[str, ...] = field(default=())  # other header names that mean this field

    @property
    def is_text_like(self) -> bool:
        return self.type in ("text", "email", "select", "multiselect")


STANDARD = [
    FieldSpec(
        "customer_id",
        gettext_lazy("Customer ID"),
        "integer",
        standard=True,
        column="id",
        readonly=True,
        unique=True,
        labels=CUSTOMER_ID_ALIASES,
    ),
    FieldSpec("email", gettext_lazy("PC e-mail"), "email", standard=True, column="email"),
    FieldSpec(
        "mobile_email", gettext_lazy("mobile e-mail"), "email", standard=True, column="mobile_email"
    ),
    FieldSpec("refused", gettext_lazy("refusal flag"), "flag", standard=True, column="refused"),
    FieldSpec(
        "email_error_count",
        gettext_lazy("PC e-mail error count"),
        "integer",
        standard=True,
        column="email_error_count",
    ),
    FieldSpec(
        "mobile_error_count",
        gettext_lazy("mobile e-mail error count"),
        "integer",
        standard=True,
        column="mobile_error_count",
    ),
    FieldSpec(
        "unsubscribed",
        gettext_lazy("unsubscribe flags"),
        "multiselect",
        standard=True,
        column="unsubscribed",
    ),
    FieldSpec(
        "created_at",
        gettext_lazy("created"),
        "datetime",
        standard=True,
        column="created_at",
        readonly=True,
    ),
    FieldSpec(
        "updated_at",
        gettext_lazy("updated"),
        "datetime",
        standard=True,
        column="updated_at",
        readonly=True,
    ),
]
STANDARD_KEYS = frozenset(s.key for s in STANDARD) | {"id", "data"}


def spec_for(f: Field) -> FieldSpec:
    return FieldSpec(f.key, f.label, f.type, tuple(f.choices), f.required, f.unique)


def catalogue() -> dict[str, FieldSpec]:
    """Every field by key, standard first, in display order. One query."""
    specs = {s.key: s for s in STANDARD}
    topics = tuple(Topic.objects.order_by("id").values_list("key", flat=True))
    specs["unsubscribed"] = FieldSpec(
        "unsubscribed",
        STANDARD[6].label,
        "multiselect",
        topics,
        standard=True,
        column="unsubscribed",
    )
    for f in Field.objects.all():
        specs[f.key] = spec_for(f)
    return specs


def header_index(specs: dict[str, FieldSpec]) -> dict[str, str]:
    """Header name (key, label in any language, alias) -> field key."""
    from django.utils import translation

    index: dict[str, str] = {}
    for s in specs.values():
        index[s.key] = s.key
        for alias in s.labels:
            index[alias] = s.key
        if s.standard:
            for lang, _name in settings.LANGUAGES:
                with translation.override(lang):
                    index.setdefault(str(s.label), s.key)
        else:
            index.setdefault(s.label, s.key)
    return index


# ---------------------------------------------------------------------------------------------
# Reading values from text. Each parser takes a non-empty, stripped string and returns the
# stored value or raises ValueError with a message for the operator.


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def parse_integer(raw: str) -> int:
    if not INT_RE.match(raw):
        raise ValueError(_("not a whole number: %(value)s") % {"value": raw})
    return int(raw)


def parse_number(raw: str) -> int | float:
    raw = raw.replace(",", "") if "," in raw else raw
    if INT_RE.match(raw):
        return int(raw)
    if not FLOAT_RE.match(raw) or not math.isfinite(value := float(raw)):
        raise ValueError(_("not a number: %(value)s") % {"value": raw})
    return value


def parse_date(raw: str) -> str:
    m = DATE_RE.match(raw)
    if not m:
        raise ValueError(_("not a date (YYYY-MM-DD): %(value)s") % {"value": raw})
    try:
        return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        raise ValueError(_("no such date: %(value)s") % {"value": raw}) from None


def parse_datetime_value(raw: str) -> datetime:
    m = DATETIME_RE.match(raw)
    if not m:
        raise ValueError(_("not a date and time (YYYY-MM-DD HH:MM:SS): %(value)s") % {"value": raw})
    try:
        dt = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
    except ValueError:
        raise ValueError(_("no such date and time: %(value)s") % {"value": raw}) from None
    if m[7]:
        aware = datetime.fromisoformat(
            dt.isoformat() + ("+00:00" if m[7] == "Z" else m[7][:3] + ":" + m[7][-2:])
        )
    else:
        aware = dt.replace(tzinfo=_tz())
    return aware.astimezone(UTC)


def parse_datetime(raw: str) -> str:
    return parse_datetime_value(raw).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_email(raw: str) -> str:
    raw = unneutralize(raw)  # export neutralises an address that starts like a formula
    if len(raw) > 254 or not EMAIL_RE.match(raw):
        raise ValueError(_("not an e-mail address: %(value)s") % {"value": raw})
    return raw


def parse_flag(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(_("not a flag (1 or 0): %(value)s") % {"value": raw})


def parser_for(spec: FieldSpec) -> Callable[[str], Any]:
    """The text -> stored value function for one field (built once per import column)."""
    if spec.type == "text":
        return unneutralize
    if spec.type == "integer":
        return parse_integer
    if spec.type == "number":
        return parse_number
    if spec.type == "date":
        return parse_date
    if spec.type == "datetime":
        return parse_datetime
    if spec.type == "email":
        return parse_email
    if spec.type == "flag":
        return parse_flag
    choices = frozenset(spec.choices)
    if spec.type == "select":

        def parse_select(raw: str) -> str:
            raw = unneutralize(raw)
            if raw not in choices:
                raise ValueError(_("not one of the choices: %(value)s") % {"value": raw})
            return raw

        return parse_select
    if spec.type == "multiselect":

        def parse_multi(raw: str) -> list[str]:
            items: list[str] = []
            for item in unneutralize(raw).split(MULTI_SEPARATOR):
                item = item.strip()
                if not item or item in items:
                    continue
                if item not in choices:
                    raise ValueError(_("not one of the choices: %(value)s") % {"value": item})
                items.append(item)
            return items

        return parse_multi
    raise ValueError(f"unknown field type {spec.type}")


def parse_value(spec: FieldSpec, raw: str | None) -> Any:
    """Text -> stored value; empty -> None (or [] / False for the standard columns)."""
    raw = (raw or "").strip()
    if not raw:
        if spec.required:
            raise ValueError(_("a value is required"))
        return empty_value(spec)
    return parser_for(spec)(raw)


def empty_value(spec: FieldSpec) -> Any:
    if spec.standard:
        return {"multiselect": [], "flag": False, "integer": 0}.get(spec.type, "")
    return None


# ---------------------------------------------------------------------------------------------
# Writing values as text (export, display).

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(text: str) -> str:
    """Stop a spreadsheet from running a cell as a formula, reversibly (see ``unneutralize``)."""
    if text.startswith(FORMULA_START) or (
        text.startswith("'") and text.lstrip("'").startswith(FORMULA_START)
    ):
        return "'" + text
    return text


def unneutralize(text: str) -> str:
    if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START):
        return text[1:]
    return text


def format_value(spec: FieldSpec, value: Any) -> str:
    if value is None or value == "" or value == []:
        return ""
    t = spec.type
    if t == "multiselect":
        return neutralize(MULTI_SEPARATOR.join(value))
    if t == "flag":
        return "1" if value else "0"
    if t in ("integer", "number"):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return repr(value)
        return str(value)
    if t == "datetime":
        if isinstance(value, str):
            value = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return value.astimezone(_tz()).strftime("%Y-%m-%d %H:%M:%S")
    if t == "date":
        return str(value)
    return neutralize(str(value))


def row_value(spec: FieldSpec, customer: Any) -> Any:
    """The stored value of a field on a Customer instance."""
    if spec.standard:
        return getattr(customer, spec.column)
    return customer.data.get(spec.key)
