"""Report counts, drill-downs, the source window, the chart and the purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from okuru.mailings import reports
from okuru.mailings.models import Delivery, Event, Recipient, TrackedLink
from okuru.tracking import recording
from okuru.tracking.models import ReportArchive
from okuru.tracking.testing import sent_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


HTML = '<a href="https://shop.example/sale">Sale</a> <a href="https://shop.example/new">New</a>'


@pytest.fixture
def delivery():
    """6 recipients: 0 opens only, 1 clicks sale twice, 2 clicks new (implied open), 3 failed
    unknown_user, 4 unknown, 5 sent and idle."""
    d = sent_delivery(6, html_body=HTML)
    rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    sale = TrackedLink.objects.get(mail=d.mail, url="https://shop.example/sale")
    new = TrackedLink.objects.get(mail=d.mail, url="https://shop.example/new")
    new.name = "new arrivals"
    new.save()
    t = [r.pk for r in rows]
    recording.record_open(t[0])
    recording.record_open(t[0])
    recording.record_click(t[1], sale.pk)
    recording.record_click(t[1], sale.pk)
    recording.record_click(t[2], new.pk)
    Recipient.objects.filter(pk=rows[3].pk).update(
        status="failed", error_kind="unknown_user", sent_at=None
    )
    Recipient.objects.filter(pk=rows[4].pk).update(status="unknown", sent_at=None)
    from okuru.mailings.sending import refresh_counts

    refresh_counts(d.pk)
    d.refresh_from_db()
    d.rows, d.sale, d.new = rows, sale, new
    return d


def customers(d, count):
    return sorted(reports.recipients(d, count).values_list("customer_id", flat=True))


def ids(d, *indexes):
    return sorted(d.rows[i].customer_id for i in indexes)


def test_counts_drill_down_to_the_right_recipients(delivery):
    d = delivery
    assert customers(d, "all") == ids(d, 0, 1, 2, 3, 4, 5)
    assert customers(d, "sent") == ids(d, 0, 1, 2, 5)
    assert customers(d, "errors") == ids(d, 3)
    assert customers(d, "error:unknown_user") == ids(d, 3)
    assert customers(d, "error:spam") == []
    assert customers(d, "unknown") == ids(d, 4)
    assert customers(d, "opened") == ids(d, 0, 1, 2)
    assert customers(d, "not_opened") == ids(d, 5)
    assert customers(d, "clicked") == ids(d, 1, 2)
    assert customers(d, "not_clicked") == ids(d, 0, 5)
    assert customers(d, f"clicked:{d.sale.pk}") == ids(d, 1)
    assert customers(d, f"clicked:{d.new.pk}") == ids(d, 2)


def test_unknown_counts_and_foreign_links_are_refused(delivery):
    other = sent_delivery(1, domain="other.example")
    foreign = TrackedLink.objects.filter(mail=other.mail).first()
    with pytest.raises(reports.ReportError, match="Unknown count: bogus"):
        reports.recipients(delivery, "bogus")
    with pytest.raises(reports.ReportError, match="Unknown count: error:nonsense"):
        reports.recipients(delivery, "error:nonsense")
    with pytest.raises(
        reports.ReportError, match=f"This delivery's mail has no link {foreign.pk}."
    ):
        reports.recipients(delivery, f"clicked:{foreign.pk}")


def test_summary_has_unique_and_total_opens_and_clicks_per_link(delivery):
    s = reports.summary(delivery)
    assert (s["sent"], s["failed"], s["unknown"]) == (4, 1, 1)
    assert s["errors_by_kind"] == [("unknown_user", "Unknown user", 1)]
    assert (s["open_unique"], s["open_total"]) == (3, 4)  # two opens + two implied by clicks
    assert s["open_rate"] == 75.0
    assert (s["click_unique"], s["click_total"]) == (2, 3)
    links = {link.url: (link.name, link.unique, link.total) for link in s["links"]}
    assert links == {
        "https://shop.example/sale": ("", 1, 2),
        "https://shop.example/new": ("new arrivals", 1, 1),
    }
    assert s["selectable"] is True


def test_deliveries_older_than_three_months_are_not_selectable(delivery):
    assert reports.is_selectable_source(delivery)
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=95))
    delivery.refresh_from_db()
    assert not reports.is_selectable_source(delivery)
    never = Delivery(mail=delivery.mail, started_at=None)
    assert not reports.is_selectable_source(never)
    # The summary still shows.
    assert reports.summary(delivery)["sent"] == 4


def test_pages_walk_a_count_in_ledger_order(delivery, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 2)
    rows, after = reports.page(delivery, "all")
    seen = [r.pk for r in rows]
    while after:
        rows, after = reports.page(delivery, "all", after)
        seen += [r.pk for r in rows]
    assert seen == [r.pk for r in delivery.rows]


def test_series_and_chart(delivery):
    data = reports.series(delivery)
    assert data["unit"] == "hour"
    assert sum(p[1] for p in data["points"]) == 4
    assert sum(p[2] for p in data["points"]) == 3
    svg = reports.chart_svg(data)
    assert svg.startswith("<svg") and "<polyline" in svg and "<script" not in svg
    assert reports.chart_svg({"points": []}) == ""


def test_chart_switches_to_days_over_a_long_span(delivery):
    Event.objects.filter(pk=Event.objects.order_by("id").first().pk).update(
        created=timezone.now() - timedelta(days=5)
    )
    assert reports.series(delivery)["unit"] == "day"


def test_purge_keeps_the_summary_and_removes_detail(delivery, settings):
    settings.MAILINGS_RETENTION_DAYS = 122
    before = reports.summary_json(delivery)
    series = reports.series(delivery)
    Delivery.objects.filter(pk=delivery.pk).update(
        status="completed", started_at=timezone.now() - timedelta(days=130)
    )
    young = sent_delivery(2, domain="young.example")
    Delivery.objects.filter(pk=young.pk).update(status="completed")
    done = reports.purge_expired(batch=4)
    assert done == {"deliveries": 1, "rows": 6 + 7, "lists": 0}  # 6 ledger rows, 7 events
    assert not Recipient.objects.filter(delivery=delivery).exists()
    assert not Event.objects.filter(delivery=delivery).exists()
    assert Recipient.objects.filter(delivery=young).count() == 2
    delivery.refresh_from_db()
    after = reports.summary_json(delivery)
    assert after["purged"] is True
    for key in ("sent", "failed", "unknown", "errors_by_kind", "opens", "clicks", "links"):
        assert after[key] == before[key], key
    assert reports.series(delivery) == series
    assert ReportArchive.objects.get(delivery=delivery).purged_rows == 13
    # Nothing left to do the second time.
    assert reports.purge_expired() == {"deliveries": 0, "rows": 0, "lists": 0}


def test_purge_leaves_running_deliveries_alone(delivery):
    Delivery.objects.filter(pk=delivery.pk).update(
        status="running", started_at=timezone.now() - timedelta(days=300)
    )
    assert reports.purge_expired() == {"deliveries": 0, "rows": 0, "lists": 0}
    assert Recipient.objects.filter(delivery=delivery).count() == 6


def test_purge_runs_as_a_task(delivery):
    from okuru.tracking.tasks import purge_expired_detail

    Delivery.objects.filter(pk=delivery.pk).update(
        status="completed", started_at=timezone.now() - timedelta(days=200)
    )
    purge_expired_detail.enqueue()
    assert not Recipient.objects.filter(delivery=delivery).exists()


def test_opens_on_a_purged_delivery_record_nothing(delivery, client):
    from okuru.tracking.testing import urls_for

    row = delivery.rows[5]
    path = urls_for(row)["open"]
    Delivery.objects.filter(pk=delivery.pk).update(
        status="completed", started_at=timezone.now() - timedelta(days=200)
    )
    reports.purge_expired()
    assert client.get(path).status_code == 200
    delivery.refresh_from_db()
    assert delivery.open_total == 4


def test_series_fills_quiet_hours_with_zeros(delivery):
    noon = timezone.now().replace(minute=30, second=0, microsecond=0)
    Event.objects.update(created=noon)
    first = Event.objects.order_by("id").first()
    Event.objects.filter(pk=first.pk).update(created=noon - timedelta(hours=3))
    points = reports.series(delivery)["points"]
    assert len(points) == 4
    assert [p[1] + p[2] for p in points[1:3]] == [0, 0]
    assert sum(p[1] for p in points) == 4 and sum(p[2] for p in points) == 3
    assert reports.chart_svg({"unit": "hour", "points": points}).count("<circle") == 8


def test_rows_excluded_at_send_time_and_stopped_rows_have_counts(delivery):
    d = delivery
    Recipient.objects.filter(pk=d.rows[5].pk).update(
        status="excluded", exclusion="refused", sent_at=None
    )
    Recipient.objects.filter(pk=d.rows[4].pk).update(status="stopped")
    Delivery.objects.filter(pk=d.pk).update(excluded_at_send={"refused": 1}, stopped_count=1)
    d.refresh_from_db()
    assert customers(d, "excluded") == ids(d, 5)
    assert customers(d, "excluded:refused") == ids(d, 5)
    assert customers(d, "excluded:no_address") == []
    assert customers(d, "stopped") == ids(d, 4)
    assert reports.count_label(d, "excluded:refused") == "Excluded at send time: Refusal flag"
    s = reports.summary_json(d)
    assert s["excluded_at_send"] == {"refused": 1} and s["stopped"] == 1
