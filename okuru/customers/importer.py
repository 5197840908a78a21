"""Customer CSV import (インポート): one engine for the UI, the API, the CLI and jobs.

How it goes:

* The header maps each column to a field by key, by label (in any language) or by alias
  (``fields.header_index``); "Customer ID" / "Synergy!ID" mean the system id. Header problems
  (missing key column, unknown column, a Customer ID column when the key is another field) stop
  the import before any row is read: ``ImportFailed``.
* A parser thread reads and checks the rows (``fields.parser_for`` per column, built once) and
  hands chunks of ``CHUNK_ROWS`` to the database thread through a small queue, so memory stays
  flat whatever the file size and the CSV work overlaps the database work (SQLite and psycopg
  release the GIL while the database runs a statement).
* On SQLite each chunk is written with one statement per kind of write, an ``UPDATE .. FROM
  json_each(?)`` / ``INSERT .. SELECT .. FROM json_each(?)`` on the raw connection (no ORM per
  row); the parser thread encodes the chunk's JSON ahead. On PostgreSQL every chunk is
  ``COPY``-ed into temporary tables as it comes, and at the end one ``UPDATE .. FROM`` and one
  ``INSERT .. SELECT`` write the whole file (a statement per chunk cost three times as much:
  see ``PostgresWriter``). Should a statement hit a unique index, it is redone chunk by chunk
  and a refused chunk row by row, so that only the offending rows are rejected.
* Everything runs in ONE transaction: a failure midway imports nothing. A dry run takes the same
  path and rolls back at the end, so its counts are exactly what the import would do.

Semantics:

* insert: a row whose key is already in the database is skipped. With the Customer ID key, a row
  with an empty Customer ID is a new customer; a Customer ID that no customer has is rejected
  (Customer IDs are assigned by Okuru, never by the file).
* update: a row whose key is not in the database is skipped (so is an empty Customer ID).
* upsert: both.
* Only the file's columns are written: an absent column keeps its value, and so the refusal flag,
  the unsubscribe flags and the error counts change only when their column is in the file. An
  empty cell clears the value (user fields lose the key; standard columns get their default).
* A key that appears twice in the file: the later rows are rejected. Customer IDs are tracked in
  a bytearray (one byte per existing Customer ID); other keys in a set, which costs about 100
  bytes per distinct key (about 100 MB per million rows keyed on a text field).
* Rows are numbered as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.accounts.models import Operator
from okuru.bounces import suppression
from okuru.customers import sql
from okuru.customers.fields import (
    MAX_TEXT_CHARS,
    MAX_UNIQUE_TEXT_CHARS,
    STANDARD,
    FieldSpec,
    catalogue,
    empty_value,
    header_index,
    parser_for,
    shown,
)
from okuru.lib import csvio

MODES = ("insert", "update", "upsert")
CHUNK_ROWS = 10_000
MAX_LISTED_ERRORS = 1000
ENCODING_CHOICES = {
    "auto": "auto",
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "utf-8-sig": "utf-8-sig",
    "cp932": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
}
# Standard columns an import may write, with the value a new customer gets when the file has no
# such column. Customer ID, created and updated are Okuru's own.
WRITABLE_STANDARD = [s for s in STANDARD if not s.readonly]
Actor = HttpRequest | Operator | None


class RowError(NamedTuple):
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        if self.column:
            return _("Row %(row)s, %(column)s: %(reason)s") % self._asdict()
        return _("Row %(row)s: %(reason)s") % self._asdict()


class ImportFailed(Exception):
    """The file cannot be imported at all; nothing was written. ``errors`` lists the problems
    that have a place in the file (header cells, lines)."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.errors = errors or []


@dataclass
class ImportResult:
    mode: str
    key: str
    encoding: str
    dry_run: bool
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    ignored_columns: list[str] = field(default_factory=list)

    def add_errors(self, errors: list[RowError]) -> None:
        self.error_count += len(errors)
        room = MAX_LISTED_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])

    def merge_errors(self, errors: list[RowError], count: int) -> None:
        """Add ``count`` errors found after the rows were read; ``errors`` holds the first
        ``MAX_LISTED_ERRORS`` of them (any order)."""
        self.error_count += count
        merged = sorted([*self.errors, *errors], key=lambda e: e.row)
        self.errors = merged[:MAX_LISTED_ERRORS]

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "key": self.key,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "error_count": self.error_count,
            "errors": [list(e) for e in self.errors],
            "ignored_columns": self.ignored_columns,
        }


# ---------------------------------------------------------------------------------------------
# The plan: what each column of the file is.


@dataclass
class Plan:
    mode: str
    key: str
    key_spec: FieldSpec
    width: int  # cells per row, as in the header
    columns: list[FieldSpec]  # the fields written, in file order
    cells: list[int]  # the cell index of each written column
    names: list[str]  # the header cell of each written column, as the file has it
    key_cell: int  # cell index of the key column
    key_name: str
    ignored: list[str]
    missing_required: list[FieldSpec]  # required fields the file lacks (matter on insert)

    @property
    def key_is_id(self) -> bool:
        return self.key == "customer_id"

    @property
    def key_pos(self) -> int:
        """Position of a field key among the written columns."""
        return self.cells.index(self.key_cell)


