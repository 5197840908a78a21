"""Every cell is checked against what the databases can hold: a bad one rejects its row with
the row, the column and the reason, and every other row is stored exactly."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.customers import design
from okuru.customers.importer import RowError, run_import
from okuru.customers.models import Customer

pytestmark = pytest.mark.django_db
HEADER = ["Customer ID", "PC e-mail", "PC e-mail error count", "Note", "Code", "Age", "Seen"]
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def fields(db):
    design.add_field("note", "Note", "text")
    design.add_field("code", "Code", "text", unique=True)
    design.add_field("age", "Age", "number")
    design.add_field("seen", "Seen", "datetime")


# --- good values and what is stored for them ------------------------------------------------

good_email = st.from_regex(
    r"[a-z0-9_+-]{1,12}(\.[a-z0-9]{1,6})?@[a-z0-9]{1,10}(-[a-z0-9]{1,5})?\.(com|co\.jp|example)",
    fullmatch=True,
)
good_count = st.integers(0, 2**31 - 1).map(lambda n: (str(n), n))
good_note = (
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=40)
    .map(str.strip)
    .filter(lambda s: not s.startswith("'"))
)
good_int = st.integers(-(10**15) + 1, 10**15 - 1).map(lambda n: (str(n), n))
good_float = st.builds(
    lambda digits, exp, sign: f"{sign}{digits}e{exp}",
    st.integers(1, 10**15 - 1),
    st.integers(-250, 250),
    st.sampled_from(["", "-"]),
).map(lambda s: (s, float(s)))
good_seen = st.datetimes(datetime(1900, 1, 1), datetime(2100, 12, 31)).map(
    lambda d: (
        d.strftime("%Y-%m-%d %H:%M:%S"),
        d.replace(microsecond=0, tzinfo=TOKYO).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
)


@st.composite
def good_row(draw) -> tuple[list[str], dict]:
    email = draw(good_email)
    count_text, count = draw(good_count)
    note = draw(good_note)
    age_text, age = draw(st.one_of(good_int, good_float))
    seen_text, seen = draw(good_seen)
    cells = ["", email, count_text, note, "", age_text, seen_text]
    data = {"age": age, "seen": seen} | ({"note": note} if note else {})
    return cells, {"email": email, "email_error_count": count, "data": data}


# --- bad cells, each with its column and the start of its reason ----------------------------

control = st.sampled_from([c for c in map(chr, range(32)) if c not in "\t\n\r"])
big_digits = st.integers(16, 400).flatmap(
    lambda n: st.from_regex(rf"[1-9][0-9]{{{n - 2}}}[1-9]", fullmatch=True)
)
BAD = {
    "Age": st.one_of(
        big_digits.map(lambda d: (d, "out of range" if len(d) > 300 else "too precise")),
        st.integers(300, 10**6).map(lambda e: (f"1e{e}", "out of range")),
        st.integers(301, 10**6).map(lambda e: (f"-2.5e-{e}", "out of range")),
        st.integers(10**15, 10**17).map(lambda n: (f"0.{n}1", "too precise")),
        st.sampled_from(["NaN", "nan", "Infinity", "-inf", "1e", "0x10", "１２"]).map(
            lambda v: (v, "not a number")
        ),
    ),
    "Seen": st.one_of(
        # Before 0001-01-02 or after 9999-12-30 in UTC, whatever the offset says.
        st.times().map(lambda t: (f"0001-01-01 {t:%H:%M:%S}", "out of range")),
        st.tuples(st.times(), st.integers(0, 23), st.integers(0, 59)).map(
            lambda x: (f"0001-01-01T{x[0]:%H:%M:%S}+{x[1]:02}:{x[2]:02}", "out of range")
        ),
        st.tuples(st.times(), st.integers(0, 23), st.integers(0, 59)).map(
            lambda x: (f"9999-12-31T{x[0]:%H:%M:%S}-{x[1]:02}:{x[2]:02}", "out of range")
        ),
        st.sampled_from(
            ["9999-12-31T23:59:59-09:00", "9999-12-31 09:00:00", "0001-01-01 00:00:00"]
        ).map(lambda v: (v, "out of range")),
        st.sampled_from(["2024-01-01 00:00:00+25:00", "2023-02-29 10:00", "0000-01-01 00:00"]).map(
            lambda v: (v, "no such date and time")
        ),
    ),
    "Note": st.one_of(
        st.tuples(st.text("abcあい", max_size=5), control, st.text("xyz", max_size=5)).map(
            lambda x: ("a" + x[0] + x[1] + x[2] + "b", "contains the character U+")
        ),
        st.integers(10_001, 20_000).map(lambda n: ("x" * n, "too long")),
    ),
    "Code": st.integers(256, 2000).map(lambda n: ("c" * n, "too long")),
    "PC e-mail": st.sampled_from(
        [
            "ｔｅｓｔ＠example.com",
            "ｔｅｓｔ@example.com",
            "test@ｅｘａｍｐｌｅ.com",
            "a@b",
            "a b@example.com",
            "a@example.com.",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example..com",
            "a@@example.com",
            "a@1.2.3.4",
            "a@" + "x" * 250 + ".com",
            "x" * 65 + "@example.com",
            "a\x00@example.com",
            "<a@example.com>",
        ]
    ).map(lambda v: (v, "not an e-mail address (")),
    "PC e-mail error count": st.sampled_from(
        ["-1", "1.5", "2147483648", "1" * 400, "１", "1e3", "-0.0"]
    ).map(lambda v: (v, "")),
}
COUNT_REASONS = ("not a whole number", "out of range")


@st.composite
def bad_row(draw) -> tuple[list[str], str, str]:
    cells, _stored = draw(good_row())
    column = draw(st.sampled_from(sorted(BAD)))
    value, reason = draw(BAD[column])
    cells[HEADER.index(column)] = value
    return cells, column, reason


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.one_of(good_row(), bad_row()), min_size=1, max_size=25))
def test_it_rejects_exactly_the_rows_with_a_bad_cell(fields, tmp_path, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i, row in enumerate(rows):
        cells = list(row[0])
        cells[HEADER.index("Code")] = cells[HEADER.index("Code")] or f"K{i}"
        writer.writerow(cells)
    path = tmp_path / "cells.csv"
    path.write_bytes(out.getvalue().encode())
    with transaction.atomic():
        result = run_import(path, mode="insert", key="customer_id")
        bad = [(i + 2, r[1], r[2]) for i, r in enumerate(rows) if len(r) == 3]
        good = [(i, r[1]) for i, r in enumerate(rows) if len(r) == 2]
        assert (result.inserted, result.rejected) == (len(good), len(bad))
        assert [(e.row, e.column) for e in result.errors] == [(n, c) for n, c, _r in bad]
        for error, (_n, column, reason) in zip(result.errors, bad, strict=True):
            if column == "PC e-mail error count":
                assert error.reason.startswith(COUNT_REASONS), error
            else:
                assert error.reason.startswith(reason), error
            assert "\x00" not in str(error) and len(str(error)) < 400
        # PostgreSQL keeps the decimal as written (jsonb numbers are numeric), SQLite its
        # float64: the same number once read as a float64.
        stored = [
            c | {"data": c["data"] | {"age": float(c["data"]["age"])}}
            for c in Customer.objects.order_by("id").values("email", "email_error_count", "data")
        ]
        assert stored == [
            e | {"data": e["data"] | {"code": f"K{i}", "age": float(e["data"]["age"])}}
            for i, e in good
        ]
        transaction.set_rollback(True)


@pytest.mark.parametrize(
    "column, value, reason",
    [
        (
            "Age",
            "1" * 400,
            "out of range: a number other than 0 must lie between 1e-300 and 1e300 in size: "
            + "1" * 60
            + "…",
        ),
        (
            "Seen",
            "0001-01-01 00:00:00",
            "out of range: a date and time must be between 0001-01-02 00:00:00 and 9999-12-30"
            " 23:59:59 (UTC): 0001-01-01 00:00:00",
        ),
        (
            "Seen",
            "9999-12-31T23:59:59-09:00",
            "out of range: a date and time must be between 0001-01-02 00:00:00 and 9999-12-30"
            " 23:59:59 (UTC): 9999-12-31T23:59:59-09:00",
        ),
        (
            "Note",
            "a\x00b",
            "contains the character U+0000 at position 2: control characters (other than tab and"
            " line breaks) and lone surrogates cannot be stored",
        ),
        ("Age", "0.1234567890123456", "too precise: a number has at most 15 significant digits:"),
        (
            "PC e-mail",
            "ｔｅｓｔ＠example.com",
            "not an e-mail address (it contains full-width or other non-ASCII characters):"
            " ｔｅｓｔ＠example.com",
        ),
        (
            "PC e-mail error count",
            "-1",
            "out of range: a whole number from 0 to 2,147,483,647: -1",
        ),
    ],
)
def test_the_issue_examples_name_row_column_and_reason(fields, tmp_path, column, value, reason):
    out = io.StringIO()
    csv.writer(out).writerows([["Customer ID", column], ["", value], ["", ""]])
    path = tmp_path / "one.csv"
    path.write_bytes(out.getvalue().encode())
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.errors[0][:2] == (2, column)
    assert result.errors[0].reason.startswith(reason)


def test_a_nul_in_the_key_or_header_is_named_escaped(fields, tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"Code,Note\nK\x001,x\nK2,y\n")
    result = run_import(path, mode="upsert", key="code")
    assert result.errors == [
        RowError(
            2,
            "Code",
            "contains the character U+0000 at position 2: control characters (other than tab"
            " and line breaks) and lone surrogates cannot be stored",
        )
    ]
    assert list(Customer.objects.values_list("data", flat=True)) == [{"code": "K2", "note": "y"}]
    path.write_bytes(b"Customer ID,No\x00te\n,x\n")
    with pytest.raises(Exception) as info:
        run_import(path, mode="upsert", key="customer_id")
    assert "No\\x00te" in str(info.value) and "\x00" not in str(info.value)


def test_a_datetime_at_the_ends_of_the_range_round_trips(fields, tmp_path):
    path = tmp_path / "ends.csv"
    path.write_text(
        "Customer ID,Seen\n,0001-01-02T00:00:00Z\n,9999-12-30T23:59:59Z\n", encoding="utf-8"
    )
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (2, 0)
    assert sorted(c.data["seen"] for c in Customer.objects.all()) == [
        "0001-01-02T00:00:00Z",
        "9999-12-30T23:59:59Z",
    ]
