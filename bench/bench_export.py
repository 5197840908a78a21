"""Export benchmark: N customers to a CSV file, against the bare limit, in the same run.

    .venv/bin/python bench/bench_export.py [--rows 1000000] [--repeat 2]

SQLite by default (a fresh file in a temporary directory); with ``DATABASE_URL=postgres://...``
a fresh PostgreSQL database ``okuru_bench_io``. Never the development database.

The export (``okuru.customers.exporter.write_export``: customer_id, email, note, plan, points,
refused, unsubscribed, UTF-8 with BOM, formula guard, labels) runs in a child process that
reports its time and peak RSS; the two alternate ``--repeat`` times and each one's best run is
kept (the machine is shared, so single runs are noisy). Two bare runs, each in another child,
run the same SELECT through the same kind of cursor: "csv.writer" writes the raw values with
``csv.writer``, formatting nothing (what a plain export costs); "fetch" only fetches the rows,
the floor no export can go under. Target: >= 250,000 rows/s; peak memory < 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import customers_db  # noqa: E402

FIELDS = ["customer_id", "email", "note", "plan", "points", "refused", "unsubscribed"]


def child_export(path: str) -> dict:
    from okuru.customers.exporter import write_export

    start = time.perf_counter()
    with open(path, "wb") as out:
        rows = write_export(out, FIELDS)
    return {"seconds": time.perf_counter() - start, "rows": rows}


def child_bare(path: str, variant: str) -> dict:
    from django.db import connection

    from okuru.customers import exporter
    from okuru.customers.fields import catalogue

    specs = catalogue()
    query, params = exporter._query([specs[k] for k in FIELDS], {}, specs)
    start = time.perf_counter()
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        with connection.chunked_cursor() as cur:
            cur.execute(query, params)
            while batch := cur.fetchmany(exporter.FETCH_ROWS):
                if variant == "csv.writer":
                    w.writerows(batch)
                rows += len(batch)
    return {"seconds": time.perf_counter() - start, "rows": rows}


def child_main(args: argparse.Namespace) -> None:
    customers_db.use(args.url, args.tmp)
    if args.child == "export":
        out = child_export(args.file)
    else:
        out = child_bare(args.file, args.variant)
    out["rss_mb"] = customers_db.peak_rss_mb()
    print(json.dumps(out))


def run_child(kind: str, url: str, tmp: str, path: Path, variant: str = "") -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--url",
        url,
        "--tmp",
        tmp,
        "--file",
        str(path),
        "--variant",
        variant,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=["export", "bare"])
    parser.add_argument("--url")
    parser.add_argument("--tmp")
    parser.add_argument("--file")
    parser.add_argument("--variant", default="")
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    url, tmp = customers_db.prepare_seeded(args.rows)
    path = Path(tmp) / "export.csv"
    # The machine is shared: alternate the runs, and keep each one's best.
    exps, bares = [], {"csv.writer": [], "fetch": []}
    for _ in range(args.repeat):
        exps.append(run_child("export", url, tmp, path))
        size = path.stat().st_size / 1e6
        with path.open("rb") as f:
            head = io.TextIOWrapper(f, encoding="utf-8-sig").readline().strip()
        for variant, runs in bares.items():
            runs.append(run_child("bare", url, tmp, path, variant))
    exp = min(exps, key=lambda r: r["seconds"])
    rate = exp["rows"] / exp["seconds"]
    rss = max(r["rss_mb"] for r in exps)
    bare_text = []
    for variant, runs in bares.items():
        bare = min(runs, key=lambda r: r["seconds"])
        bare_rate = bare["rows"] / bare["seconds"]
        bare_text.append(
            f"bare {variant} {bare['seconds']:.2f} s = {bare_rate:,.0f} rows/s"
            f" (ratio {rate / bare_rate:.2f}, peak RSS {max(r['rss_mb'] for r in runs):.0f} MB)"
        )
    print(
        f"export {exp['rows']:,} rows ({size:.0f} MB, header {head!r}): {exp['seconds']:.2f} s ="
        f" {rate:,.0f} rows/s | peak RSS export {rss:.0f} MB | " + " | ".join(bare_text),
        flush=True,
    )
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
