"""The SQLite writer: one statement per chunk on the raw connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import connection

from okuru.customers import sql
from okuru.customers.fields import FieldSpec, empty_value
from okuru.customers.importer.plan import WRITABLE_STANDARD, Plan
from okuru.customers.importer.writer import Failure, Writer, _sql_literal


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