def _check_key(key: str, specs: dict[str, FieldSpec]) -> FieldSpec:
    spec = specs.get(key)
    if spec is None:
        raise ImportFailed(_("Unknown key field: %(key)s") % {"key": key})
    if key != "customer_id" and (spec.standard or not spec.unique):
        raise ImportFailed(
            _(
                "%(label)s cannot be the key: the key is Customer ID or a unique field"
                " (make the field unique first)."
            )
            % {"label": spec.label}
        )
    return spec


def make_plan(header: list[str], specs: dict[str, FieldSpec], key: str, mode: str) -> Plan:
    key_spec = _check_key(key, specs)
    index = header_index(specs)
    folded: dict[str, str] = {}
    for name, k in index.items():
        folded.setdefault(name.casefold(), k)
    # Spreadsheets often leave empty cells at the end of the header: those columns are not read.
    width = len(header)
    while width and not header[width - 1].strip():
        width -= 1
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    columns, cells, names, ignored = [], [], [], []
    key_cell = -1
    for i, raw in enumerate(header[:width]):
        name = shown(raw.strip().lstrip("\ufeff"), 200)
        if not name:
            errors.append(
                RowError(1, _("column %(n)s") % {"n": i + 1}, _("The column has no name."))
            )
            continue
        fkey = index.get(name) or folded.get(name.casefold())
        if fkey is None:
            errors.append(RowError(1, name, _("Unknown column: no field has this key or label.")))
            continue
        if fkey in seen:
            errors.append(
                RowError(
                    1,
                    name,
                    _("The column appears twice (column %(first)s is the same field).")
                    % {"first": seen[fkey] + 1},
                )
            )
            continue
        seen[fkey] = i
        spec = specs[fkey]
        if fkey == "customer_id":
            if key == "customer_id":
                key_cell = i
            else:
                errors.append(
                    RowError(
                        1,
                        name,
                        _(
                            "A Customer ID column is only allowed when Customer ID is the key:"
                            " choose Customer ID as the key or remove the column."
                        ),
                    )
                )
            continue
        if spec.readonly:
            ignored.append(name)  # created / updated: Okuru keeps them itself
            continue
        if fkey == key:
            key_cell = i
        columns.append(spec)
        cells.append(i)
        names.append(name)
    if key_cell < 0:
        errors.insert(
            0,
            RowError(
                1,
                str(key_spec.label),
                _("The key column is missing: the file needs a column %(label)s.")
                % {"label": key_spec.label},
            ),
        )
    if errors:
        raise ImportFailed(str(errors[0]) if len(errors) == 1 else _header_message(errors), errors)
    present = {s.key for s in columns}
    missing_required = [
        s for s in specs.values() if s.required and not s.standard and s.key not in present
    ]
    return Plan(
        mode=mode,
        key=key,
        key_spec=key_spec,
        width=len(header),
        columns=columns,
        cells=cells,
        names=names,
        key_cell=key_cell,
        key_name=header[key_cell].strip().lstrip("\ufeff"),
        ignored=ignored,
        missing_required=missing_required,
    )


def _header_message(errors: list[RowError]) -> str:
    return _("The header row has %(count)s problems: %(list)s") % {
        "count": len(errors),
        "list": "; ".join(str(e) for e in errors),
    }


# ---------------------------------------------------------------------------------------------
# Parsing rows (runs in the parser thread: no database access here).


class Rows(list):
    """Rows to write, with the writer's encoding of them when it was made ahead, in the parser
    thread (``Writer.encode``)."""

    payload: Any = None


@dataclass
class Chunk:
    rows: list[list[Any]] = field(default_factory=list)  # [row number, target id, *values]
    read: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    # (updates, inserts), when the parser thread could tell them apart (key = Customer ID).
    split: tuple[Rows, Rows] | None = None

    def reject(self, errors: list[RowError]) -> None:
        self.rejected += 1
        self.errors.extend(errors)


def _converter(spec: FieldSpec) -> Callable[[str], Any]:
    parse = parser_for(spec)
    empty = empty_value(spec)
    required = spec.required

    def convert(raw: str) -> Any:
        raw = raw.strip()
        if raw:
            return parse(raw)
        if required:
            raise ValueError(_("a value is required"))
        return empty

    if spec.type != "text":
        return convert

    limit = MAX_UNIQUE_TEXT_CHARS if spec.unique else MAX_TEXT_CHARS

    def convert_text(raw: str) -> Any:
        # The common case without a call: a short printable text is stored as it is. The parser
        # sees the rest: a text that starts with a quote (``unneutralize``), a long one, and one
        # with characters other than printable ones (a control character cannot be stored).
        raw = raw.strip()
        if raw:
            if raw[0] == "'" or len(raw) > limit or not raw.isprintable():
                return parse(raw)
            return raw
        if required:
            raise ValueError(_("a value is required"))
        return empty

    return convert_text


