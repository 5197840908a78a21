"""Recipient and event exports, and the 配信フラグ CSV round trip users rely on."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone, translation

from okuru.customers import filters, importer
from okuru.customers.models import Customer, Field
from okuru.mailings import reports
from okuru.mailings.ledger import refresh_counts
from okuru.mailings.models import Recipient, TrackedLink
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.fixture
def delivery():
    Field.objects.create(key="name", label="Name", type="text")
    d = sent_delivery(4)
    rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    names = ['=HYPERLINK("http://evil")', "Sato", "+81 3", "Ito"]
    for row, name in zip(rows, names, strict=True):
        Customer.objects.filter(pk=row.customer_id).update(data={"name": name})
    Recipient.objects.filter(pk=rows[3].pk).update(
        status="failed", error_kind="unknown_user", sent_at=None, claimed_at=timezone.now()
    )
    refresh_counts(d.pk)
    d.refresh_from_db()
    d.rows = rows
    return d


def read(chunks) -> list[list[str]]:
    data = b"".join(chunks)
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, as the customers export writes
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_recipient_export_has_customer_id_and_chosen_fields_neutralised(delivery):
    rows = read(reports.iter_recipient_export(delivery, "sent", ["email", "name"]))
    assert rows[0] == ["Customer ID", "PC e-mail", "Name"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == [r.customer_id for r in delivery.rows[:3]]
    assert body[0][1] == delivery.rows[0].address
    assert body[0][2] == '\'=HYPERLINK("http://evil")'  # a formula is neutralised
    assert body[2][2] == "'+81 3"


def test_recipient_export_of_the_errors_count(delivery):
    rows = read(reports.iter_recipient_export(delivery, "errors", []))
    assert rows == [["Customer ID"], [str(delivery.rows[3].customer_id)]]


def test_recipient_export_leaves_out_deleted_customers(delivery):
    Customer.objects.filter(pk=delivery.rows[0].customer_id).delete()
    rows = read(reports.iter_recipient_export(delivery, "sent", []))
    assert [r[0] for r in rows[1:]] == [str(r.customer_id) for r in delivery.rows[1:3]]


def test_recipient_export_refuses_bad_requests_before_streaming(delivery):
    with pytest.raises(reports.ReportError, match="Unknown field: nope"):
        reports.iter_recipient_export(delivery, "sent", ["nope"])
    with pytest.raises(reports.ReportError, match="Unknown encoding latin1: use utf-8 or cp932."):
        reports.iter_recipient_export(delivery, "sent", [], "latin1")
    with pytest.raises(reports.ReportError, match="Unknown count: everyone"):
        reports.iter_recipient_export(delivery, "everyone", [])


def test_recipient_export_in_cp932(delivery):
    Customer.objects.filter(pk=delivery.rows[1].customer_id).update(data={"name": "佐藤"})
    data = b"".join(reports.iter_recipient_export(delivery, "sent", ["name"], "cp932"))
    assert "佐藤".encode("cp932") in data


def test_event_export_has_one_row_per_event(delivery):
    d = delivery
    link = TrackedLink.objects.get(mail=d.mail)
    link.name = "sale"
    link.save()
    t = [r.pk for r in d.rows]
    recording.record_open(t[0])
    recording.record_click(t[0], link.pk)
    recording.record_click(t[1], link.pk)
    rows = read(reports.iter_event_export(d))
    assert rows[0] == ["Customer ID", "Event", "Time"]
    got = [(int(r[0]), r[1]) for r in rows[1:]]
    c = [r.customer_id for r in d.rows]
    assert got == [
        (c[0], "sent"),
        (c[0], "open"),
        (c[0], "click:sale"),
        (c[1], "sent"),
        (c[1], "open"),  # implied by the click
        (c[1], "click:sale"),
        (c[2], "sent"),
        (c[3], "error:unknown_user"),
    ]
    assert all(len(r[2]) == 19 for r in rows[1:])  # YYYY-MM-DD HH:MM:SS


def test_event_export_names_unnamed_links_by_url(delivery):
    link = TrackedLink.objects.get(mail=delivery.mail)
    recording.record_click(delivery.rows[2].pk, link.pk)
    rows = read(reports.iter_event_export(delivery))
    assert [delivery.rows[2].customer_id, "click:https://shop.example/sale"] in [
        [int(r[0]), r[1]] for r in rows[1:]
    ]


def test_event_export_walks_recipients_in_chunks(delivery, monkeypatch):
    monkeypatch.setattr(reports, "EXPORT_CHUNK", 1)
    rows = read(reports.iter_event_export(delivery))
    assert len(rows) == 1 + 4


def test_flag_route_round_trip(delivery, tmp_path):
    """Route 2/3: export the sent count's recipients (Customer ID only), add a 配信フラグ
    column, import it "update existing only" keyed on Customer ID, filter "has a value"."""
    Field.objects.create(key="delivery_flag", label="配信フラグ", type="text")
    rows = read(reports.iter_recipient_export(delivery, "sent", []))
    rows[0].append("配信フラグ")
    for row in rows[1:]:
        row.append("1")
    path = tmp_path / "flag.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    result = importer.run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected, result.inserted) == (3, 0, 0)
    tree = {"match": "all", "conditions": [{"field": "delivery_flag", "op": "has_value"}]}
    flagged = sorted(filters.filtered(tree).values_list("id", flat=True))
    assert flagged == sorted(
        reports.recipients(delivery, "sent").values_list("customer_id", flat=True)
    )
    assert filters.count(tree) == delivery.sent_count == 3
    # The other columns came back unchanged.
    assert Customer.objects.get(pk=delivery.rows[0].customer_id).data["name"] == (
        '=HYPERLINK("http://evil")'
    )


def test_flag_route_with_chosen_fields_round_trips_unchanged(delivery, tmp_path):
    before = {c.pk: (c.email, c.data) for c in Customer.objects.all()}
    data = b"".join(reports.iter_recipient_export(delivery, "all", ["email", "name"]))
    path = tmp_path / "same.csv"
    path.write_bytes(data)
    result = importer.run_import(path, mode="update", key="customer_id")
    assert result.rejected == 0 and result.updated == 4
    assert {c.pk: (c.email, c.data) for c in Customer.objects.all()} == before


def test_a_count_is_a_customers_filter_condition(delivery):
    tree = {"match": "all", "conditions": [reports.count_filter(delivery, "errors")]}
    assert list(filters.filtered(tree).values_list("id", flat=True)) == [
        delivery.rows[3].customer_id
    ]
    bad = {"match": "all", "conditions": [{"kind": "delivery_count", "delivery": 0}]}
    with pytest.raises(filters.FilterError, match="No such delivery: 0"):
        filters.count(bad)
