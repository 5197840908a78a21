from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.utils import translation

from okuru.accounts import jobs
from okuru.accounts.models import Job, OperationLog
from okuru.customers import design, exporter
from okuru.customers.exporter import ExportError, write_export
from okuru.customers.fields import catalogue
from okuru.customers.importer import run_import
from okuru.customers.models import Customer, Topic, View

pytestmark = pytest.mark.django_db


@pytest.fixture
def fields(db):
    Topic.objects.create(key="news", name="News")
    Topic.objects.create(key="sale", name="Sale")
    design.add_field("note", "Note", "text")
    design.add_field("age", "Age", "number")
    design.add_field("joined", "Joined", "date")
    design.add_field("seen", "Last seen", "datetime")
    design.add_field("tags", "Tags", "multiselect", choices=["a", "b", "-c"])
    design.add_field("plan", "Plan", "select", choices=["free", "=pro"])
    design.add_field("code", "Member code", "text", unique=True)


def export(fields: list[str], **kwargs) -> str:
    out = io.BytesIO()
    write_export(out, fields, **kwargs)
    data = out.getvalue()
    encoding = kwargs.get("encoding", "utf-8-sig")
    if encoding == "utf-8-sig":
        assert data.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
    return data.decode(encoding)


def test_it_exports_chosen_fields_in_order_with_labels(fields):
    c = Customer.objects.create(
        email="a@example.com",
        refused=True,
        unsubscribed=["news", "sale"],
        data={
            "note": "日本語",
            "age": 30,
            "joined": "2024-01-05",
            "seen": "2024-01-05T00:30:00Z",
            "tags": ["a", "b"],
        },
        created_at=datetime(2024, 3, 1, 3, 0, tzinfo=UTC),
    )
    keys = ["note", "customer_id", "email", "age", "joined", "seen", "tags", "refused"]
    keys += ["unsubscribed", "created_at", "plan"]
    assert export(keys).splitlines() == [
        "Note,Customer ID,PC e-mail,Age,Joined,Last seen,Tags,refusal flag,unsubscribe flags,"
        "created,Plan",
        f"日本語,{c.id},a@example.com,30,2024-01-05,2024-01-05 09:30:00,a|b,1,news|sale,"
        "2024-03-01 12:00:00,",
    ]


def test_it_neutralises_formula_cells(fields):
    Customer.objects.create(
        email="-x@example.com",
        data={"note": "=1+1", "code": "@a", "plan": "=pro", "tags": ["-c"], "age": -5},
    )
    Customer.objects.create(email="b@example.com", data={"note": "+1", "code": "'=x"})
    lines = export(["email", "note", "code", "plan", "tags", "age"]).splitlines()
    assert lines[1:] == [
        "'-x@example.com,'=1+1,'@a,'=pro,'-c,-5",
        "b@example.com,'+1,''=x,,,",
    ]


def test_cells_are_quoted_as_a_csv_writer_quotes_them(fields):
    notes = ["a,b", 'say "hi"', "line 1\nline 2", "cr\rhere", "plain", "", None, "a\n=b"]
    made = [Customer.objects.create(data={"note": n, "age": 1.5}) for n in notes[:-2]]
    made.append(Customer.objects.create(data={"age": None}))  # no note, an empty number
    made.append(Customer.objects.create(data={"note": notes[-1], "age": 7}))
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(["Customer ID", "Note", "Age"])
    ages = [1.5] * 6 + ["", 7]
    writer.writerows([c.id, n, a] for c, n, a in zip(made, notes, ages, strict=True))
    assert export(["customer_id", "note", "age"]) == expected.getvalue()


def test_a_single_column_export_writes_empty_cells_as_a_quoted_empty_string(fields):
    Customer.objects.create(data={"note": "x"})
    Customer.objects.create(data={})
    Customer.objects.create(data={"note": "a,b"})
    assert export(["note"]) == 'Note\r\nx\r\n""\r\n"a,b"\r\n'


def test_it_exports_in_cp932(fields):
    Customer.objects.create(email="a@example.com", data={"note": "ｶﾀｶﾅと漢字～"})
    assert export(["email", "note"], encoding="cp932").splitlines() == [
        "PC e-mail,Note",
        "a@example.com,ｶﾀｶﾅと漢字～",
    ]


def test_it_names_the_cell_cp932_cannot_hold(fields):
    Customer.objects.create(email="a@example.com", data={"note": "fine"})
    c = Customer.objects.create(email="b@example.com", data={"note": "emoji 😀"})
    with pytest.raises(ExportError) as info:
        export(["email", "note"], encoding="cp932")
    assert str(info.value) == (
        f"Row 3 (Customer ID {c.id}), Note: the character '😀' cannot be written in CP932"
        " (Shift_JIS). Export in UTF-8 instead."
    )


def test_it_filters_and_uses_views(fields):
    Customer.objects.create(email="a@example.com", data={"plan": "free"})
    b = Customer.objects.create(email="b@example.com", refused=True, data={"plan": "=pro"})
    Customer.objects.create(email="c@example.com", data={"plan": "=pro"})
    tree = {"match": "all", "conditions": [{"field": "plan", "op": "eq", "value": "=pro"}]}
    assert export(["email"], tree=tree).splitlines() == [
        "PC e-mail",
        "b@example.com",
        "c@example.com",
    ]
    view = View.objects.create(
        name="Refused",
        filter={"match": "all", "conditions": [{"field": "refused", "op": "eq", "value": "1"}]},
        fields=["customer_id", "email"],
    )
    assert export([], view=view).splitlines() == ["Customer ID,PC e-mail", f"{b.id},b@example.com"]
    assert export(["email"], tree=tree, view=view).splitlines() == ["PC e-mail", "b@example.com"]


