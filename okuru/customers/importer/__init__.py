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
  (Customer IDs are assigned by Okuru, never by the file). A file without the key column inserts
  every row: a list of new people needs no key.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.accounts.models import Operator
from okuru.bounces import suppression
from okuru.customers.fields import FieldSpec, catalogue
from okuru.customers.importer.parse import Chunk, Parser, Rows, _prefetch, no_such_customer
from okuru.customers.importer.plan import (
    CHUNK_ROWS,
    MAX_LISTED_ERRORS,
    MODES,
    ImportFailed,
    Plan,
    RowError,
    make_plan,
)
from okuru.customers.importer.postgres import PostgresWriter
from okuru.customers.importer.sqlite import SqliteWriter
from okuru.customers.importer.writer import Failure
from okuru.lib import csvio

__all__ = [
    "CHUNK_ROWS",
    "ENCODING_CHOICES",
    "MAX_LISTED_ERRORS",
    "MODES",
    "ImportFailed",
    "ImportResult",
    "Importer",
    "Plan",
    "PostgresWriter",
    "RowError",
    "SqliteWriter",
    "make_plan",
    "resolve_encoding",
    "run_import",
]

ENCODING_CHOICES = {
    "auto": "auto",
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "utf-8-sig": "utf-8-sig",
    "cp932": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
}

Actor = HttpRequest | Operator | None


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
        result.key = plan.key
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
