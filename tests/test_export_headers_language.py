"""Every export's header is in the operator's language, and what a Japanese export writes, the
import reads back (its headers are aliases of the fields)."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import translation

from okuru.customers import exporter, importer
from okuru.customers.models import Customer, Field
from okuru.mailings import reports
from okuru.tracking.testing import sent_delivery

pytestmark = pytest.mark.django_db


def read(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))


@pytest.fixture
def delivery():
    Field.objects.create(key="flag", label="配信フラグ", type="text")
    return sent_delivery(3)


@pytest.mark.parametrize(
    "language, header",
    [("ja", ["顧客ID", "イベント", "日時"]), ("en", ["Customer ID", "Event", "Time"])],
)
def test_the_event_export_header_is_in_the_operators_language(delivery, language, header):
    with translation.override(language):
        rows = read(reports.iter_event_export(delivery))
    assert rows[0] == header
    assert len(rows) == 4


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_recipient_export_in_either_language_imports_back(delivery, tmp_path, language):
    with translation.override(language):
        rows = read(reports.iter_recipient_export(delivery, "sent", ["email", "flag"]))
    assert rows[0][0] == {"ja": "顧客ID", "en": "Customer ID"}[language]
    path = tmp_path / "flags.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0])
        w.writerows([r[0], r[1], "1"] for r in rows[1:])
    # The import runs in the other language: the header still means the same fields.
    with translation.override("en" if language == "ja" else "ja"):
        result = importer.run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected) == (3, 0)
    assert [d["flag"] for d in Customer.objects.values_list("data", flat=True)] == ["1"] * 3


def test_a_customer_export_in_japanese_names_standard_columns_in_japanese(delivery):
    specs = exporter.catalogue()
    with translation.override("ja"):
        header = exporter.headers([specs["customer_id"], specs["email"], specs["refused"]], specs)
    assert header[0] == "顧客ID"
    assert all(not h.isascii() for h in header), header
