"""The field catalogue: standard fields plus user-defined ``Field`` rows, and how each type's
values are read from text (import, filters, forms) and written back as text (export).

``parse`` and ``format`` are inverse: what export writes, import reads back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.customers.models import Field, Topic
from okuru.lib import addresses

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

# ASCII digits only, and ``\Z`` rather than ``$`` (which also matches before a final newline).
INT_RE = re.compile(r"^[+-]?\d+\Z", re.ASCII)
FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
DATE_RE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})\Z", re.ASCII)
DATETIME_RE = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?"
    r"(Z|[+-]\d{2}:?\d{2})?\Z",
    re.ASCII,
)

# What a stored value may be. Every entry point (import, the customer form, the API) parses with
# the functions below, so these limits hold for every value in the database.
#
# Numbers are what a spreadsheet holds and what both databases and a JSON number keep exactly:
# at most 15 significant digits (Excel's precision; a float64 keeps any 15 digits exactly), and
# 0 or between 1e-300 and 1e300 in size (well inside a float64). A whole number of 15 digits or
# fewer is stored as an integer, any other as a float64 (SQLite's JSON refuses an integer past
# 64 bits as "malformed JSON").
NUMBER_DIGITS = 15
NUMBER_EXPONENT = 300
# Error counts are a database integer (4 bytes) and never negative.
COUNT_MAX = 2**31 - 1
# Date-times are stored in UTC and shown in local time: one day of margin at either end of
# Python's range keeps both forms within it, whatever the time zone.
DATETIME_MIN = datetime(1, 1, 2, tzinfo=UTC)
DATETIME_MAX = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
# Text: a customer's value, not a document. A unique field's value also has to fit in its
# index entry (PostgreSQL's B-tree takes about 2,700 bytes; 4 bytes per character at worst).
MAX_TEXT_CHARS = 10_000
MAX_UNIQUE_TEXT_CHARS = 255
# Characters no value may hold: NUL (PostgreSQL text and JSON cannot store it; SQLite cuts the
# value there), lone surrogates (not encodable in UTF-8) and the other C0 control characters
# except tab, line feed and carriage return (a multi-line text keeps its line breaks).
BAD_CHAR_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


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


def shown(raw: str, limit: int = 60) -> str:
    """A value as an error message quotes it: no longer than ``limit`` characters, and the
    characters no value may hold written as escapes (a message is stored and shown, and must
    hold only what any page and database can)."""
    text = raw if len(raw) <= limit else raw[:limit] + "…"
    if text.isprintable():
        return text
    return BAD_CHAR_RE.sub(lambda m: ascii(m[0])[1:-1], text)


def check_text(raw: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``raw`` unchanged when a database can store it as a value; else ValueError saying why."""
    if len(raw) > limit:
        raise ValueError(
            _("too long: %(length)s characters, the limit is %(limit)s")
            % {"length": f"{len(raw):,}", "limit": f"{limit:,}"}
        )
    if not raw.isprintable() and (bad := BAD_CHAR_RE.search(raw)):
        raise ValueError(
            _(
                "contains the character %(char)s at position %(pos)s: control characters (other"
                " than tab and line breaks) and lone surrogates cannot be stored"
            )
            % {"char": f"U+{ord(bad[0]):04X}", "pos": f"{bad.start() + 1:,}"}
        )
    return raw


def parse_text(raw: str) -> str:
    return check_text(unneutralize(raw))


def parse_unique_text(raw: str) -> str:
    return check_text(unneutralize(raw), MAX_UNIQUE_TEXT_CHARS)