class Parser:
    """Turns (row number, cells) into checked chunks. ``max_id`` is the highest Customer ID in
    the database: a larger one belongs to no customer."""

    def __init__(self, plan: Plan, max_id: int, prepare: Callable[[Chunk], None] | None = None):
        self.plan = plan
        self.max_id = max_id
        self.prepare = prepare
        self.convs = list(zip(plan.cells, [_converter(s) for s in plan.columns], strict=True))
        self.parse_id = parser_for(plan.key_spec)
        self.key_conv = None if plan.key_is_id else _converter(plan.key_spec)
        self.seen_ids = bytearray(max_id + 1) if plan.key_is_id else None
        self.seen_keys: set[Any] = set()

    def chunks(self, rows: Iterator[tuple[int, list[str]]]) -> Iterator[Chunk]:
        next_chunk = self._chunk_rows_by_id if self.plan.key_is_id else self._chunk_rows_by_field
        width, size = self.plan.width, CHUNK_ROWS  # locals: this loop runs once per row
        chunk = Chunk()
        for rowno, cells in rows:
            if len(cells) != width:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                chunk.read += 1
                chunk.reject(
                    [
                        RowError(
                            rowno,
                            "",
                            _("The row has %(cells)s cells but the header has %(header)s.")
                            % {"cells": len(cells), "header": width},
                        )
                    ]
                )
                continue
            chunk.read += 1
            next_chunk(chunk, rowno, cells)
            if len(chunk.rows) >= size:
                yield self._prepared(chunk)
                chunk = Chunk()
        yield self._prepared(chunk)

    def _prepared(self, chunk: Chunk) -> Chunk:
        if self.prepare is not None:
            self.prepare(chunk)
        return chunk

    def _values(self, chunk: Chunk, rowno: int, cells: list[str]) -> list[Any] | None:
        try:
            return [conv(cells[i]) for i, conv in self.convs]
        except ValueError:
            errors = []
            for (i, conv), name in zip(self.convs, self.plan.names, strict=True):
                try:
                    conv(cells[i])
                except ValueError as e:
                    errors.append(RowError(rowno, name, str(e)))
            chunk.reject(errors)
            return None

    def _chunk_rows_by_id(self, chunk: Chunk, rowno: int, cells: list[str]) -> None:
        plan = self.plan
        raw = cells[plan.key_cell].strip()
        target = None
        if raw:
            if raw.isdigit() and raw.isascii():  # the common case, without the parser's regex
                target = int(raw)
            else:
                try:
                    target = self.parse_id(raw)
                except ValueError as e:
                    chunk.reject([RowError(rowno, plan.key_name, str(e))])
                    return
            if target <= 0 or target > self.max_id:
                if plan.mode == "update":
                    chunk.skipped += 1
                else:
                    chunk.reject([RowError(rowno, plan.key_name, no_such_customer())])
                return
            if self.seen_ids[target]:
                chunk.reject([RowError(rowno, plan.key_name, duplicate_key(raw))])
                return
            self.seen_ids[target] = 1
        elif plan.mode == "update":
            chunk.skipped += 1  # no Customer ID: nothing to update
            return
        values = self._values(chunk, rowno, cells)
        if values is not None:
            chunk.rows.append([rowno, target, *values])

    def _chunk_rows_by_field(self, chunk: Chunk, rowno: int, cells: list[str]) -> None:
        plan = self.plan
        raw = cells[plan.key_cell]
        try:
            key = self.key_conv(raw)  # type: ignore[misc]
        except ValueError as e:
            chunk.reject([RowError(rowno, plan.key_name, str(e))])
            return
        if key is None or key == "":
            chunk.reject([RowError(rowno, plan.key_name, _("The key is empty."))])
            return
        if key in self.seen_keys:
            chunk.reject([RowError(rowno, plan.key_name, duplicate_key(raw.strip()))])
            return
        self.seen_keys.add(key)
        values = self._values(chunk, rowno, cells)
        if values is not None:
            chunk.rows.append([rowno, None, *values])


def no_such_customer() -> str:
    return _(
        "No customer has this Customer ID (Okuru assigns Customer IDs: leave the cell empty"
        " to add a new customer)."
    )


def duplicate_key(raw: str) -> str:
    return _("Duplicate key %(key)s: an earlier row of the file has the same key.") % {
        "key": shown(raw)
    }


