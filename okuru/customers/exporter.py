"""Customer CSV export (エクスポート): chosen fields in chosen order, optionally filtered, streamed.

The rows come from one raw SELECT ordered by Customer ID through a chunked cursor (a server-side
cursor on PostgreSQL), are formatted with ``fields.format_value`` (which neutralises cells a
spreadsheet would run as formulas, reversibly) and written through an incremental encoder, so
memory does not grow with the number of rows.

The per-row work is what limits the speed, so a batch is worked a column at a time: a text column
is checked for formula-like cells, and for cells that need CSV quoting, with one regular
expression over the column joined with NUL (nearly always: nothing to do), and the lines are
joined from the columns in C (``str.join``), writing exactly what ``csv.writer`` (QUOTE_MINIMAL)
writes; that is about twice as fast as ``csv.writer`` per row.

The header holds each field's label in the current language, which ``fields.header_index`` maps
back to the field on import; a label that would map to another field (a user label equal to a
standard one) is written as the key instead. What export writes, import reads back unchanged.

CP932 cannot hold every character. A cell that has no CP932 form stops the export with a
message naming the row and the field (the operator can export in UTF-8 instead); a download
already under way is cut short then, so large or CP932 exports should run as jobs.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from django.db import connection
from django.utils.translation import gettext as _

from okuru.customers import filters, sql
from okuru.customers.fields import (
    FORMULA_START,
    FieldSpec,
    catalogue,
    format_value,
    header_index,
    neutralize,
)
from okuru.customers.models import View
from okuru.lib import csvio

ENCODINGS = {"utf-8": "utf-8-sig", "utf-8-sig": "utf-8-sig", "utf8": "utf-8-sig", "cp932": "cp932"}
FETCH_ROWS = 5000


class ExportError(ValueError):
    """The export cannot be made, with the message for the operator."""


def resolve_encoding(encoding: str) -> str:
    codec = ENCODINGS.get((encoding or "utf-8").lower())
    if codec is None:
        raise ExportError(
            _("Unknown encoding %(encoding)s: use utf-8 or cp932.") % {"encoding": encoding}
        )
    return codec


def resolve_fields(keys: list[str], specs: dict[str, FieldSpec]) -> list[FieldSpec]:
    if not keys:
        raise ExportError(_("Choose at least one field to export."))
    chosen = []
    for key in keys:
        spec = specs.get(key)
        if spec is None:
            raise ExportError(_("Unknown field: %(key)s") % {"key": key})
        if spec in chosen:
            raise ExportError(_("%(key)s is chosen twice.") % {"key": key})
        chosen.append(spec)
    return chosen


def combined_filter(tree: Any, view: View | None) -> dict:
    """The view's filter AND the given one."""
    parts = [filters.parse_tree(t) for t in ((view.filter if view else None), tree) if t]
    if not parts:
        return filters.parse_tree(None)
    if len(parts) == 1:
        return parts[0]
    return {"match": "all", "conditions": parts}


def headers(chosen: list[FieldSpec], specs: dict[str, FieldSpec]) -> list[str]:
    index = header_index(specs)
    out = []
    for s in chosen:
        label = str(s.label)
        out.append(label if index.get(label) == s.key else s.key)
    return out


def _select_expr(spec: FieldSpec) -> str:
    if spec.standard:
        return f'"{spec.column}"'
    if connection.vendor == "postgresql":
        op = "->" if spec.type == "multiselect" else "->>"
        return f"(data {op} '{spec.key}')"
    return f"json_extract(data, '$.{spec.key}')"


