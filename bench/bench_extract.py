"""Extraction benchmark (use of measurement results, route 4): "not opened" of one source
delivery of N recipients, frozen into a list (target < 5 s at 1,000,000 on SQLite).

    .venv/bin/python bench/bench_extract.py [--rows 1000000] [--repeat 2]

SQLite by default (a fresh file in a temporary directory); with ``DATABASE_URL=postgres://...``
a fresh PostgreSQL database ``okuru_bench_io``. N customers, one delivery whose ledger holds all
of them: 30 % opened, 2 % failed, the rest sent and not opened. Each timed run is a child
process (fork) on the same database, the list of the previous run dropped first:

* **extraction**: ``start_extraction`` + the job (``jobs.run``), as ``okuru extractions create``
  runs it: check, chunked ``INSERT … SELECT`` with progress, the ready record;
* **bare limit**: one ``INSERT INTO mailings_frozenlistmember SELECT`` of the same ids straight
  from the ledger (no view, no customers join, no grouping, no chunks).

Printed: the time of each (best of ``--repeat``), their ratio, and the peak RSS of the child that
ran the extraction (``ru_maxrss``): flat, whatever N, since no id passes through Python.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import customers_db  # noqa: E402


def seed_delivery() -> tuple[int, int]:
    """A completed delivery to every customer (ledger by INSERT … SELECT); (delivery, view)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from okuru.customers.models import View
    from okuru.mailings.models import Delivery, Mail

    mail = Mail.objects.create(
        name="Bench", from_address="news@shop.example", subject="s", text_body="t"
    )
    delivery = Delivery.objects.create(
        mail=mail, status="completed", started_at=timezone.now() - timezone.timedelta(days=1)
    )
    view = View.objects.create(
        name="Bench view", fields=["email", "email_error_count", "refused", "unsubscribed"]
    )
    opened = "'2026-01-02 00:00:00'"
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO mailings_recipient (delivery_id, customer_id, address, status, attempts,"
            " claim, smtp_reply, error_kind, exclusion, note, message_id, open_count,"
            " click_count, first_open_at)"
            " SELECT %s, id, email,"
            " CASE WHEN id % 50 = 0 THEN 'failed' ELSE 'sent' END, 1, '', '',"
            " CASE WHEN id % 50 = 0 THEN 'unknown_user' ELSE '' END, '', '', '',"
            " CASE WHEN id % 10 < 3 AND id % 50 <> 0 THEN 1 ELSE 0 END, 0,"
            f" CASE WHEN id % 10 < 3 AND id % 50 <> 0 THEN {opened} ELSE NULL END"
            " FROM customers_customer ORDER BY id",
            [delivery.pk],
        )
    with connection.cursor() as cur:
        cur.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE")
    return delivery.pk, view.pk


def _reset() -> None:
    from okuru.mailings.models import Extraction, FrozenList, FrozenListMember

    FrozenListMember.objects.all().delete()
    Extraction.objects.all().delete()
    FrozenList.objects.all().delete()


def _extraction(delivery_id: int, view_id: int) -> tuple[float, int]:
    from okuru.accounts import jobs
    from okuru.mailings import extraction

    start = time.perf_counter()
    choice = extraction.check([delivery_id], view_id, ["not_opened"])
    e = extraction.start_extraction(choice, None, enqueue=False)
    jobs.run(e.job_id)
    e.refresh_from_db()
    assert e.status == "ready", e.error
    return time.perf_counter() - start, e.count


def _bare(delivery_id: int, view_id: int) -> tuple[float, int]:
    from django.db import connection, transaction

    from okuru.mailings.models import FrozenList

    start = time.perf_counter()
    with transaction.atomic():
        frozen = FrozenList.objects.create(name="bare")
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO mailings_frozenlistmember (list_id, customer_id) SELECT %s,"
                " customer_id FROM mailings_recipient WHERE delivery_id = %s"
                " AND status = 'sent' AND first_open_at IS NULL",
                [frozen.pk, delivery_id],
            )
            n = cur.rowcount
    return time.perf_counter() - start, n


def _child(fn_name: str, args: tuple, out: multiprocessing.Queue) -> None:
    from django.db import connections

    connections.close_all()  # the parent's connection must not be shared
    _reset()
    seconds, n = {"extraction": _extraction, "bare": _bare}[fn_name](*args)
    out.put((seconds, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def timed(fn_name: str, args: tuple) -> tuple[float, int, float]:
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn_name, args, out))
    p.start()
    result = out.get()
    p.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    url, tmp = customers_db.prepare()
    from django.db import connection

    t = time.perf_counter()
    customers_db.seed(args.rows, with_note=False)
    ids = seed_delivery()
    vendor = connection.vendor
    print(f"{vendor}: seeded {args.rows:,} customers and their ledger in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    runs: dict[str, list[tuple[float, int, float]]] = {"extraction": [], "bare": []}
    for _ in range(args.repeat):
        for name in ("extraction", "bare"):  # alternating: load changes hit both alike
            runs[name].append(timed(name, ids))
    ext = min(runs["extraction"])
    bare = min(runs["bare"])
    assert ext[1] == bare[1], (ext[1], bare[1])
    print(f"extraction of 'not opened': {ext[1]:,} customers in {ext[0]:.2f} s "
          f"({ext[1] / ext[0]:,.0f} rows/s), peak RSS {ext[2]:.0f} MB  (target < 5 s)")  # fmt: skip
    print(f"bare INSERT … SELECT of the same ids: {bare[0]:.2f} s, peak RSS {bare[2]:.0f} MB")
    print(f"ratio extraction / bare: {ext[0] / bare[0]:.2f}")
    print("all runs (s): " + ", ".join(f"{k} {v[0]:.2f}" for k in runs for v in runs[k]))
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
