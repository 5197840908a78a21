"""The PostgreSQL writer: chunks COPY-ed into temporary tables, one statement per kind of
write at the end."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from django.db import connection

from okuru.customers import sql
from okuru.customers.fields import FieldSpec, empty_value
from okuru.customers.importer.plan import CHUNK_ROWS, MAX_LISTED_ERRORS, WRITABLE_STANDARD, Plan
from okuru.customers.importer.writer import Failure, Outcome, Writer, _sql_literal

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
