"""SQL for the master database that the ORM cannot say: JSON paths per vendor, the expression
indexes behind unique user fields, and removing a deleted field's data.

Field keys are validated against ``KEY_RE`` before they get here, so embedding them in SQL is
safe; values always travel as parameters.
"""

from __future__ import annotations

from django.db import connection

from okuru.customers.fields import FieldSpec

TABLE = "customers_customer"


def vendor() -> str:
    return connection.vendor


def value_expr(spec: FieldSpec) -> str:
    """An SQL expression for the field's stored value, comparable with a parsed parameter."""
    if spec.standard:
        return f'"{TABLE}"."{spec.column}"'
    if vendor() == "postgresql":
        if spec.type == "multiselect":
            return f'("{TABLE}"."data" -> \'{spec.key}\')'
        if spec.type == "number":
            return f'(("{TABLE}"."data" ->> \'{spec.key}\')::numeric)'
        return f'("{TABLE}"."data" ->> \'{spec.key}\')'
    return f'json_extract("{TABLE}"."data", \'$.{spec.key}\')'


def json_array_contains_any(expr: str, n: int) -> str:
    """``expr`` (a JSON array) holds at least one of ``n`` parameters."""
    marks = ", ".join(["%s"] * n)
    if vendor() == "postgresql":
        return f"(COALESCE({expr}, '[]'::jsonb) ?| ARRAY[{marks}]::text[])"
    return f"EXISTS (SELECT 1 FROM json_each({expr}) WHERE json_each.value IN ({marks}))"


def json_array_nonempty(expr: str) -> str:
    if vendor() == "postgresql":
        return f"(COALESCE(jsonb_array_length({expr}), 0) > 0)"
    return f"(COALESCE(json_array_length({expr}), 0) > 0)"


def unique_index_name(key: str) -> str:
    return f"cf_uniq_{key}"


def create_unique_index(key: str) -> None:
    """Create the index that makes a user field unique (and fast as an import update key)."""
    name = unique_index_name(key)
    with connection.cursor() as cur:
        if vendor() == "postgresql":
            cur.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {TABLE} ((data ->> '{key}'))")
        else:
            cur.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {TABLE} (json_extract(data, '$.{key}'))"
            )


def drop_unique_index(key: str) -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {unique_index_name(key)}")


def remove_field_data(key: str) -> None:
    """Delete a field's values from every customer (the field itself is being deleted)."""
    with connection.cursor() as cur:
        if vendor() == "postgresql":
            cur.execute(f"UPDATE {TABLE} SET data = data - %s WHERE data ? %s", [key, key])
        else:
            cur.execute(
                f"UPDATE {TABLE} SET data = json_remove(data, '$.{key}') "
                f"WHERE json_type(data, '$.{key}') IS NOT NULL"
            )


def find_duplicate_values(key: str) -> bool:
    """Whether existing data already breaks uniqueness for ``key`` (refuse making it unique)."""
    expr = f"data ->> '{key}'" if vendor() == "postgresql" else f"json_extract(data, '$.{key}')"
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT 1 FROM {TABLE} WHERE {expr} IS NOT NULL GROUP BY {expr} HAVING COUNT(*) > 1 LIMIT 1"
        )
        return cur.fetchone() is not None
