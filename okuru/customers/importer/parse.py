"""Reading and checking rows: the parser thread turns the CSV into chunks of checked values
for the database thread. No database access here."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

from okuru.customers.fields import (
    MAX_TEXT_CHARS,
    MAX_UNIQUE_TEXT_CHARS,
    FieldSpec,
    empty_value,
    parser_for,
    shown,
)
from okuru.customers.importer.plan import CHUNK_ROWS, Plan, RowError

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
        raw = cells[plan.key_cell].strip() if plan.key_cell >= 0 else ""
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
