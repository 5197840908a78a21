"""Import benchmark: N rows (Customer ID + one text field) into an N-customer database, against
the bare limit, measured in the same run.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--modes update,upsert,insert]
        [--repeat 2]

SQLite by default (a fresh file in a temporary directory); with ``DATABASE_URL=postgres://...``
a fresh PostgreSQL database ``okuru_bench_io`` on that server. Never the development database.

For each mode the import (``okuru.customers.importer.run_import``: CSV reading, checking,
de-duplication, one transaction) and the bare limit each run in a fresh child process, on a
fresh copy of the seeded database (``customers_db.fresh_copy``: every run starts from the same
table, no dead rows, no free space in the pages), and report their time and peak RSS
(``resource.getrusage`` ``ru_maxrss``); they alternate ``--repeat`` times and each one's best run
is kept (the machine is shared: single runs are noisy).

The bare limit reads no CSV and checks nothing; its rows are prepared in memory beforehand (not
timed, and not part of its peak RSS that matters):

* SQLite: ``sqlite3`` ``executemany`` of a per-row UPDATE that makes the same change (the
  definition), in two forms, ``json_patch(data, json_object('note', ?))`` as the import and
  ``json_set(data, '$.note', ?)``; the faster one is the limit. Inserts: ``executemany`` of a
  per-row INSERT.
* PostgreSQL: COPY of the prepared rows into a temporary table, then the import's own
  statements, one ``UPDATE .. FROM`` / ``INSERT .. SELECT``, with the import's settings
  (``PostgresWriter.WORK_MEM``, merge join). Its time is printed with the part the statements
  took, i.e. the same UPDATE without CSV parsing or COPY.

Files: update = every customer's id; insert = empty ids (new customers); upsert = every other row
an existing id, the others empty. Targets: SQLite >= 200,000 rows/s and >= 0.4x the
bare limit; PostgreSQL >= 150,000 rows/s; peak memory < 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import customers_db  # noqa: E402

# The bare limit's statements: the same changes as the import's, written by hand. SQLite has two
# ways to say "set the note"; the bare limit tries both and keeps the faster.
SQLITE_UPDATES = {
    "json_patch": (
        "UPDATE customers_customer SET data = json_patch(data, json_object('note', ?)),"
        " updated_at = ? WHERE id = ?"
    ),
    "json_set": (
        "UPDATE customers_customer SET data = json_set(data, '$.note', ?), updated_at = ?"
        " WHERE id = ?"
    ),
}
SQLITE_INSERT = (
    "INSERT INTO customers_customer (email, mobile_email, refused, email_error_count,"
    " mobile_error_count, unsubscribed, data, created_at, updated_at)"
    " VALUES ('', '', 0, 0, 0, '[]', json_object('note', ?), ?, ?)"
)
PG_UPDATE = (
    "UPDATE customers_customer c SET data = jsonb_strip_nulls(c.data ||"
    " jsonb_build_object('note', t.note)), updated_at = %s FROM bare_u t WHERE c.id = t.id"
)
PG_INSERT = (
    "INSERT INTO customers_customer (email, mobile_email, refused, email_error_count,"
    " mobile_error_count, unsubscribed, data, created_at, updated_at)"
    " SELECT '', '', false, 0, 0, '[]'::jsonb, jsonb_strip_nulls(jsonb_build_object('note',"
    " t.note)), %s, %s FROM bare_i t ORDER BY t.n"
)


def write_csv(path: Path, mode: str, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Customer ID", "Note"])
        for i in range(1, rows + 1):
            if mode == "insert" or (mode == "upsert" and i % 2 == 0):
                w.writerow(["", f"{mode} メモ {i}"])
            else:
                w.writerow([i, f"{mode} メモ {i}"])


def child_import(path: str, mode: str) -> dict:
    from okuru.customers.importer import run_import

    start = time.perf_counter()
    result = run_import(path, mode=mode, key="customer_id")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "inserted": result.inserted,
        "updated": result.updated,
        "rejected": result.rejected,
        "skipped": result.skipped,
    }


def _prepared(path: str) -> tuple[list, list]:
    updates, inserts = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for n, (cid, note) in enumerate(reader):
            (updates if cid else inserts).append((n, int(cid) if cid else None, note))
    return updates, inserts


def child_bare(path: str, mode: str, variant: str) -> dict:
    from django.db import connection
    from django.utils import timezone

    updates, inserts = _prepared(path)  # not timed: the bare limit reads no CSV
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "postgresql":
        return _bare_postgres(raw, updates, inserts, now)
    up = [(note, now, cid) for _n, cid, note in updates]
    ins = [(note, now, now) for _n, _cid, note in inserts]
    start = time.perf_counter()
    cur = raw.cursor()
    cur.execute("BEGIN IMMEDIATE")
    for k in range(0, len(up), 10_000):
        cur.executemany(SQLITE_UPDATES[variant], up[k : k + 10_000])
    for k in range(0, len(ins), 10_000):
        cur.executemany(SQLITE_INSERT, ins[k : k + 10_000])
    cur.execute("COMMIT")
    return {"seconds": time.perf_counter() - start}


def _bare_postgres(raw, updates: list, inserts: list, now) -> dict:
    """COPY of the prepared rows into temporary tables, then the same set-based statements as
    the import's, with the same per-transaction settings (``PostgresWriter``)."""
    from django.db import transaction

    from okuru.customers.importer import PostgresWriter

    start = time.perf_counter()
    with transaction.atomic():
        cur = raw.cursor()
        cur.execute(PostgresWriter.RAISE_WORK_MEM, (PostgresWriter.WORK_MEM,) * 2)
        for table, rows in (("bare_u", updates), ("bare_i", inserts)):
            cur.execute(
                f"CREATE TEMP TABLE {table} (n bigint, id bigint, note text) ON COMMIT DROP"
            )
            for k in range(0, len(rows), 10_000):
                with cur.copy(f"COPY {table} (n, id, note) FROM STDIN") as copy:
                    for row in rows[k : k + 10_000]:
                        copy.write_row(row)
        copied = time.perf_counter()
        if updates:
            cur.execute("ANALYZE bare_u")
            cur.execute("SELECT set_config('enable_hashjoin', 'off', true)")
            cur.execute(PG_UPDATE, (now,))
            cur.execute("SELECT set_config('enable_hashjoin', 'on', true)")
        if inserts:
            cur.execute("ANALYZE bare_i")
            cur.execute(PG_INSERT, (now, now))
    end = time.perf_counter()
    return {"seconds": end - start, "statements": end - copied}