def _integer_parser(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse_integer(raw: str) -> int:
        if not INT_RE.match(raw):
            raise ValueError(_("not a whole number: %(value)s") % {"value": shown(raw)})
        # ``int`` of a very long digit string is slow (and refused past 4,300 digits): no whole
        # number in range has more than 19 digits.
        if len(raw.lstrip("+-0")) > 19 or not minimum <= (value := int(raw)) <= maximum:
            raise ValueError(
                _("out of range: a whole number from %(min)s to %(max)s: %(value)s")
                % {"min": f"{minimum:,}", "max": f"{maximum:,}", "value": shown(raw)}
            )
        return value

    return parse_integer


parse_integer = _integer_parser(0, 2**63 - 1)  # a Customer ID (BigAutoField)
parse_count = _integer_parser(0, COUNT_MAX)


def parse_number(raw: str) -> int | float:
    raw = raw.replace(",", "") if "," in raw else raw
    if not FLOAT_RE.match(raw):
        raise ValueError(_("not a number: %(value)s") % {"value": shown(raw)})
    try:
        exact = Decimal(raw)
    except InvalidOperation:  # an exponent past what Decimal holds, either way
        exact = None
    if exact is not None:
        # Digits and exponent read off the tuple, not through Decimal arithmetic, which rounds
        # and signals past its context's exponent range.
        _sign, digits, exponent = exact.as_tuple()
        if not any(digits):
            return 0 if INT_RE.match(raw) else 0.0
        digits = tuple(digits)
        while digits[-1] == 0:
            digits = digits[:-1]
            exponent += 1  # type: ignore[operator]
        magnitude = len(digits) - 1 + exponent  # type: ignore[operator]  # 10^magnitude <= |x|
    else:
        digits, magnitude = (), -NUMBER_EXPONENT - 1 if "e-" in raw.lower() else NUMBER_EXPONENT
    if not -NUMBER_EXPONENT <= magnitude < NUMBER_EXPONENT:
        raise ValueError(
            _(
                "out of range: a number other than 0 must lie between 1e-%(exp)s and 1e%(exp)s"
                " in size: %(value)s"
            )
            % {"exp": NUMBER_EXPONENT, "value": shown(raw)}
        )
    if len(digits) > NUMBER_DIGITS:
        raise ValueError(
            _("too precise: a number has at most %(digits)s significant digits: %(value)s")
            % {"digits": NUMBER_DIGITS, "value": shown(raw)}
        )
    if magnitude < NUMBER_DIGITS and INT_RE.match(raw):
        return int(raw)
    return float(exact)  # type: ignore[arg-type]


def parse_date(raw: str) -> str:
    m = DATE_RE.match(raw)
    if not m:
        raise ValueError(_("not a date (YYYY-MM-DD): %(value)s") % {"value": shown(raw)})
    try:
        return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        raise ValueError(_("no such date: %(value)s") % {"value": shown(raw)}) from None


def parse_datetime_value(raw: str) -> datetime:
    m = DATETIME_RE.match(raw)
    if not m:
        raise ValueError(
            _("not a date and time (YYYY-MM-DD HH:MM:SS): %(value)s") % {"value": shown(raw)}
        )
    try:
        dt = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
        if m[7]:
            offset = "+00:00" if m[7] == "Z" else m[7][:3] + ":" + m[7][-2:]
            aware = datetime.fromisoformat(dt.isoformat() + offset)
        else:
            aware = dt.replace(tzinfo=_tz())
    except ValueError:
        raise ValueError(_("no such date and time: %(value)s") % {"value": shown(raw)}) from None
    try:
        utc = aware.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        utc = None
    if utc is None or not DATETIME_MIN <= utc <= DATETIME_MAX:
        raise ValueError(
            _("out of range: a date and time must be between %(min)s and %(max)s (UTC): %(value)s")
            % {
                "min": _iso(DATETIME_MIN, " "),
                "max": _iso(DATETIME_MAX, " "),
                "value": shown(raw),
            }
        )
    return utc


def _iso(value: datetime, sep: str = "T") -> str:
    # Not strftime: "%Y" drops the leading zeros of a year before 1000 on some platforms.
    return value.replace(tzinfo=None).isoformat(sep, "seconds")


def parse_datetime(raw: str) -> str:
    return _iso(parse_datetime_value(raw)) + "Z"


def parse_email(raw: str) -> str:
    raw = unneutralize(raw)  # export neutralises an address that starts like a formula
    try:
        return addresses.check(raw)
    except addresses.BadAddress as e:
        raise ValueError(
            _("not an e-mail address (%(reason)s): %(value)s") % {"reason": e, "value": shown(raw)}
        ) from None


def parse_flag(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(_("not a flag (1 or 0): %(value)s") % {"value": shown(raw)})


def parser_for(spec: FieldSpec) -> Callable[[str], Any]:
    """The text -> stored value function for one field (built once per import column)."""
    if spec.type == "text":
        return parse_unique_text if spec.unique else parse_text
    if spec.type == "integer":
        return parse_integer if spec.key == "customer_id" else parse_count
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
                raise ValueError(_("not one of the choices: %(value)s") % {"value": shown(raw)})
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
                    raise ValueError(
                        _("not one of the choices: %(value)s") % {"value": shown(item)}
                    )
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
            value = datetime.fromisoformat(value)
        return _iso(value.astimezone(_tz()), " ")
    if t == "date":
        return str(value)
    return neutralize(str(value))


def row_value(spec: FieldSpec, customer: Any) -> Any:
    """The stored value of a field on a Customer instance."""
    if spec.standard:
        return getattr(customer, spec.column)
    return customer.data.get(spec.key)
