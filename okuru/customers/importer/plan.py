"""The plan of an import: the modes, the key, and what each column of the file is (the
header mapped to fields). Header problems stop the import here, before any row is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.utils.translation import gettext as _

from okuru.customers.fields import STANDARD, FieldSpec, header_index, shown

MODES = ("insert", "update", "upsert")
CHUNK_ROWS = 10_000
MAX_LISTED_ERRORS = 1000
# Standard columns an import may write, with the value a new customer gets when the file has no
# such column. Customer ID, created and updated are Okuru's own.
WRITABLE_STANDARD = [s for s in STANDARD if not s.readonly]


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
    key_cell: int  # cell index of the key column; -1 when an insert has none
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
    if key_cell < 0 and mode == "insert":
        # A list of new people has no key column: every row is a new customer, which is what a
        # Customer ID key with every cell empty means (a unique field's value, absent from the
        # file, cannot match anyone either).
        key, key_spec = "customer_id", specs["customer_id"]
    elif key_cell < 0:
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
        key_name=header[key_cell].strip().lstrip("\ufeff")
        if key_cell >= 0
        else str(key_spec.label),
        ignored=ignored,
        missing_required=missing_required,
    )


def _header_message(errors: list[RowError]) -> str:
    return _("The header row has %(count)s problems: %(list)s") % {
        "count": len(errors),
        "list": "; ".join(str(e) for e in errors),
    }