def child_main(args: argparse.Namespace) -> None:
    customers_db.use(args.url, args.tmp)
    if args.child == "import":
        out = child_import(args.file, args.mode)
    else:
        out = child_bare(args.file, args.mode, args.variant)
    out["rss_mb"] = customers_db.peak_rss_mb()
    print(json.dumps(out))


def run_child(kind: str, url: str, tmp: str, path: Path, mode: str, variant: str = "") -> dict:
    # Every timed run gets its own copy of the seeded database (not timed).
    run_url = customers_db.fresh_copy(url, tmp)
    cmd = [sys.executable, __file__, "--child", kind, "--url", run_url, "--tmp", tmp]
    cmd += ["--file", str(path), "--mode", mode, "--variant", variant]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bare_variants(vendor: str, mode: str) -> list[str]:
    if vendor == "postgresql":
        return ["copy"]
    return ["json_patch"] if mode == "insert" else list(SQLITE_UPDATES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--modes", default="update,upsert,insert")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=["import", "bare"])
    parser.add_argument("--url")
    parser.add_argument("--tmp")
    parser.add_argument("--file")
    parser.add_argument("--mode")
    parser.add_argument("--variant", default="")
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    url, tmp = customers_db.prepare_seeded(args.rows)
    from django.db import connection

    vendor = connection.vendor
    for mode in args.modes.split(","):
        path = Path(tmp) / f"{mode}.csv"
        write_csv(path, mode, args.rows)
        size = path.stat().st_size / 1e6
        # The machine is shared: alternate the runs, and keep each one's best.
        imps, bares = [], {v: [] for v in bare_variants(vendor, mode)}
        for _ in range(args.repeat):
            imps.append(run_child("import", url, tmp, path, mode))
            for variant, runs in bares.items():
                runs.append(run_child("bare", url, tmp, path, mode, variant))
        imp = min(imps, key=lambda r: r["seconds"])
        best = {v: min(runs, key=lambda r: r["seconds"]) for v, runs in bares.items()}
        variant = min(best, key=lambda v: best[v]["seconds"])
        bare = best[variant]
        rss = max(r["rss_mb"] for r in imps)
        bare_rss = max(r["rss_mb"] for runs in bares.values() for r in runs)
        rate, bare_rate = args.rows / imp["seconds"], args.rows / bare["seconds"]
        detail = ", ".join(f"{v} {r['seconds']:.2f} s" for v, r in best.items())
        if "statements" in bare:
            detail += f"; of which the statements {bare['statements']:.2f} s"
        print(
            f"{mode:7} {args.rows:,} rows ({size:.0f} MB file): import {imp['seconds']:.2f} s ="
            f" {rate:,.0f} rows/s | bare limit {bare['seconds']:.2f} s = {bare_rate:,.0f} rows/s"
            f" ({detail}) | ratio {rate / bare_rate:.2f} | peak RSS import {rss:.0f} MB"
            f" (bare {bare_rss:.0f} MB) | inserted {imp['inserted']:,} updated"
            f" {imp['updated']:,} skipped {imp['skipped']:,} rejected {imp['rejected']:,}",
            flush=True,
        )
        path.unlink()
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
