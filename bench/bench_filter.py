"""Filter count benchmark: one field condition over N customers (target < 1 s at 1,000,000).

    .venv/bin/python bench/bench_filter.py [--rows 1000000]

SQLite by default (a fresh file in a temporary directory); with ``DATABASE_URL=postgres://...``
a fresh PostgreSQL database ``okuru_bench_io``. Each condition is counted three times with
``okuru.customers.filters.count`` (one COUNT(*) query); the best and the worst are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import customers_db  # noqa: E402

CONDITIONS = [
    ("user field equals", {"field": "plan", "op": "eq", "value": "free"}),
    ("user text contains", {"field": "note", "op": "contains", "value": "99"}),
    ("user number between", {"field": "points", "op": "between", "value": "10", "value2": "20"}),
    ("user field has a value", {"field": "note", "op": "has_value"}),
    ("e-mail starts with", {"field": "email", "op": "starts_with", "value": "user12"}),
    ("refusal flag", {"field": "refused", "op": "eq", "value": "1"}),
    # updated_at has no index (imports rewrite it on every row): a full scan like the others.
    ("updated after", {"field": "updated_at", "op": "gt", "value": "2025-12-31 00:00:00"}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    url, tmp = customers_db.prepare()
    from django.db import connection

    from okuru.customers import filters

    t = time.perf_counter()
    customers_db.seed(args.rows)
    print(f"{connection.vendor}: seeded {args.rows:,} customers in {time.perf_counter() - t:.1f} s")
    worst_all = 0.0
    for name, cond in CONDITIONS:
        tree = {"match": "all", "conditions": [cond]}
        times = []
        for _ in range(3):
            start = time.perf_counter()
            n = filters.count(tree)
            times.append(time.perf_counter() - start)
        worst_all = max(worst_all, max(times))
        print(f"{name:24} {n:>9,} matches: best {min(times):.3f} s, worst {max(times):.3f} s")
    print(f"slowest count: {worst_all:.3f} s (target < 1 s)")
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