def _prefetch(make: Callable[[], Iterator[Chunk]], depth: int = 2) -> Iterator[Chunk]:
    """Run the iterator in a thread, ``depth`` items ahead. Exceptions come through in order."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    lang = translation.get_language()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        # Translations are per thread: the parser's messages speak the caller's language.
        if lang:
            translation.activate(lang)
        try:
            for item in make():
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the database thread, which re-raises it
            put(("error", e))
        finally:
            translation.deactivate()

    thread = threading.Thread(target=work, name="okuru-import-parser", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "item":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------------------------------------
# Writing chunks.


class Failure(NamedTuple):
    row: list[Any]
    column: str
    reason: str


@dataclass
class Outcome:
    """What a writer did at ``finish`` (a writer that works a chunk at a time reports as it
    goes). Counts are complete; the row lists hold the first ``MAX_LISTED_ERRORS`` in file
    order, which is all the result lists."""

    updated: int = 0
    inserted: int = 0
    missing: int = 0  # update rows whose customer does not exist
    missing_rows: list[list[Any]] = field(default_factory=list)
    refused: int = 0  # rows the database refused (a unique index)
    failures: list[Failure] = field(default_factory=list)


class Writer:
    """The database side of an import. Subclasses speak one vendor's SQL on the raw connection."""

    def __init__(self, plan: Plan, specs: dict[str, FieldSpec]):
        self.plan = plan
        self.specs = specs
        self.raw = connection.connection
        self.cursor = self.raw.cursor()
        self.now = connection.ops.adapt_datetimefield_value(timezone.now())
        self.unique_by_index = {
            sql.unique_index_name(s.key): i for i, s in enumerate(plan.columns) if s.unique
        }

    def max_id(self) -> int:
        self.cursor.execute(f"SELECT MAX(id) FROM {sql.TABLE}")
        return self.cursor.fetchone()[0] or 0

    def close(self) -> None:
        self.cursor.close()

    def finish(self) -> Outcome:
        """Write what is still pending, once every chunk has been handed over."""
        return Outcome()

    def encode(self, rows: list[list[Any]]) -> Any:
        """The rows as the writer sends them, or None. Runs in the parser thread, ahead of the
        write: no database access here."""
        return None

    def _refused(self, row: list[Any], error: Exception) -> Failure:
        """Why the database refused one row, for the operator."""
        text = str(error)
        name = getattr(getattr(error, "diag", None), "constraint_name", None) or ""
        for index, pos in self.unique_by_index.items():
            if index == name or f"'{index}'" in text or f" {index}" in text:
                value = row[2 + pos]
                holder = self.holder(self.plan.columns[pos], value)
                reason = _("%(value)s is already used by customer %(id)s (the field is unique).")
                return Failure(row, self.plan.names[pos], reason % {"value": value, "id": holder})
        return Failure(row, "", _("The database refused the row: %(error)s") % {"error": text})

    def holder(self, spec: FieldSpec, value: Any) -> int | None:
        raise NotImplementedError