def _aware(value: Any) -> Any:
    """SQLite gives naive UTC datetimes (or text), PostgreSQL aware ones."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# A cell that starts with one of these may need ``neutralize``; the others are left as they are.
_GUARDED = (*FORMULA_START, "'")
# Cells are checked a batch at a time: joined with NUL (which no cell starts a formula with), a
# column needs no guard when no NUL is followed by a guarded character. A false alarm (a NUL in
# a cell) only sends the column the slow way.
_GUARD_RE = re.compile("\x00[" + re.escape("".join(_GUARDED)) + "]")
# What makes csv.writer (QUOTE_MINIMAL, the excel dialect) quote a cell.
_QUOTE_RE = re.compile('[,"\r\n]')
Column = tuple[Any, ...]


def _column_formatter(spec: FieldSpec) -> Callable[[Column], Column | list[Any]] | None:
    """How to turn one column of a batch (values as the driver returns them) into cell values,
    or None when ``_cells``' own conversion already gives ``format_value``'s text: integers,
    numbers (``repr`` of a float, as ``format_value``), dates and empty values. Working a column
    at a time keeps the per-cell cost to one comprehension step, or less."""
    if spec.type == "flag":
        return lambda col: ["1" if v else "0" for v in col]
    if spec.type in ("integer", "number", "date"):
        return None
    if spec.type == "multiselect":

        def fmt_multi(col: Column) -> list[Any]:
            return ["" if v is None or v == "[]" else format_value(spec, _json(v)) for v in col]

        return fmt_multi
    if spec.type == "datetime":
        if spec.standard:
            return lambda col: [None if v is None else format_value(spec, _aware(v)) for v in col]
        return lambda col: [None if v is None else format_value(spec, v) for v in col]
    return _guard_text  # text, e-mail, select: only a cell that looks like a formula changes


def _guard_text(col: Column) -> Column | list[Any]:
    try:
        if _GUARD_RE.search("\x00" + "\x00".join(filter(None, col))) is None:
            return col
    except TypeError:  # a value that is not text (a number stored in a text field)
        pass
    return [neutralize(v) if v.__class__ is str and v.startswith(_GUARDED) else v for v in col]


def _cells(values: Column | list[Any]) -> Column | list[str]:
    """A column's cells as csv.writer writes them: None empty, other values ``str``, and quoted
    when they hold a comma, a quote or a line break."""
    try:
        joined = "\x00".join(values)
    except TypeError:
        values = [v if v.__class__ is str else ("" if v is None else str(v)) for v in values]
        joined = "\x00".join(values)
    if _QUOTE_RE.search(joined) is None:
        return values
    return ['"' + v.replace('"', '""') + '"' if _QUOTE_RE.search(v) else v for v in values]


def _csv_lines(columns: list[Column | list[str]]) -> str:
    """The rows of a batch as CSV text, from its columns of cells (one comprehension-free pass:
    a batch costs a few C-level joins instead of a csv.writer call per row)."""
    if len(columns) == 1:
        # csv.writer writes a row of one empty cell as "" (an empty line is no row).
        return "".join(f"{c or '""'}\r\n" for c in columns[0])
    return "\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _query(chosen: list[FieldSpec], tree: dict, specs: dict[str, FieldSpec]) -> tuple[str, list]:
    where, params = filters.compile_filter(tree, specs)
    # The id comes last: it orders the rows and names a row in errors, but is not a cell.
    columns = ", ".join([*(_select_expr(s) for s in chosen), "id"])
    return f"SELECT {columns} FROM {sql.TABLE} WHERE {where} ORDER BY id", params


def iter_export_chunks(
    fields: list[str],
    tree: Any = None,
    encoding: str = "utf-8-sig",
    *,
    view: View | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Iterator[bytes]:
    """The export as chunks of bytes (for a StreamingHttpResponse or a file).

    Checks fields, filter and encoding before the first chunk, so a bad request fails before
    anything is sent. ``view`` adds its filter (and gives the fields when ``fields`` is empty).
    The caller writes the operation log (it knows the request or the job).
    """
    codec = resolve_encoding(encoding)
    specs = catalogue()
    chosen = resolve_fields(list(fields or (view.fields if view else [])), specs)
    combined = combined_filter(tree, view)
    try:
        query, params = _query(chosen, combined, specs)
    except filters.FilterError as e:
        raise ExportError(str(e)) from None
    return _generate(query, params, chosen, specs, codec, progress)


def _generate(
    query: str,
    params: list,
    chosen: list[FieldSpec],
    specs: dict[str, FieldSpec],
    codec: str,
    progress: Callable[[int], Any] | None,
) -> Iterator[bytes]:
    # Incremental, so "utf-8-sig" writes its BOM once, not once per chunk.
    encoder = codecs.getincrementalencoder(codec)("strict")
    header = headers(chosen, specs)
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerow(header)
    yield _encode(encoder, text.getvalue(), [[h] for h in header], -1, header, codec)
    formatters = [_column_formatter(s) for s in chosen]
    done = 0
    with connection.chunked_cursor() as cur:
        cur.execute(query, params)
        while batch := cur.fetchmany(FETCH_ROWS):
            columns = list(zip(*batch, strict=True))
            cells = [_cells(f(c) if f else c) for f, c in zip(formatters, columns, strict=False)]
            yield _encode(encoder, _csv_lines(cells), cells, done, header, codec, columns[-1])
            done += len(batch)
            if progress is not None:
                progress(done)


def _encode(
    encoder: codecs.IncrementalEncoder,
    text: str,
    cells: list,
    done: int,
    header: list[str],
    codec: str,
    ids: Column | None = None,
) -> bytes:
    try:
        return encoder.encode(text)
    except UnicodeEncodeError:
        pass
    # Find the first cell that has no form in the encoding, to name it.
    for n, row in enumerate(zip(*cells, strict=True)):
        for name, cell in zip(header, row, strict=True):
            try:
                cell.encode(codec)
            except UnicodeEncodeError as e:
                where = _("Row %(row)s") % {"row": done + n + 2}
                if ids is not None:
                    where += " (" + _("Customer ID %(id)s") % {"id": ids[n]} + ")"
                raise ExportError(
                    _(
                        "%(where)s, %(field)s: the character %(char)s cannot be written in"
                        " %(encoding)s. Export in UTF-8 instead."
                    )
                    % {
                        "where": where,
                        "field": name,
                        "char": repr(e.object[e.start : e.end]),
                        "encoding": csvio.ENCODING_NAMES.get(codec, codec),
                    }
                ) from None
    raise AssertionError("unreachable: the chunk failed to encode but no cell does")


def write_export(
    out: IO[bytes],
    fields: list[str],
    tree: Any = None,
    encoding: str = "utf-8-sig",
    *,
    view: View | None = None,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Write the export to a binary file; returns the number of customer rows written."""
    counted = [0]

    def count(done: int) -> None:
        counted[0] = done
        if progress is not None:
            progress(done)

    for chunk in iter_export_chunks(
        fields=fields,
        tree=tree,
        view=view,
        encoding=encoding,
        progress=count,
    ):
        out.write(chunk)
    return counted[0]
