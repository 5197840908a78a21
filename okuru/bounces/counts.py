"""Error counts (エラーカウント): what a permanent failure adds to the address it was sent to.

One rule, whoever found the failure (the sending worker at SMTP time, a bounce later): the
kind's weight (``kinds.error_weight``) goes to the count of the address field the message went
to (``email_error_count`` or ``mobile_error_count``), only while the customer still has that
address, compared case-insensitively. A customer who changed the address since starts clean:
the count belongs to the address.

Set-based: one ``UPDATE … FROM`` a list of (customer, address, weight) rows, run inside the
caller's transaction, so a failure and its count are written together or not at all.
``update_sql`` is that statement over any relation with those three columns, for a caller that
builds the rows inside a larger statement (the PostgreSQL flush of ``okuru.mailings.ledger``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from okuru.customers.sql import TABLE as CUSTOMERS

Failure = tuple[int, str, int]  # (customer id, address the message went to, weight)


def columns(address_field: str) -> tuple[str, str]:
    """(address column, error count column) of ``address_field`` ("email" or "mobile_email")."""
    if address_field == "mobile_email":
        return "mobile_email", "mobile_error_count"
    return "email", "email_error_count"


def update_sql(address_field: str, source: str) -> str:
    """The UPDATE that adds the weights of ``source`` (a relation with the columns ``customer``,
    ``address`` and ``weight``) to the customers' error counts."""
    address, count = columns(address_field)
    return (
        f"UPDATE {CUSTOMERS} SET {count} = {CUSTOMERS}.{count} + s.weight FROM {source} s "
        f"WHERE s.weight > 0 AND {CUSTOMERS}.id = s.customer "
        f"AND LOWER({CUSTOMERS}.{address}) = LOWER(s.address)"
    )


def add(address_field: str, failures: Iterable[Failure]) -> None:
    """Add each failure's weight to its customer's count for ``address_field``; one statement
    whatever the number of failures (none when no failure weighs anything)."""
    rows = [(int(c), a, int(w)) for c, a, w in failures if w]
    if not rows:
        return
    if connection.vendor == "postgresql":
        # One array per column: the statement text is the same for any number of rows.
        source = "v AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::integer[]) "
        source += "AS t (customer, address, weight))"
        params: list = [list(column) for column in zip(*rows, strict=True)]
    else:
        values = ", ".join(["(%s, %s, %s)"] * len(rows))
        source = f"v (customer, address, weight) AS (VALUES {values})"
        params = [value for row in rows for value in row]
    # The id filter beside the join keeps both planners on the customers' primary key.
    ids = sorted({r[0] for r in rows})
    if connection.vendor == "postgresql":
        where, id_params = f" AND {CUSTOMERS}.id = ANY(%s::bigint[])", [ids]
    else:
        where, id_params = f" AND {CUSTOMERS}.id IN ({', '.join(['%s'] * len(ids))})", ids
    with connection.cursor() as cur:
        cur.execute(f"WITH {source} {update_sql(address_field, 'v')}{where}", [*params, *id_params])
