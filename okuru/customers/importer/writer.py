"""The database side of an import, common to both vendors: what a writer reports and how a
row the database refused is explained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.customers import sql
from okuru.customers.fields import FieldSpec
from okuru.customers.importer.plan import Plan

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


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "'[]'"
    return "''"