@pytest.mark.parametrize(
    "fields_, kwargs, message",
    [
        (["email", "nope"], {}, "Unknown field: nope"),
        ([], {}, "Choose at least one field to export."),
        (["email", "email"], {}, "email is chosen twice."),
        (["email"], {"encoding": "latin-1"}, "Unknown encoding latin-1: use utf-8 or cp932."),
        (
            ["email"],
            {"tree": {"match": "all", "conditions": [{"field": "x", "op": "eq", "value": "1"}]}},
            "Unknown field in filter: x",
        ),
    ],
)
def test_it_rejects_bad_requests(fields, fields_, kwargs, message):
    with pytest.raises(ExportError) as info:
        exporter.iter_export_chunks(fields_, **kwargs)
    assert str(info.value) == message


def test_a_label_that_means_another_field_is_written_as_the_key(fields):
    design.add_field("nick", "note", "text")  # "note" is also the key of another field
    Customer.objects.create(email="a@example.com", data={"nick": "N", "note": "x"})
    assert export(["nick", "note"]).splitlines() == ["nick,Note", "N,x"]


def test_export_then_import_changes_nothing(fields, tmp_path):
    specs = catalogue()
    keys = [k for k in specs if k != "updated_at"]
    samples = [
        dict(
            email="a@example.com",
            mobile_email="m@example.jp",
            refused=True,
            email_error_count=99,
            mobile_error_count=1,
            unsubscribed=["sale"],
            data={
                "note": "=1+1",
                "age": 2.5,
                "joined": "2024-02-29",
                "seen": "2024-01-05T00:30:00Z",
                "tags": ["-c", "a"],
                "plan": "=pro",
                "code": "-x",
            },
        ),
        dict(email="-b@example.com", data={"note": "@a", "age": 30, "code": "'=already"}),
        dict(email="", data={"note": '日本語,"quoted"\nsecond line', "age": 1e20, "code": "+1"}),
        dict(email="d@example.com", data={"note": "'plain quote", "age": -3, "tags": ["b"]}),
        dict(email="e@example.com", data={}),
    ]
    for s in samples:
        Customer.objects.create(**s)

    def snapshot():
        return list(
            Customer.objects.order_by("id").values_list(
                "id",
                "email",
                "mobile_email",
                "refused",
                "email_error_count",
                "mobile_error_count",
                "unsubscribed",
                "data",
                "created_at",
            )
        )

    before = snapshot()
    for encoding in ("utf-8-sig", "cp932"):
        path = tmp_path / f"round-{encoding}.csv"
        with path.open("wb") as out:
            assert write_export(out, keys, encoding=encoding) == len(samples)
        result = run_import(path, mode="update", key="customer_id")
        assert (result.updated, result.rejected, result.errors) == (len(samples), 0, [])
        assert snapshot() == before
    # The same file keyed on the unique field, in upsert mode, changes nothing either.
    path = tmp_path / "by-code.csv"
    with path.open("wb") as out:
        write_export(out, [k for k in keys if k != "customer_id"], tree=_has("code"))
    result = run_import(path, mode="upsert", key="code")
    assert (result.updated, result.inserted, result.rejected) == (3, 0, 0)
    assert snapshot() == before


def _has(key: str) -> dict:
    return {"match": "all", "conditions": [{"field": key, "op": "has_value"}]}


def test_the_export_job_writes_a_file(fields, owner, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    Customer.objects.create(email="a@example.com", data={"plan": "free"})
    Customer.objects.create(email="b@example.com", data={"plan": "=pro"})
    job = Job.objects.create(
        kind="export",
        operator=owner,
        params={
            "fields": ["email", "plan"],
            "filter": {
                "match": "all",
                "conditions": [{"field": "plan", "op": "eq", "value": "free"}],
            },
            "encoding": "utf-8-sig",
        },
    )
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"rows": 1, "file": f"{job.pk}.csv"}
    path = Path(job.output_file)
    assert path == (tmp_path / "exports" / f"{job.pk}.csv").resolve()
    assert path.read_bytes().decode("utf-8-sig").splitlines() == [
        "PC e-mail,Plan",
        "a@example.com,free",
    ]
    assert (job.progress_done, job.progress_total) == (1, 1)
    entry = OperationLog.objects.get(action="export")
    assert (entry.operator, entry.detail["rows"]) == (owner, 1)


def test_the_export_job_fails_cleanly(fields, owner, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    Customer.objects.create(email="a@example.com", data={"note": "😀"})
    job = Job.objects.create(
        kind="export", operator=owner, params={"fields": ["note"], "encoding": "cp932"}
    )
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.endswith(
        "Note: the character '😀' cannot be written in CP932 (Shift_JIS). Export in UTF-8 instead."
    )
    assert list((tmp_path / "exports").iterdir()) == []  # no partial file is left


def test_japanese_headers_read_back(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com", refused=True, data={"note": "x"})
    path = tmp_path / "ja.csv"
    with translation.override("ja"), path.open("wb") as out:
        write_export(out, ["customer_id", "email", "refused", "note"])
    header = path.read_bytes().decode("utf-8-sig").splitlines()[0]
    with translation.override("ja"):
        assert (
            header
            == ",".join(str(catalogue()[k].label) for k in ("customer_id", "email", "refused"))
            + ",Note"
        )
    result = run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected) == (1, 0)
    c.refresh_from_db()
    assert (c.refused, c.data) == (True, {"note": "x"})
