"""Throwaway databases for the customer benchmarks (never the development database).

SQLite: a fresh file in a temporary OKURU_DATA_DIR. PostgreSQL (when DATABASE_URL names one): a
fresh database ``okuru_bench_io`` on the same server, dropped and created for the run.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
# OKURU_BENCH_DB names another database, so that two people can run benchmarks on one server.
PG_NAME = os.environ.get("OKURU_BENCH_DB", "okuru_bench_io")


def bench_url(tmp: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=f"/{PG_NAME}"))
    return f"sqlite:///{tmp}/bench.sqlite3"


def create_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}")
        conn.execute(f"CREATE DATABASE {PG_NAME}")


def use(url: str, tmp: str) -> None:
    """Point Django at the benchmark database (call before django.setup())."""
    os.environ["DATABASE_URL"] = url
    os.environ["OKURU_DATA_DIR"] = tmp
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "okuru.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare(tmp: str | None = None) -> tuple[str, str]:
    """A fresh migrated database; returns (url, data dir)."""
    tmp = tmp or tempfile.mkdtemp(prefix="okuru-bench-io-")
    url = bench_url(tmp)
    create_database(url)
    use(url, tmp)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url, tmp


def fresh_copy(url: str, tmp: str) -> str:
    """A copy of the seeded database, for one timed run: every run, the import's and the bare
    limit's, starts from the same state (the same table size, no dead rows, no free space in
    the pages). Call with no connection open to the seeded database."""
    if url.startswith("postgres"):
        import psycopg

        admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}_run")
            # FILE_COPY (PostgreSQL 15's default is WAL_LOG) copies the files between two
            # checkpoints instead of writing the whole database into the WAL: each run starts
            # with the WAL just checkpointed, so when a checkpoint falls during a run (and
            # the full-page images after it) no longer depends on the runs before.
            strategy = " STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f"CREATE DATABASE {PG_NAME}_run TEMPLATE {PG_NAME}{strategy}")
        return urlunsplit(urlsplit(url)._replace(path=f"/{PG_NAME}_run"))
    source = Path(tmp) / "bench.sqlite3"
    target = Path(tmp) / "run.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


def finish(url: str, tmp: str) -> None:
    """Remove the run's database and data directory."""
    from django.db import connections

    connections.close_all()
    shutil.rmtree(tmp, ignore_errors=True)
    if url.startswith("postgres"):
        import psycopg

        admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}_run")
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}")


def seed(n: int, with_note: bool = True) -> None:
    """n customers with an e-mail address and a few user fields, fast (raw bulk SQL)."""
    import json

    from django.db import connection, transaction

    from okuru.customers import design

    if with_note:
        design.add_field("note", "Note", "text")
        design.add_field("plan", "Plan", "select", choices=["free", "pro"])
        design.add_field("points", "Points", "number")
    now = "2026-01-01 00:00:00"
    step = 50_000
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        cur = raw.cursor()
        for start in range(0, n, step):
            rows = [
                (
                    f"user{i}@example{i % 50}.com",
                    json.dumps(
                        {
                            "note": f"seed {i}",
                            "plan": "pro" if i % 3 else "free",
                            "points": i % 1000,
                        }
                    ),
                )
                for i in range(start, min(n, start + step))
            ]
            if connection.vendor == "postgresql":
                with cur.copy(
                    "COPY customers_customer (email, mobile_email, refused, email_error_count,"
                    " mobile_error_count, unsubscribed, data, created_at, updated_at) FROM STDIN"
                ) as copy:
                    for email, data in rows:
                        copy.write_row(
                            (email, "", False, 0, 0, "[]", data, now + "+00", now + "+00")
                        )
            else:
                cur.executemany(
                    "INSERT INTO customers_customer (email, mobile_email, refused,"
                    " email_error_count, mobile_error_count, unsubscribed, data, created_at,"
                    " updated_at) VALUES (?, '', 0, 0, 0, '[]', ?, ?, ?)",
                    [(e, d, now, now) for e, d in rows],
                )
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute("VACUUM ANALYZE customers_customer")
    else:
        with connection.cursor() as c:
            c.execute("ANALYZE")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def prepare_seeded(rows: int) -> tuple[str, str]:
    """A throwaway benchmark database holding ``rows`` customers; prints the seeding time."""
    import time

    url, tmp = prepare()
    from django.db import connection

    vendor = connection.vendor
    t = time.perf_counter()
    seed(rows)
    connection.close()
    print(f"{vendor}: seeded {rows:,} customers in {time.perf_counter() - t:.1f} s")
    return url, tmp


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
