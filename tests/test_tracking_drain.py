"""The tracking inbox and its drain: batches give what one-by-one gives, a failed drain applies
nothing and loses nothing, drains never double count, the worker, the middleware's shortcut, and
reports that drain before they read."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from okuru.mailings import reports
from okuru.mailings.models import Delivery, Event, Recipient, TrackedLink
from okuru.tracking import recording
from okuru.tracking.management.commands.trackingworker import Drainer
from okuru.tracking.models import Hit
from okuru.tracking.testing import sent_delivery, urls_for

pytestmark = pytest.mark.django_db

HTML = '<a href="https://shop.example/sale">Sale</a> <a href="https://shop.example/new">New</a>'
T0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def setup_delivery(domain: str):
    d = sent_delivery(4, domain=domain, html_body=HTML)
    d.rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    d.links = list(TrackedLink.objects.filter(mail=d.mail).order_by("position", "id"))
    return d


def counters(d):
    d.refresh_from_db()
    return (d.open_unique, d.open_total, d.click_unique, d.click_total)


# Recipient index, link index (None: an open), seconds after T0. Recipient 0 opens then clicks;
# 1 clicks before its first open (an implied open, then the real one); 2 clicks both links
# twice; 3 only opens, three times.
PATTERN = [
    (0, None, 1),
    (1, 0, 2),
    (2, 0, 3),
    (0, 1, 4),
    (1, None, 5),
    (3, None, 6),
    (2, 1, 7),
    (3, None, 8),
    (2, 0, 9),
    (1, None, 10),
    (3, None, 11),
    (2, 1, 12),
]


def put(d, pattern):
    for row, link, seconds in pattern:
        Hit.objects.create(
            kind="o" if link is None else "c",
            recipient_id=d.rows[row].pk,
            link_id=None if link is None else d.links[link].pk,
            created=T0 + timedelta(seconds=seconds),
        )


def outcome(d):
    """Everything the drain writes, with ids and times made comparable across deliveries."""
    index = {r.pk: i for i, r in enumerate(d.rows)}
    links = {link.pk: i for i, link in enumerate(d.links)}

    def since(t):
        return None if t is None else (t - T0).total_seconds()

    rows = [
        (r.open_count, since(r.first_open_at), r.click_count, since(r.first_click_at))
        for r in Recipient.objects.filter(delivery=d).order_by("id")
    ]
    events = [
        (index[e.recipient_id], e.kind, links.get(e.link_id), e.detail, since(e.created))
        for e in Event.objects.filter(delivery=d).order_by("created", "id")
    ]
    return counters(d), rows, events


def test_a_batch_gives_what_applying_hits_one_by_one_gives():
    one_by_one, whole, small = (setup_delivery(f"{n}.example") for n in ("a", "b", "c"))
    for hit in PATTERN:
        put(one_by_one, [hit])
        assert recording.drain() == 1
    put(whole, PATTERN)
    assert recording.drain() == len(PATTERN)
    put(small, PATTERN)
    assert recording.drain(batch=5) == len(PATTERN)

    expected = outcome(one_by_one)
    assert outcome(whole) == expected
    assert outcome(small) == expected
    # Spelled out once: 4 recipients opened, 8 opens in all (6 pixels, and 2 implied by a
    # first click: recipient 1 clicked before its first pixel, 2 never fetched one); 3
    # recipients clicked, 6 clicks.
    assert expected[0] == (4, 8, 3, 6)
    assert expected[1] == [
        (1, 1.0, 1, 4.0),
        (3, 2.0, 1, 2.0),
        (1, 3.0, 4, 3.0),
        (3, 6.0, 0, None),
    ]
    implied = [e for e in expected[2] if e[3] == {"implied": True}]
    assert implied == [
        (1, "open", None, {"implied": True}, 2.0),
        (2, "open", None, {"implied": True}, 3.0),
    ]
    assert not Hit.objects.exists()


def test_an_implied_open_comes_before_its_click_in_the_event_export():
    d = setup_delivery("order.example")
    put(d, [(0, 0, 1)])
    recording.drain()
    events = list(Event.objects.filter(delivery=d).order_by("created", "id"))
    assert [(e.kind, e.detail) for e in events] == [("open", {"implied": True}), ("click", {})]
    assert events[0].created == events[1].created


def test_a_click_after_the_first_open_in_the_same_batch_implies_nothing():
    d = setup_delivery("after.example")
    put(d, [(0, None, 1), (0, 0, 2)])
    recording.drain()
    assert counters(d) == (1, 1, 1, 1)
    assert not Event.objects.filter(detail__has_key="implied").exists()


def break_the_drain(monkeypatch):
    """Make the drain fail after its first writes, inside its transaction."""
    if connection.vendor == "postgresql":
        broken = recording.PG_DRAIN_SQL.replace(
            "SELECT count(*) FROM hits", "SELECT count(*) / 0 FROM hits"
        )
        assert broken != recording.PG_DRAIN_SQL
        monkeypatch.setattr(recording, "PG_DRAIN_SQL", broken)
    else:
        statements = list(recording.SQLITE_DRAIN_SQL)
        statements.insert(2, "SELECT * FROM no_such_table WHERE id = %s")
        monkeypatch.setattr(recording, "SQLITE_DRAIN_SQL", statements)


def test_a_failed_drain_applies_nothing_and_keeps_every_hit(monkeypatch):
    d = setup_delivery("crash.example")
    put(d, PATTERN)
    before = outcome(d)
    break_the_drain(monkeypatch)

    with pytest.raises(DatabaseError):
        recording.drain()

    assert Hit.objects.count() == len(PATTERN)
    assert outcome(d) == before
    assert not Event.objects.exists()
    monkeypatch.undo()
    assert recording.drain() == len(PATTERN)
    assert counters(d) == (4, 8, 3, 6)
    assert Event.objects.filter(delivery=d).count() == len(PATTERN) + 2


def test_a_second_drain_applies_nothing_again():
    d = setup_delivery("twice.example")
    put(d, PATTERN)
    assert recording.drain() == len(PATTERN)
    after = outcome(d)
    assert recording.drain() == 0
    assert recording.drain_batch() == 0
    assert outcome(d) == after


def test_hits_of_a_link_deleted_since_are_applied_without_it():
    d = setup_delivery("gone.example")
    put(d, [(0, 1, 1)])
    TrackedLink.objects.filter(pk=d.links[1].pk).delete()
    assert recording.drain() == 1
    assert counters(d) == (1, 1, 1, 1)
    click = Event.objects.get(delivery=d, kind="click")
    assert click.link_id is None


@pytest.mark.django_db(transaction=True)
def test_drains_at_once_count_every_hit_once_and_every_first_once():
    if connection.vendor != "postgresql":
        pytest.skip("threads share one in-memory SQLite database here; SQLite drains take turns")
    d = setup_delivery("race.example")
    for _round in range(30):
        put(d, PATTERN)
    errors = []

    def drainer():
        try:
            while recording.drain_batch(batch=7):
                pass
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=drainer) for _i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert not Hit.objects.exists()
    assert counters(d) == (4, 30 * 6 + 2, 3, 30 * 6)
    assert Event.objects.filter(delivery=d).count() == 30 * len(PATTERN) + 2
    assert Recipient.objects.get(pk=d.rows[1].pk).open_count == 30 * 2 + 1


# ---------------------------------------------------------------------------------------------
# The worker and the periodic task


def test_trackingworker_once_applies_the_inbox_and_exits():
    d = setup_delivery("worker.example")
    put(d, PATTERN)
    call_command("trackingworker", "--once", "--batch", "5", stdout=StringIO())
    assert not Hit.objects.exists()
    assert counters(d) == (4, 8, 3, 6)


def test_the_worker_logs_a_failed_batch_and_keeps_it(monkeypatch, caplog):
    d = setup_delivery("worker-fails.example")
    put(d, PATTERN)
    break_the_drain(monkeypatch)
    with caplog.at_level(logging.ERROR):
        assert Drainer().step() is False
    assert "could not apply tracked opens and clicks" in caplog.text
    assert Hit.objects.count() == len(PATTERN)
    assert counters(d) == (0, 0, 0, 0)


def test_the_worker_goes_on_at_once_after_a_full_batch():
    d = setup_delivery("full.example")
    put(d, PATTERN)
    drainer = Drainer(batch=len(PATTERN))
    assert drainer.step() is True  # full: there may be more
    assert drainer.step() is False  # empty
    assert counters(d) == (4, 8, 3, 6)


def test_the_periodic_task_drains():
    from okuru.tracking import tasks

    d = setup_delivery("periodic.example")
    put(d, PATTERN)
    tasks.drain_every_minute.call_local()
    assert counters(d) == (4, 8, 3, 6)


# ---------------------------------------------------------------------------------------------
# Reports read current counts


def test_a_report_applies_what_is_still_in_the_inbox():
    d = setup_delivery("report.example")
    recording.note_open(d.rows[0].pk)
    recording.note_click(d.rows[1].pk, d.links[0].pk)
    stale = Delivery.objects.get(pk=d.pk)

    s = reports.summary(stale)

    assert (s["open_unique"], s["open_total"], s["click_unique"], s["click_total"]) == (2, 2, 1, 1)
    assert stale.open_unique == 2  # the caller's object is current too
    assert not Hit.objects.exists()


def test_a_report_still_answers_when_the_drain_fails(monkeypatch, caplog):
    d = setup_delivery("report-fails.example")
    recording.note_open(d.rows[0].pk)
    break_the_drain(monkeypatch)
    with caplog.at_level(logging.ERROR):
        s = reports.summary(Delivery.objects.get(pk=d.pk))
    assert s["open_total"] == 0
    assert "could not apply tracked opens and clicks" in caplog.text
    assert Hit.objects.count() == 1


def test_drill_downs_and_event_exports_see_hits_not_yet_applied():
    d = setup_delivery("drill.example")
    recording.note_click(d.rows[2].pk, d.links[0].pk)
    rows, _next = reports.page(d, "clicked")
    assert [r.pk for r in rows] == [d.rows[2].pk]
    recording.note_open(d.rows[3].pk)
    labels = [row[1] for row in reports.iter_event_rows(d)]
    assert labels.count("open") == 2 and labels.count("click:https://shop.example/sale") == 1


# ---------------------------------------------------------------------------------------------
# The endpoints: the middleware's shortcut, the views without it, failures


def test_the_shortcut_answers_the_pixel_and_a_click_without_the_other_middleware(client):
    d = setup_delivery("fast.example")
    urls = urls_for(d.rows[0])
    pixel = client.get(urls["open"], HTTP_ACCEPT_LANGUAGE="en")
    click = client.get(urls["click:https://shop.example/sale"], HTTP_ACCEPT_LANGUAGE="en")
    bad = client.get("/t/c/forged.token", HTTP_ACCEPT_LANGUAGE="en")

    assert pixel.status_code == 200 and click.status_code == 302
    # LocaleMiddleware (and the rest) never ran for these two...
    assert "Content-Language" not in pixel and "Content-Language" not in click
    # ...but did for the click it could not redirect: its page is in the visitor's language.
    assert bad.status_code == 404 and bad["Content-Language"] == "en"
    assert Hit.objects.count() == 2


def test_the_views_note_hits_when_the_shortcut_is_not_installed(client, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "tracking" not in m]
    d = setup_delivery("slow.example")
    urls = urls_for(d.rows[0])
    assert client.get(urls["open"]).status_code == 200
    r = client.get(urls["click:https://shop.example/sale"])
    assert r.status_code == 302 and r["Location"] == "https://shop.example/sale"
    assert r["Content-Language"]  # the whole stack ran
    recording.drain()
    assert counters(d) == (1, 1, 1, 1)


def test_a_damaged_pixel_path_gets_the_image_and_records_nothing(client):
    # A token damaged on the way (a slash, a lost name) is not an open, but a mail client
    # still gets its image rather than a broken one.
    d = setup_delivery("paths.example")
    token = urls_for(d.rows[0])["open"].removeprefix("/t/o/")
    assert client.get(f"/t/o/x/{token}")["Content-Type"] == "image/gif"
    assert client.get("/t/o/.gif")["Content-Type"] == "image/gif"
    assert not Hit.objects.exists()


def test_a_failed_inbox_write_is_logged_and_the_pixel_and_redirect_still_answer(
    client, monkeypatch, caplog
):
    d = setup_delivery("broken.example")
    urls = urls_for(d.rows[0])
    bad = recording.NOTE_SQL.replace("tracking_hit", "no_such_table")
    monkeypatch.setattr(recording, "NOTE_SQL", bad)
    monkeypatch.setattr(
        recording, "PG_NOTE_SQL", recording.PG_NOTE_SQL.replace("tracking_hit", "no_such_table")
    )
    with caplog.at_level(logging.ERROR):
        pixel = client.get(urls["open"])
        if connection.vendor == "postgresql":
            return  # the failed INSERT aborted the test's transaction; see the test below
        click = client.get(urls["click:https://shop.example/sale"])
    assert pixel.status_code == 200 and pixel["Content-Type"] == "image/gif"
    assert click.status_code == 302 and click["Location"] == "https://shop.example/sale"
    assert "could not record an open" in caplog.text
    assert "could not record a click" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_failed_note_leaves_the_connection_usable(monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own transaction for each note")
    d = setup_delivery("pg-broken.example")
    urls = urls_for(d.rows[0])
    client = Client()
    good = recording.PG_NOTE_SQL
    monkeypatch.setattr(recording, "PG_NOTE_SQL", good.replace("tracking_hit", "no_such_table"))
    with caplog.at_level(logging.ERROR):
        assert client.get(urls["open"]).status_code == 200
        r = client.get(urls["click:https://shop.example/sale"])
    assert r.status_code == 302
    assert "could not record an open" in caplog.text
    assert "could not record a click" in caplog.text

    monkeypatch.setattr(recording, "PG_NOTE_SQL", good)
    assert client.get(urls["open"]).status_code == 200
    assert Hit.objects.count() == 1  # committed on its own, the failed ones left nothing
    recording.drain()
    assert counters(d) == (1, 1, 0, 0)


def test_on_sqlite_tracking_writers_in_other_processes_wait_for_the_lock_file(
    tmp_path, monkeypatch
):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's one writer at a time")
    import subprocess
    import sys

    db = tmp_path / "okuru.sqlite3"
    monkeypatch.setitem(connection.settings_dict, "NAME", str(db))
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    print('held')\n"
        "else:\n"
        "    print('free')\n"
    )

    def other_process_sees() -> str:
        lock = f"{db}.tracking-lock"
        out = subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True)
        return out.stdout.strip()

    with recording._sqlite_writer():
        assert other_process_sees() == "held"
    assert other_process_sees() == "free"