class SqliteWriter(Writer):
    """One statement per chunk, reading the chunk from a JSON parameter with ``json_each``: the
    whole chunk runs inside one ``sqlite3_step`` with the GIL released (the parser thread goes on
    meanwhile), and SQLite's statement rollback keeps a refused chunk all-or-nothing."""

    def __init__(self, plan: Plan, specs: dict[str, FieldSpec]):
        super().__init__(plan, specs)
        self.update_sql = self._update_sql()
        self.insert_sql = self._insert_sql()

    def _ref(self, i: int, spec: FieldSpec) -> str:
        pos = i + 2
        if spec.type == "multiselect":
            return f"json(j.value -> {pos})"
        return f"j.value ->> {pos}"

    def _data_expr(self, base: str) -> str:
        parts = [
            f"'{s.key}', {self._ref(i, s)}"
            for i, s in enumerate(self.plan.columns)
            if not s.standard
        ]
        expr = base
        # json_object takes at most 127 arguments.
        for start in range(0, len(parts), 60):
            expr = f"json_patch({expr}, json_object({', '.join(parts[start : start + 60])}))"
        return expr

    def _update_sql(self) -> str:
        sets = [
            f'"{s.column}" = {self._ref(i, s)}'
            for i, s in enumerate(self.plan.columns)
            if s.standard
        ]
        if any(not s.standard for s in self.plan.columns):
            sets.append(f'"data" = {self._data_expr("data")}')
        sets.append('"updated_at" = ?')
        return (
            f"UPDATE {sql.TABLE} SET {', '.join(sets)} FROM json_each(?) AS j"
            f" WHERE {sql.TABLE}.id = j.value ->> 1"
        )

    def _insert_sql(self) -> str:
        by_key = {s.key: i for i, s in enumerate(self.plan.columns)}
        cols, exprs = [], []
        for s in WRITABLE_STANDARD:
            cols.append(f'"{s.column}"')
            if s.key in by_key:
                exprs.append(self._ref(by_key[s.key], s))
            else:
                exprs.append(_sql_literal(empty_value(s)))
        cols += ['"data"', '"created_at"', '"updated_at"']
        exprs += [self._data_expr("'{}'"), "?", "?"]
        return (
            f"INSERT INTO {sql.TABLE} ({', '.join(cols)}) SELECT {', '.join(exprs)}"
            " FROM json_each(?) AS j ORDER BY j.key"
        )

    def encode(self, rows: list[list[Any]]) -> str:
        return json.dumps(rows, ensure_ascii=False)

    def _payload(self, rows: list[list[Any]]) -> str:
        payload = getattr(rows, "payload", None)
        return self.encode(rows) if payload is None else payload

    def update_params(self, rows: list[list[Any]]) -> tuple:
        return (self.now, self._payload(rows))

    def insert_params(self, rows: list[list[Any]]) -> tuple:
        return (self.now, self.now, self._payload(rows))

    def update(self, rows: list[list[Any]]) -> tuple[int, list[list[Any]], list[Failure]]:
        """Returns (updated, rows whose customer does not exist, refused rows)."""
        if not rows:
            return 0, [], []
        try:
            self.cursor.execute(self.update_sql, self.update_params(rows))
        except connection.Database.IntegrityError:
            return self._one_by_one(self.update_sql, self.update_params, rows)
        updated = self.cursor.rowcount
        missing = []
        if updated < len(rows):
            found = self.existing_ids([r[1] for r in rows])
            missing = [r for r in rows if r[1] not in found]
        return updated, missing, []

    def insert(self, rows: list[list[Any]]) -> tuple[int, list[Failure]]:
        if not rows:
            return 0, []
        try:
            self.cursor.execute(self.insert_sql, self.insert_params(rows))
        except connection.Database.IntegrityError:
            inserted, _missing, failures = self._one_by_one(
                self.insert_sql, self.insert_params, rows
            )
            return inserted, failures
        return self.cursor.rowcount, []

    def _one_by_one(
        self, statement: str, params: Callable[[list[list[Any]]], tuple], rows: list[list[Any]]
    ) -> tuple[int, list[list[Any]], list[Failure]]:
        done, missing, failures = 0, [], []
        for row in rows:
            try:
                self.cursor.execute(statement, params([row]))
            except connection.Database.IntegrityError as e:
                failures.append(self._refused(row, e))
                continue
            if self.cursor.rowcount:
                done += 1
            else:
                missing.append(row)
        return done, missing, failures

    def existing_ids(self, ids: list[int]) -> set[int]:
        self.cursor.execute(
            f"SELECT id FROM {sql.TABLE} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
        return {r[0] for r in self.cursor.fetchall()}

    def lookup(self, values: list[Any]) -> dict[Any, int]:
        expr = f"json_extract(data, '$.{self.plan.key}')"
        self.cursor.execute(
            f"SELECT {expr}, id FROM {sql.TABLE} WHERE {expr} IN (SELECT value FROM json_each(?))",
            (json.dumps(values, ensure_ascii=False),),
        )
        return dict(self.cursor.fetchall())

    def holder(self, spec: FieldSpec, value: Any) -> int | None:
        self.cursor.execute(
            f"SELECT id FROM {sql.TABLE} WHERE json_extract(data, '$.{spec.key}') = ? LIMIT 1",
            (value,),
        )
        row = self.cursor.fetchone()
        return row[0] if row else None


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "'[]'"
    return "''"


PG_TYPES = {"number": "numeric", "multiselect": "jsonb", "flag": "boolean", "integer": "integer"}


class PostgresWriter(Writer):
    """COPY the rows into two temporary tables as the chunks come (the parser thread reads on
    meanwhile), then, at ``finish``, one ``UPDATE .. FROM`` and one ``INSERT .. SELECT`` for the
    whole file. One set-based statement lets the server walk the customer table once in
    Customer ID order; a statement per chunk made the server start over on every chunk (a merge
    join scans the primary key from its start) and cost three times as much. The rows wait on
    the server (temporary tables spill to disk), not in this process. All updates apply before
    all inserts."""

    UPDATES = "okuru_import_updates"
    INSERTS = "okuru_import_inserts"
    # Per transaction: sorts of a million-row temporary table stay in memory. Only ever raised.
    WORK_MEM = "64MB"
    RAISE_WORK_MEM = (
        "SELECT set_config('work_mem', %s, true)"
        " WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)"
    )

    def __init__(self, plan: Plan, specs: dict[str, FieldSpec]):
        super().__init__(plan, specs)
        types = "".join(
            f", c{i} {PG_TYPES.get(s.type, 'text')}" for i, s in enumerate(plan.columns)
        )
        names = "".join(f", c{i}" for i in range(len(plan.columns)))
        self.cursor.execute(self.RAISE_WORK_MEM, (self.WORK_MEM, self.WORK_MEM))
        for table in (self.UPDATES, self.INSERTS):
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")
            self.cursor.execute(
                f"CREATE TEMP TABLE {table} (n bigint, id bigint{types}) ON COMMIT DROP"
            )
        self.copy_sql = {
            t: f"COPY {t} (n, id{names}) FROM STDIN" for t in (self.UPDATES, self.INSERTS)
        }
        self.fetch_sql = {
            t: f"SELECT n, id{''.join(self._fetched(i, s) for i, s in enumerate(plan.columns))}"
            f" FROM {t} WHERE n > %s ORDER BY n LIMIT %s"
            for t in (self.UPDATES, self.INSERTS)
        }
        self.json_cols = [i + 2 for i, s in enumerate(plan.columns) if s.type == "multiselect"]
        self.update_sql = self._update_sql()
        self.insert_sql = self._insert_sql()
        self.counts = {self.UPDATES: 0, self.INSERTS: 0}

    @staticmethod
    def _fetched(i: int, spec: FieldSpec) -> str:
        # A number comes back as the text ``data ->> key`` gives, for the refusal message.
        return f", c{i}::text" if spec.type == "number" else f", c{i}"

    def close(self) -> None:
        # After a database error the transaction is aborted and rolls back (and so drops the
        # tables) anyway: do not hide the error behind a second one.
        with contextlib.suppress(connection.Database.Error):
            for table in (self.UPDATES, self.INSERTS):
                self.cursor.execute(f"DROP TABLE IF EXISTS {table}")
        super().close()

    def _data_build(self) -> str:
        parts = [f"'{s.key}', t.c{i}" for i, s in enumerate(self.plan.columns) if not s.standard]
        # jsonb_build_object takes at most 100 arguments.
        return " || ".join(
            f"jsonb_build_object({', '.join(parts[k : k + 50])})" for k in range(0, len(parts), 50)
        )

    def _update_sql(self) -> str:
        sets = [f'"{s.column}" = t.c{i}' for i, s in enumerate(self.plan.columns) if s.standard]
        build = self._data_build()
        if build:
            sets.append(f'"data" = jsonb_strip_nulls(c.data || {build})')
        sets.append('"updated_at" = %s')
        return (
            f"UPDATE {sql.TABLE} c SET {', '.join(sets)} FROM {self.UPDATES} t"
            " WHERE c.id = t.id{where}"
        )

    def _insert_sql(self) -> str:
        by_key = {s.key: i for i, s in enumerate(self.plan.columns)}
        cols, exprs = [], []
        for s in WRITABLE_STANDARD:
            cols.append(f'"{s.column}"')
            if s.key in by_key:
                exprs.append(f"t.c{by_key[s.key]}")
            else:
                value = empty_value(s)
                exprs.append(
                    "'[]'::jsonb"
                    if isinstance(value, list)
                    else ("false" if value is False else _sql_literal(value))
                )
        build = self._data_build()
        cols += ['"data"', '"created_at"', '"updated_at"']
        exprs += [f"jsonb_strip_nulls({build})" if build else "'{}'::jsonb", "%s", "%s"]
        return (
            f"INSERT INTO {sql.TABLE} ({', '.join(cols)}) SELECT {', '.join(exprs)}"
            f" FROM {self.INSERTS} t WHERE true{{where}} ORDER BY t.n"
        )

    def _copy(self, table: str, rows: list[list[Any]]) -> None:
        json_cols = self.json_cols
        with self.cursor.copy(self.copy_sql[table]) as copy:
            if json_cols:
                for row in rows:
                    row = list(row)
                    for k in json_cols:
                        if row[k] is not None:
                            row[k] = json.dumps(row[k], ensure_ascii=False)
                    copy.write_row(row)
            else:
                for row in rows:
                    copy.write_row(row)
        self.counts[table] += len(rows)

    def update(self, rows: list[list[Any]]) -> tuple[int, list[list[Any]], list[Failure]]:
        if rows:
            self._copy(self.UPDATES, rows)
        return 0, [], []

    def insert(self, rows: list[list[Any]]) -> tuple[int, list[Failure]]:
        if rows:
            self._copy(self.INSERTS, rows)
        return 0, []

    def finish(self) -> Outcome:
        out = Outcome()
        if self.counts[self.UPDATES]:
            # A merge join walks the customer table in Customer ID order whatever the size; a
            # hash join larger than work_mem splits into batches and visits it at random.
            self.cursor.execute("SELECT current_setting('enable_hashjoin')")
            hashjoin = self.cursor.fetchone()[0]
            self.cursor.execute("SELECT set_config('enable_hashjoin', 'off', true)")
            out.updated = self._apply(self.UPDATES, self.update_sql, (self.now,), out)
            self.cursor.execute("SELECT set_config('enable_hashjoin', %s, true)", (hashjoin,))
            if out.updated + out.refused < self.counts[self.UPDATES]:
                self._missing(out)
        if self.counts[self.INSERTS]:
            out.inserted = self._apply(self.INSERTS, self.insert_sql, (self.now, self.now), out)
        return out

    def _apply(self, table: str, statement: str, params: tuple, out: Outcome) -> int:
        # The planner knows nothing of a fresh temporary table.
        self.cursor.execute(f"ANALYZE {table}")
        self.cursor.execute("SAVEPOINT okuru_all")
        try:
            self.cursor.execute(statement.replace("{where}", ""), params)
        except connection.Database.IntegrityError:
            self.cursor.execute("ROLLBACK TO SAVEPOINT okuru_all")
            self.cursor.execute("RELEASE SAVEPOINT okuru_all")
            return self._by_chunks(table, statement, params, out)
        count = self.cursor.rowcount
        self.cursor.execute("RELEASE SAVEPOINT okuru_all")
        return count

    def _by_chunks(self, table: str, statement: str, params: tuple, out: Outcome) -> int:
        """A row hit a unique index: redo chunk by chunk, and a refused chunk row by row, so
        that only the offending rows are rejected."""
        self.cursor.execute(f"CREATE INDEX ON {table} (n)")
        self.cursor.execute(f"ANALYZE {table}")
        chunk = statement.replace("{where}", " AND t.n BETWEEN %s AND %s")
        one = statement.replace("{where}", " AND t.n = %s")
        done, last = 0, -1
        while rows := self._fetch(table, last):
            last = rows[-1][0]
            self.cursor.execute("SAVEPOINT okuru_chunk")
            try:
                self.cursor.execute(chunk, (*params, rows[0][0], last))
            except connection.Database.IntegrityError:
                self.cursor.execute("ROLLBACK TO SAVEPOINT okuru_chunk")
                self.cursor.execute("RELEASE SAVEPOINT okuru_chunk")
                done += self._one_by_one(one, params, rows, out)
                continue
            done += self.cursor.rowcount
            self.cursor.execute("RELEASE SAVEPOINT okuru_chunk")
        return done

    def _fetch(self, table: str, after: int) -> list[list[Any]]:
        self.cursor.execute(self.fetch_sql[table], (after, CHUNK_ROWS))
        return [list(r) for r in self.cursor.fetchall()]

    def _one_by_one(self, one: str, params: tuple, rows: list[list[Any]], out: Outcome) -> int:
        done = 0
        for row in rows:
            self.cursor.execute("SAVEPOINT okuru_row")
            try:
                self.cursor.execute(one, (*params, row[0]))
            except connection.Database.IntegrityError as e:
                self.cursor.execute("ROLLBACK TO SAVEPOINT okuru_row")
                self.cursor.execute("RELEASE SAVEPOINT okuru_row")
                out.refused += 1
                if len(out.failures) < MAX_LISTED_ERRORS:
                    out.failures.append(self._refused(row, e))
                continue
            done += self.cursor.rowcount
            self.cursor.execute("RELEASE SAVEPOINT okuru_row")
        return done

    def _missing(self, out: Outcome) -> None:
        """Update rows whose customer does not exist (any more): how many, and the first."""
        missing = (
            f"FROM {self.UPDATES} t WHERE NOT EXISTS"
            f" (SELECT 1 FROM {sql.TABLE} c WHERE c.id = t.id)"
        )
        self.cursor.execute(f"SELECT count(*) {missing}")
        out.missing = self.cursor.fetchone()[0]
        self.cursor.execute(f"SELECT t.n {missing} ORDER BY t.n LIMIT %s", (MAX_LISTED_ERRORS,))
        out.missing_rows = [[n] for (n,) in self.cursor.fetchall()]

    def existing_ids(self, ids: list[int]) -> set[int]:
        self.cursor.execute(f"SELECT id FROM {sql.TABLE} WHERE id = ANY(%s)", (ids,))
        return {r[0] for r in self.cursor.fetchall()}

    def lookup(self, values: list[Any]) -> dict[Any, int]:
        texts = {_pg_text(v): v for v in values}
        expr = f"(data ->> '{self.plan.key}')"
        self.cursor.execute(
            f"SELECT {expr}, id FROM {sql.TABLE} WHERE {expr} = ANY(%s)", (list(texts),)
        )
        return {texts[text]: id_ for text, id_ in self.cursor.fetchall()}

    def holder(self, spec: FieldSpec, value: Any) -> int | None:
        self.cursor.execute(
            f"SELECT id FROM {sql.TABLE} WHERE (data ->> '{spec.key}') = %s LIMIT 1",
            (_pg_text(value),),
        )
        row = self.cursor.fetchone()
        return row[0] if row else None


def _pg_text(value: Any) -> str:
    """What ``data ->> key`` gives for a stored value."""
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------------------------------
# The import.


class Importer:
    def __init__(self, plan: Plan, specs: dict[str, FieldSpec], result: ImportResult):
        self.plan = plan
        self.result = result
        self.pending: list[RowError] = []
        writer_class = PostgresWriter if connection.vendor == "postgresql" else SqliteWriter
        self.writer = writer_class(plan, specs)

    def apply(self, chunk: Chunk) -> None:
        result, plan = self.result, self.plan
        result.rows += chunk.read
        result.skipped += chunk.skipped
        result.rejected += chunk.rejected
        self.pending = list(chunk.errors)
        updates, inserts = self.classify(chunk)
        inserts = self.check_required(inserts)
        updated, missing, failures = self.writer.update(updates)
        result.updated += updated
        if missing:
            if plan.mode == "update":
                result.skipped += len(missing)
            else:
                self.reject([Failure(r, plan.key_name, no_such_customer()) for r in missing])
        inserted, insert_failures = self.writer.insert(inserts)
        result.inserted += inserted
        self.reject(failures + insert_failures)
        # The chunk's errors in file order, whichever step found them.
        result.add_errors(sorted(self.pending, key=lambda e: e.row))

    def finish(self) -> None:
        """Count what the writer did at the end, and merge its errors into the list in file
        order (the list holds the first errors of the file, whichever step found them)."""
        result, plan = self.result, self.plan
        out = self.writer.finish()
        result.updated += out.updated
        result.inserted += out.inserted
        errors = [RowError(f.row[0], f.column, f.reason) for f in out.failures]
        result.rejected += out.refused
        count = out.refused
        if out.missing:
            if plan.mode == "update":
                result.skipped += out.missing
            else:
                result.rejected += out.missing
                count += out.missing
                reason = no_such_customer()
                errors += [RowError(r[0], plan.key_name, reason) for r in out.missing_rows]
        if count:
            result.merge_errors(errors, count)

    def prepare(self, chunk: Chunk) -> None:
        """The work on a chunk that needs no database, done in the parser thread while the
        database thread writes the chunk before: with the Customer ID as the key, which rows
        are updates, and the writer's encoding of the rows it will write."""
        plan = self.plan
        if not plan.key_is_id:
            return
        updates = Rows(r for r in chunk.rows if r[1] is not None)
        inserts = Rows(r for r in chunk.rows if r[1] is None)
        if updates and plan.mode != "insert":
            updates.payload = self.writer.encode(updates)
        if inserts and not plan.missing_required:
            inserts.payload = self.writer.encode(inserts)
        chunk.split = (updates, inserts)

    def classify(self, chunk: Chunk) -> tuple[list[list[Any]], list[list[Any]]]:
        """Split rows into updates (with their customer's id) and inserts, per the mode."""
        plan, mode, rows = self.plan, self.plan.mode, chunk.rows
        if plan.key_is_id:
            if chunk.split is None:
                self.prepare(chunk)
            updates, inserts = chunk.split  # type: ignore[misc]
            if mode == "insert" and updates:
                found = self.writer.existing_ids([r[1] for r in updates])
                self.result.skipped += sum(1 for r in updates if r[1] in found)
                self.reject(
                    [
                        Failure(r, plan.key_name, no_such_customer())
                        for r in updates
                        if r[1] not in found
                    ]
                )
                updates = []
            return updates, inserts
        pos = 2 + plan.key_pos
        ids = self.writer.lookup([r[pos] for r in rows]) if rows else {}
        updates, inserts = [], []
        for r in rows:
            target = ids.get(r[pos])
            if target is None:
                if mode == "update":
                    self.result.skipped += 1
                else:
                    inserts.append(r)
            elif mode == "insert":
                self.result.skipped += 1
            else:
                r[1] = target
                updates.append(r)
        return updates, inserts

    def check_required(self, inserts: list[list[Any]]) -> list[list[Any]]:
        missing = self.plan.missing_required
        if not missing or not inserts:
            return inserts
        for r in inserts:
            self.result.rejected += 1
            self.pending.extend(
                RowError(r[0], str(s.label), _("a value is required")) for s in missing
            )
        return []

    def reject(self, failures: list[Failure]) -> None:
        if not failures:
            return
        self.result.rejected += len({id(f.row) for f in failures})
        self.pending.extend(RowError(f.row[0], f.column, f.reason) for f in failures)


def resolve_encoding(path: str | Path, encoding: str) -> str:
    """The codec to read the file with, checked against the file (``csvio.prepare``)."""
    chosen = ENCODING_CHOICES.get((encoding or "auto").lower())
    if chosen is None:
        raise ImportFailed(
            _("Unknown encoding %(encoding)s: use auto, utf-8 or cp932.") % {"encoding": encoding}
        )
    try:
        return csvio.prepare(path, chosen)
    except csvio.CsvError as e:
        raise _failed(e) from None


def _failed(error: csvio.CsvError) -> ImportFailed:
    return ImportFailed(str(error), [RowError(error.line or 0, "", str(error))])


def run_import(
    path: str | Path,
    *,
    mode: str,
    key: str,
    encoding: str = "auto",
    dry_run: bool = False,
    operator: Actor = None,
    progress: Callable[[int], Any] | None = None,
    name: str = "",
) -> ImportResult:
    """Import a customer CSV file. Raises ``ImportFailed`` when the file cannot be imported at
    all (nothing is written then); rows with errors are listed in the result.

    ``operator`` is who the operation log names (an Operator, a request, or None for the CLI);
    ``name`` is the file name to log (an upload's original name) instead of the path's."""
    if mode not in MODES:
        raise ImportFailed(
            _("Unknown mode %(mode)s: use insert, update or upsert.") % {"mode": mode}
        )
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(_("No such file: %(path)s") % {"path": path})
    codec = resolve_encoding(path, encoding)
    result = ImportResult(
        mode=mode,
        key=key,
        encoding="cp932" if codec == "cp932" else "utf-8",
        dry_run=dry_run,
    )
    specs = catalogue()
    started = timezone.now()
    try:
        with transaction.atomic():
            _import_rows(path, codec, specs, result, progress)
            # Suppressed addresses (complaints, deleted refusers) refuse again after any import.
            suppression.enforce(since=started)
            if dry_run:
                transaction.set_rollback(True)
    except csvio.CsvError as e:
        raise _failed(e) from None
    audit.log(
        operator,
        "import_dry_run" if dry_run else "import",
        name or path.name,
        {k: v for k, v in result.as_dict().items() if k != "errors"},
    )
    return result


def _import_rows(
    path: Path,
    codec: str,
    specs: dict[str, FieldSpec],
    result: ImportResult,
    progress: Callable[[int], Any] | None,
) -> None:
    rows = csvio.read_rows(path, codec)
    with contextlib.closing(rows):
        first = next(rows, None)
        if first is None or not any(c.strip() for c in first[1]):
            raise ImportFailed(
                _("The file is empty: it needs a header row and at least one row."),
                [RowError(1, "", _("The file is empty."))],
            )
        plan = make_plan(first[1], specs, result.key, result.mode)
        result.ignored_columns = plan.ignored
        connection.ensure_connection()
        importer = Importer(plan, specs, result)
        try:
            max_id = importer.writer.max_id() if plan.key_is_id else 0
            parser = Parser(plan, max_id, importer.prepare)
            chunks = _prefetch(lambda: parser.chunks(rows))
            with contextlib.closing(chunks):
                for chunk in chunks:
                    importer.apply(chunk)
                    if progress is not None:
                        progress(result.rows)
            importer.finish()
        finally:
            importer.writer.close()
    if result.rows == 0:
        raise ImportFailed(
            _("The file is empty: it needs a header row and at least one row."),
            [RowError(2, "", _("The file has a header row but no rows."))],
        )
