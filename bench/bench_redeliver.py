"""Re-deliver preview and resend benchmark: a source delivery of N recipients (target at
1,000,000 on SQLite: preview counts < 1 s, a resend's draft < 0.2 s).

    .venv/bin/python bench/bench_redeliver.py [--rows 1000000]

The database is seeded like the other benchmarks (``customers_db``), then a completed delivery
to every customer is written straight into the ledger: all sent, one in five opened, one in
twenty clicked, one in a hundred failed. Each audience's preview (``redeliver_preview``: the
audience's counts, every exclusion reason, after the duplicate rule) is timed three times, and
so is a resend (``redelivery.resend``). The bare limit, measured in the same run, is one
``SELECT COUNT(*)`` over the source's ledger rows — the least any count of them can cost.
A second delivery re-delivering to the non-openers makes a chain of two, whose preview
also reads the first delivery's rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import customers_db  # noqa: E402

AUDIENCES = ["all", "opened", "not_opened", "clicked", "not_clicked", "errored", "not_reached"]


def fill_ledger(delivery_id: int, where: str = "1 = 1") -> None:
    """Every customer (matching ``where``) as a sent row; some opened, clicked or failed."""
    from django.db import connection, transaction

    now = "'2026-01-01 00:00:00'"
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO mailings_recipient (delivery_id, customer_id, address, status, "
            "attempts, claim, smtp_reply, error_kind, exclusion, note, message_id, sent_at, "
            "first_open_at, open_count, first_click_at, click_count) "
            f"SELECT %s, c.id, c.email, CASE WHEN c.id % 100 = 7 THEN 'failed' ELSE 'sent' END, "
            "1, '', '', CASE WHEN c.id % 100 = 7 THEN 'mailbox_full' ELSE '' END, '', '', '', "
            f"{now}, CASE WHEN c.id % 5 = 0 THEN {now} END, CASE WHEN c.id % 5 = 0 THEN 1 ELSE 0 "
            f"END, CASE WHEN c.id % 20 = 0 THEN {now} END, CASE WHEN c.id % 20 = 0 THEN 1 "
            f"ELSE 0 END FROM customers_customer c WHERE {where} ORDER BY c.id",
            [delivery_id],
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute("VACUUM ANALYZE mailings_recipient")
    else:
        with connection.cursor() as c:
            c.execute("ANALYZE")


def make_source():
    from django.utils import timezone

    from okuru.mailings import actions, targeting
    from okuru.mailings.models import Delivery, Mail

    mail = actions.save_mail(
        Mail(
            name="Bench source",
            from_address="news@shop.example",
            subject="Hello {{ customer_id }}",
            text_body="Hi https://shop.example/sale",
        ),
        None,
    )
    return Delivery.objects.create(
        mail=mail,
        status=Delivery.Status.COMPLETED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        content=actions.content_snapshot(mail),
        targeting=targeting.snapshot(mail),
    )


def best_of(fn, runs: int = 3) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), max(times), result


def bare_count(delivery_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM mailings_recipient WHERE delivery_id = %s", [delivery_id])
        return cur.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    url, tmp = customers_db.prepare()
    from django.db import connection
    from django.utils import timezone

    from okuru.mailings import redelivery
    from okuru.mailings.models import Delivery, Mail

    t = time.perf_counter()
    customers_db.seed(args.rows, with_note=False)
    source = make_source()
    fill_ledger(source.pk)
    print(
        f"{connection.vendor}: seeded {args.rows:,} customers and a delivery to all of them "
        f"in {time.perf_counter() - t:.1f} s"
    )
    bare, _worst, n = best_of(lambda: bare_count(source.pk))
    print(f"bare limit: SELECT COUNT(*) of the {n:,} ledger rows: {bare:.3f} s")
    slowest = 0.0
    for audience in AUDIENCES:
        best, worst, counts = best_of(lambda a=audience: redelivery.redeliver_preview(source, a))
        slowest = max(slowest, worst)
        print(
            f"preview {audience:12} matched {counts['matched']:>9,} → "
            f"{counts['after_duplicates']:>9,}: best {best:.3f} s, worst {worst:.3f} s, "
            f"{best / bare:.1f}× bare"
        )
    print(f"slowest preview: {slowest:.3f} s (target < 1 s)")

    # A chain of two: a re-delivery of the non-openers (its ledger written like the source's).
    child_mail = Mail.objects.create(
        name="Bench re-delivery",
        from_address="news@shop.example",
        subject="Again",
        text_body="Again",
        resend_of=source.mail,
        resend_of_delivery=source,
        resend_audience="not_opened",
        audience={"delivery": source.pk, "audience": "not_opened", "link": None},
    )
    child = Delivery.objects.create(
        mail=child_mail,
        status=Delivery.Status.COMPLETED,
        started_at=timezone.now(),
        content=source.content,
        targeting=source.targeting,
    )
    fill_ledger(child.pk, "c.id % 5 <> 0 AND c.id % 100 <> 7")
    best, worst, counts = best_of(lambda: redelivery.redeliver_preview(child, "not_opened"))
    print(
        f"preview not_opened over a chain of 2 ({counts['matched']:,} recipients): "
        f"best {best:.3f} s, worst {worst:.3f} s, {best / bare:.1f}× bare"
    )

    best, worst, mail = best_of(lambda: redelivery.resend(source, None))
    print(
        f"resend (new draft): best {best:.4f} s, worst {worst:.4f} s (target < 0.2 s), "
        f"{best / bare:.2f}× bare"
    )
    print(f"peak RSS {customers_db.peak_rss_mb():.0f} MB")
    customers_db.finish(url, tmp)


if __name__ == "__main__":
    main()
