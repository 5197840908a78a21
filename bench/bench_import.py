"""Import benchmark: N rows (Customer ID + one text field) into an N-customer database, against
the bare limit, measured in the same run.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--modes update,upsert,insert]
        [--repeat 2]

SQLite by default (a fresh file in a temporary directory); with ``DATABASE_URL=postgres://...``
a fresh PostgreSQL database ``okuru_bench_io`` on that server. Never the development database.

For each mode the import (``okuru.customers.importer.run_import``: CSV reading, checking,
de-duplication, one transaction) and the bare limit each run in a fresh child process, which
reports its time and peak RSS (``resource.getrusage`` ``ru_maxrss``); the two alternate
``--repeat`` times and each one's best run is kept (the machine is shared: single runs are
noisy). Repeated update and upsert runs rewrite the same rows; insert runs add rows each time. The bare limit reads no CSV
and checks nothing: on SQLite it is ``sqlite3`` ``executemany`` of the same per-row UPDATE (and
INSERT) on rows prepared in memory beforehand; on PostgreSQL it is COPY of the prepared rows
into a temporary table and one set-based UPDATE / INSERT.

Files: update = every customer's id; insert = empty ids (new customers); upsert = every other row
an existing id, the others empty. Targets (issue #2): SQLite >= 200,000 rows/s and >= 0.4x the
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

SQLITE_UPDATE = (
    "UPDATE customers_customer SET data = json_patch(data, json_object('note', ?)),"
    " updated_at = ? WHERE id = ?"
)
SQLITE_INSERT = (
    "INSERT INTO customers_customer (email, mobile_email, refused, email_error_count,"
    " mobile_error_count, unsubscribed, data, created_at, updated_at)"
    " VALUES ('', '', 0, 0, 0, '[]', json_patch('{}', json_object('note', ?)), ?, ?)"
)
PG_UPDATE = (
    "UPDATE customers_customer c SET data = jsonb_strip_nulls(c.data ||"
    " jsonb_build_object('note', t.note)), updated_at = %s FROM bare t WHERE c.id = t.id"
)
PG_INSERT = (
    "INSERT INTO customers_customer (email, mobile_email, refused, email_error_count,"
    " mobile_error_count, unsubscribed, data, created_at, updated_at)"
    " SELECT '', '', false, 0, 0, '[]'::jsonb, jsonb_strip_nulls(jsonb_build_object('note',"
    " t.note)), %s, %s FROM bare t WHERE t.id IS NULL ORDER BY t.n"
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


def child_bare(path: str, mode: str) -> dict:
    from django.db import connection
    from django.utils import timezone

    updates, inserts = _prepared(path)  # not timed: the bare limit reads no CSV
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "postgresql":
        from django.db import transaction

        start = time.perf_counter()
        with transaction.atomic():
            cur = raw.cursor()
            cur.execute("CREATE TEMP TABLE bare (n bigint, id bigint, note text) ON COMMIT DROP")
            with cur.copy("COPY bare (n, id, note) FROM STDIN") as copy:
                for row in updates + inserts:
                    copy.write_row(row)
            cur.execute("ANALYZE bare")
            if updates:
                cur.execute(PG_UPDATE, (now,))
            if inserts:
                cur.execute(PG_INSERT, (now, now))
        return {"seconds": time.perf_counter() - start}
    up = [(note, now, cid) for _n, cid, note in updates]
    ins = [(note, now, now) for _n, _cid, note in inserts]
    start = time.perf_counter()
    cur = raw.cursor()
    cur.execute("BEGIN IMMEDIATE")
    for k in range(0, len(up), 10_000):
        cur.executemany(SQLITE_UPDATE, up[k : k + 10_000])
    for k in range(0, len(ins), 10_000):
        cur.executemany(SQLITE_INSERT, ins[k : k + 10_000])
    cur.execute("COMMIT")
    return {"seconds": time.perf_counter() - start}


def child_main(args: argparse.Namespace) -> None:
    customers_db.use(args.url, args.tmp)
    fn = child_import if args.child == "import" else child_bare
    out = fn(args.file, args.mode)
    out["rss_mb"] = customers_db.peak_rss_mb()
    print(json.dumps(out))


def run_child(kind: str, url: str, tmp: str, path: Path, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--url", url, "--tmp", tmp]
    cmd += ["--file", str(path), "--mode", mode]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    url, tmp = customers_db.prepare()
    from django.db import connection

    vendor = connection.vendor
    t = time.perf_counter()
    customers_db.seed(args.rows)
    connection.close()
    print(f"{vendor}: seeded {args.rows:,} customers in {time.perf_counter() - t:.1f} s")
    for mode in args.modes.split(","):
        path = Path(tmp) / f"{mode}.csv"
        write_csv(path, mode, args.rows)
        size = path.stat().st_size / 1e6
        # The machine is shared: alternate the two, and keep each one's best run.
        imps, bares = [], []
        for _ in range(args.repeat):
            imps.append(run_child("import", url, tmp, path, mode))
            bares.append(run_child("bare", url, tmp, path, mode))
        imp = min(imps, key=lambda r: r["seconds"])
        bare = min(bares, key=lambda r: r["seconds"])
        imp["rss_mb"] = max(r["rss_mb"] for r in imps)
        rate, bare_rate = args.rows / imp["seconds"], args.rows / bare["seconds"]
        print(
            f"{mode:7} {args.rows:,} rows ({size:.0f} MB file): import {imp['seconds']:.2f} s ="
            f" {rate:,.0f} rows/s | bare limit {bare['seconds']:.2f} s = {bare_rate:,.0f} rows/s"
            f" | ratio {rate / bare_rate:.2f} | peak RSS import {imp['rss_mb']:.0f} MB"
            f" (bare {bare['rss_mb']:.0f} MB) | inserted {imp['inserted']:,} updated"
            f" {imp['updated']:,} rejected {imp['rejected']:,}",
            flush=True,
        )
        path.unlink()
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
