from __future__ import annotations

from pathlib import Path

import pytest

from okuru.accounts import jobs
from okuru.accounts.models import Job, OperationLog
from okuru.customers import design, importer
from okuru.customers.importer import ImportFailed, RowError, run_import
from okuru.customers.models import Customer, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def fields(db):
    Topic.objects.create(key="news", name="News")
    Topic.objects.create(key="sale", name="Sale")
    design.add_field("note", "Note", "text")
    design.add_field("age", "Age", "number")
    design.add_field("joined", "Joined", "date")
    design.add_field("seen", "Last seen", "datetime")
    design.add_field("tags", "Tags", "multiselect", choices=["a", "b", "c"])
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    design.add_field("code", "Member code", "text", unique=True)


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rows_of(**filters) -> list[tuple]:
    return list(
        Customer.objects.filter(**filters)
        .order_by("id")
        .values_list("email", "refused", "email_error_count", "unsubscribed", "data")
    )


def failure(path: Path, **kwargs) -> ImportFailed:
    kwargs.setdefault("mode", "upsert")
    kwargs.setdefault("key", "customer_id")
    with pytest.raises(ImportFailed) as info:
        run_import(path, **kwargs)
    return info.value


# ---------------------------------------------------------------------------------------------
# Modes and keys


def test_it_inserts_new_customers_and_assigns_their_ids(fields, tmp_path):
    path = write(
        tmp_path,
        "Customer ID,PC e-mail,Note,Age,Joined,Last seen,Tags,Plan,Member code\n"
        ",a@example.com,hello,30,2024/1/5,2024-01-05 09:30,a|c,pro,M1\n"
        ",b@example.com,'=1+1,2.5,,,,,M2\n",
    )
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.updated, result.skipped, result.rejected) == (2, 0, 0, 0)
    a, b = Customer.objects.order_by("id")
    assert a.email == "a@example.com"
    assert a.data == {
        "note": "hello",
        "age": 30,
        "joined": "2024-01-05",
        "seen": "2024-01-05T00:30:00Z",  # 09:30 in Tokyo
        "tags": ["a", "c"],
        "plan": "pro",
        "code": "M1",
    }
    assert b.data == {"note": "=1+1", "age": 2.5, "code": "M2"}
    assert (a.refused, a.email_error_count, a.unsubscribed) == (False, 0, [])
    assert b.id > a.id


def test_update_writes_only_the_columns_in_the_file(fields, tmp_path):
    c = Customer.objects.create(
        email="a@example.com",
        refused=True,
        email_error_count=3,
        unsubscribed=["news"],
        data={"note": "old", "age": 40, "plan": "free"},
    )
    path = write(tmp_path, f"Customer ID,Note,Plan\n{c.id},new,\n")
    result = run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected) == (1, 0)
    c.refresh_from_db()
    # The refusal flag, unsubscribe flags and error count were not in the file: untouched.
    assert (c.refused, c.email_error_count, c.unsubscribed) == (True, 3, ["news"])
    # An empty cell clears the value; a column not in the file keeps it.
    assert c.data == {"note": "new", "age": 40}


def test_standard_flags_change_when_their_columns_are_in_the_file(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com", refused=True, unsubscribed=["news"])
    path = write(
        tmp_path,
        f"Customer ID,refusal flag,unsubscribe flags,PC e-mail error count\n{c.id},0,sale|news,7\n",
    )
    run_import(path, mode="update", key="customer_id")
    c.refresh_from_db()
    assert (c.refused, c.unsubscribed, c.email_error_count) == (False, ["sale", "news"], 7)


def test_update_mode_skips_ids_no_customer_has(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    gone = Customer.objects.create(email="gone@example.com").id
    Customer.objects.filter(id=gone).delete()
    path = write(tmp_path, f"Customer ID,Note\n{c.id},x\n{gone},y\n{c.id + 100},z\n,no id\n")
    result = run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.skipped, result.rejected, result.inserted) == (1, 3, 0, 0), (
        result.errors
    )
    assert Customer.objects.count() == 1


def test_insert_mode_skips_existing_customers(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com", data={"code": "M1", "note": "keep"})
    path = write(tmp_path, "Member code,Note\nM1,changed\nM2,new\n")
    result = run_import(path, mode="insert", key="code")
    assert (result.inserted, result.skipped, result.updated) == (1, 1, 0)
    c.refresh_from_db()
    assert c.data == {"code": "M1", "note": "keep"}
    assert Customer.objects.get(data__code="M2").data == {"code": "M2", "note": "new"}


def test_insert_mode_with_customer_id_skips_existing_ids(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    path = write(tmp_path, f"Customer ID,Note\n{c.id},x\n,y\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.skipped) == (1, 1)
    c.refresh_from_db()
    assert c.data == {}


def test_upsert_by_a_unique_field(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com", data={"code": "M1"})
    path = write(tmp_path, "Member code,PC e-mail\nM1,new@example.com\nM2,b@example.com\n")
    result = run_import(path, mode="upsert", key="code")
    assert (result.inserted, result.updated) == (1, 1)
    c.refresh_from_db()
    assert c.email == "new@example.com"
    assert Customer.objects.get(data__code="M2").email == "b@example.com"


def test_it_rejects_a_customer_id_that_no_customer_has(fields, tmp_path):
    path = write(tmp_path, "Customer ID,Note\n12345,x\n,y\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.errors == [
        RowError(
            2,
            "Customer ID",
            "No customer has this Customer ID (Okuru assigns Customer IDs: leave the cell empty"
            " to add a new customer).",
        )
    ]


def test_synergy_id_and_japanese_headers_mean_the_customer_id(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    for header in ("Synergy!ID", "顧客ID"):
        path = write(tmp_path, f"{header},Note\n{c.id},{header}\n")
        assert run_import(path, mode="update", key="customer_id").updated == 1
        c.refresh_from_db()
        assert c.data == {"note": header}


def test_headers_map_by_key_and_ignore_case(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    path = write(tmp_path, f"customer_id,note,PLAN\n{c.id},x,pro\n")
    run_import(path, mode="update", key="customer_id")
    c.refresh_from_db()
    assert c.data == {"note": "x", "plan": "pro"}


# ---------------------------------------------------------------------------------------------
# Header errors: nothing is imported


def test_it_rejects_a_file_without_the_key_column(fields, tmp_path):
    e = failure(write(tmp_path, "PC e-mail,Note\na@example.com,x\n"), mode="update")
    assert str(e) == (
        "Row 1, Customer ID: The key column is missing: the file needs a column Customer ID."
    )
    e = failure(write(tmp_path, "PC e-mail\na@example.com\n"), key="code")
    assert str(e) == (
        "Row 1, Member code: The key column is missing: the file needs a column Member code."
    )
    assert Customer.objects.count() == 0


def test_it_rejects_a_customer_id_column_when_the_key_is_a_field(fields, tmp_path):
    e = failure(write(tmp_path, "Customer ID,Member code\n1,M1\n"), key="code")
    assert str(e) == (
        "Row 1, Customer ID: A Customer ID column is only allowed when Customer ID is the key:"
        " choose Customer ID as the key or remove the column."
    )


def test_it_rejects_unknown_columns(fields, tmp_path):
    e = failure(write(tmp_path, "Customer ID,Nickname,Colour\n,a,b\n"))
    assert e.errors == [
        RowError(1, "Nickname", "Unknown column: no field has this key or label."),
        RowError(1, "Colour", "Unknown column: no field has this key or label."),
    ]
    assert str(e) == (
        "The header row has 2 problems: Row 1, Nickname: Unknown column: no field has this key"
        " or label.; Row 1, Colour: Unknown column: no field has this key or label."
    )


def test_it_rejects_a_column_given_twice(fields, tmp_path):
    e = failure(write(tmp_path, "Customer ID,Note,note\n,a,b\n"))
    assert str(e) == "Row 1, note: The column appears twice (column 2 is the same field)."


def test_it_rejects_a_key_that_is_not_unique(fields, tmp_path):
    e = failure(write(tmp_path, "Note\nx\n"), key="note")
    assert str(e) == (
        "Note cannot be the key: the key is Customer ID or a unique field (make the field"
        " unique first)."
    )
    assert str(failure(write(tmp_path, "x\n1\n"), key="nope")) == "Unknown key field: nope"


def test_it_rejects_unknown_mode_and_encoding(fields, tmp_path):
    path = write(tmp_path, "Customer ID\n1\n")
    assert str(failure(path, mode="merge")) == "Unknown mode merge: use insert, update or upsert."
    assert str(failure(path, encoding="latin-1")) == (
        "Unknown encoding latin-1: use auto, utf-8 or cp932."
    )


def test_it_rejects_an_empty_file(fields, tmp_path):
    e = failure(write(tmp_path, ""))
    assert str(e) == "The file is empty: it needs a header row and at least one row."
    e = failure(write(tmp_path, "Customer ID,Note\n"))
    assert str(e) == "The file is empty: it needs a header row and at least one row."


def test_trailing_empty_header_cells_are_ignored(fields, tmp_path):
    path = write(tmp_path, "Customer ID,Note,,\n,x,,\n")
    assert run_import(path, mode="insert", key="customer_id").inserted == 1


# ---------------------------------------------------------------------------------------------
# Row errors: the row is listed, the others are imported


@pytest.mark.parametrize(
    "column, value, reason",
    [
        ("Age", "old", "not a number: old"),
        (
            "Age",
            "1e999",
            "out of range: a number other than 0 must lie between 1e-300 and 1e300 in size: 1e999",
        ),
        ("Joined", "2024-02-30", "no such date: 2024-02-30"),
        ("Joined", "soon", "not a date (YYYY-MM-DD): soon"),
        ("Last seen", "noon", "not a date and time (YYYY-MM-DD HH:MM:SS): noon"),
        (
            "PC e-mail",
            "not-an-address",
            "not an e-mail address (it needs the form name@example.com): not-an-address",
        ),
        ("Plan", "gold", "not one of the choices: gold"),
        ("Tags", "a|z", "not one of the choices: z"),
        ("refusal flag", "maybe", "not a flag (1 or 0): maybe"),
        ("PC e-mail error count", "1.5", "not a whole number: 1.5"),
        ("unsubscribe flags", "spam", "not one of the choices: spam"),
    ],
)
def test_it_rejects_bad_values(fields, tmp_path, column, value, reason):
    path = write(tmp_path, f"Customer ID,{column}\n,{value}\n,\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.errors == [RowError(2, column, reason)]
    assert str(result.errors[0]) == f"Row 2, {column}: {reason}"


def test_it_lists_every_bad_cell_of_a_row(fields, tmp_path):
    path = write(tmp_path, "Customer ID,Age,Plan\n,x,y\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert result.rejected == 1
    assert result.errors == [
        RowError(2, "Age", "not a number: x"),
        RowError(2, "Plan", "not one of the choices: y"),
    ]


def test_it_rejects_a_bad_customer_id(fields, tmp_path):
    result = run_import(
        write(tmp_path, "Customer ID,Note\nabc,x\n"), mode="upsert", key="customer_id"
    )
    assert result.errors == [RowError(2, "Customer ID", "not a whole number: abc")]


def test_it_rejects_duplicate_keys_in_the_file(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    path = write(tmp_path, f"Customer ID,Note\n{c.id},first\n{c.id},second\n")
    result = run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected) == (1, 1)
    assert result.errors == [
        RowError(
            3, "Customer ID", f"Duplicate key {c.id}: an earlier row of the file has the same key."
        )
    ]
    c.refresh_from_db()
    assert c.data == {"note": "first"}
    path = write(tmp_path, "Member code,Note\nM1,a\nM2,b\n M1 ,c\n")
    result = run_import(path, mode="upsert", key="code")
    assert (result.inserted, result.rejected) == (2, 1)
    assert result.errors == [
        RowError(4, "Member code", "Duplicate key M1: an earlier row of the file has the same key.")
    ]


def test_it_rejects_an_empty_key(fields, tmp_path):
    result = run_import(write(tmp_path, "Member code,Note\n,x\n"), mode="upsert", key="code")
    assert result.errors == [RowError(2, "Member code", "The key is empty.")]


def test_it_rejects_rows_with_the_wrong_number_of_cells(fields, tmp_path):
    path = write(tmp_path, "Customer ID,Note\n,a,b\n,c\n\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected, result.rows) == (1, 1, 2)
    assert result.errors == [RowError(2, "", "The row has 3 cells but the header has 2.")]


def test_it_requires_required_fields_on_insert(fields, tmp_path):
    design.add_field("name", "Name", "text", required=True)
    c = Customer.objects.create(email="a@example.com", data={"name": "Aoki"})
    # The column is missing: inserts are rejected, updates go through.
    path = write(tmp_path, f"Customer ID,Note\n{c.id},x\n,y\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.updated, result.inserted, result.rejected) == (1, 0, 1)
    assert result.errors == [RowError(3, "Name", "a value is required")]
    # The column is there but the cell is empty.
    path = write(tmp_path, "Customer ID,Name\n,\n,Baba\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.errors == [RowError(2, "Name", "a value is required")]


def test_it_rejects_values_a_unique_field_already_has(fields, tmp_path):
    holder = Customer.objects.create(email="a@example.com", data={"code": "M1"})
    other = Customer.objects.create(email="b@example.com")
    path = write(tmp_path, f"Customer ID,Member code\n{other.id},M1\n,M2\n,M2\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.updated, result.inserted, result.rejected) == (0, 1, 2)
    new = Customer.objects.get(data__code="M2")
    assert result.errors == [
        RowError(
            2, "Member code", f"M1 is already used by customer {holder.id} (the field is unique)."
        ),
        RowError(
            4, "Member code", f"M2 is already used by customer {new.id} (the field is unique)."
        ),
    ]
    other.refresh_from_db()
    assert other.data == {}


def test_errors_are_listed_up_to_the_cap(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "MAX_LISTED_ERRORS", 3)
    path = write(tmp_path, "Customer ID,Age\n" + ",x\n" * 5)
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.rejected, result.error_count, len(result.errors)) == (5, 5, 3)


# ---------------------------------------------------------------------------------------------
# The file itself


def test_it_reads_utf8_with_and_without_bom(fields, tmp_path):
    text = "Customer ID,Note\n,日本語のメモ\n"
    for name, encoding in (("bom.csv", "utf-8-sig"), ("plain.csv", "utf-8")):
        result = run_import(write(tmp_path, text, encoding, name), mode="insert", key="customer_id")
        assert (result.inserted, result.encoding) == (1, "utf-8")
    assert list(Customer.objects.values_list("data", flat=True)) == [{"note": "日本語のメモ"}] * 2


def test_it_detects_cp932(fields, tmp_path):
    path = write(tmp_path, "顧客ID,Note\n,ｶﾀｶﾅと漢字～\n", "cp932")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.encoding) == (1, "cp932")
    assert Customer.objects.get().data == {"note": "ｶﾀｶﾅと漢字～"}


def test_a_wrong_explicit_encoding_names_the_line(fields, tmp_path):
    path = write(tmp_path, "Customer ID,Note\n,plain\n,漢字\n", "cp932")
    e = failure(path, encoding="utf-8")
    assert str(e) == (
        "Line 3 is not valid UTF-8 (bytes 8a). Choose the file's encoding (UTF-8 or CP932) or"
        " save it again as UTF-8."
    )
    assert Customer.objects.count() == 0


def test_invalid_bytes_name_the_line(fields, tmp_path):
    path = tmp_path / "bad.csv"
    # 0x81 0x20 is neither UTF-8 nor CP932.
    path.write_bytes("Customer ID,Note\n,ok\n,é\n".encode() + b",\x81 \n")
    e = failure(path)
    assert str(e).startswith("Line 4 is not valid UTF-8 (bytes 81).")
    assert e.errors[0].row == 4
    e = failure(path, encoding="cp932")
    assert str(e).startswith("Line 4 is not valid CP932 (Shift_JIS) (bytes 81).")


def test_a_100_mb_line_fails_clearly_without_being_read_whole(fields, tmp_path):
    path = tmp_path / "huge.csv"
    block = b"x" * (1024 * 1024)
    with path.open("wb") as f:
        f.write(b"Customer ID,Note\n,ok\n,")
        for _ in range(100):
            f.write(block)
        f.write(b"\n")
    e = failure(path)
    assert str(e) == (
        "Line 3 is longer than 1,048,576 characters: this is not a CSV file of customers (or a"
        " quote is never closed)."
    )
    assert Customer.objects.count() == 0


def test_an_unclosed_quote_fails_clearly(fields, tmp_path):
    path = tmp_path / "quote.csv"
    with path.open("w") as f:
        f.write('Customer ID,Note\n,"never closed\n')
        for _ in range(30_000):
            f.write("more text on one more line of the same cell\n")
    e = failure(path)
    assert str(e) == (
        "Row 2 has a cell longer than 1,048,576 characters (is a quote never closed?)."
    )
    e = failure(write(tmp_path, 'Customer ID,Note\n,"short\n'))
    assert str(e) == "Row 2 has a quote that is never closed."


def test_malformed_quoting_fails_clearly(fields, tmp_path):
    e = failure(write(tmp_path, 'Customer ID,Note\n,ok\n,"a"b\n'))
    assert str(e) == "Row 3 is not valid CSV: ',' expected after '\"'"


def test_a_failure_midway_imports_nothing(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    c = Customer.objects.create(email="a@example.com", data={"note": "before"})
    path = tmp_path / "mid.csv"
    good = f"Customer ID,Note\n{c.id},after\n" + ",new\n" * 5
    path.write_bytes(good.encode() + b",\xff\n")
    e = failure(path, encoding="utf-8")
    assert str(e).startswith("Line 8 is not valid UTF-8")
    c.refresh_from_db()
    assert c.data == {"note": "before"}
    assert Customer.objects.count() == 1
    assert not OperationLog.objects.filter(action="import").exists()


def test_dry_run_counts_and_changes_nothing(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    c = Customer.objects.create(email="a@example.com", data={"note": "before", "code": "M1"})
    path = write(
        tmp_path,
        f"Customer ID,Note,Member code\n{c.id},after,M1\n,new,M2\n,bad,M1\n{c.id + 50},x,\n",
    )
    before = rows_of()
    result = run_import(path, mode="upsert", key="customer_id", dry_run=True)
    assert (result.updated, result.inserted, result.skipped, result.rejected) == (1, 1, 0, 2)
    assert result.dry_run
    assert rows_of() == before
    real = run_import(path, mode="upsert", key="customer_id")
    assert (real.updated, real.inserted, real.skipped, real.rejected) == (1, 1, 0, 2)
    assert real.errors == result.errors


def test_it_logs_imports(fields, tmp_path, owner):
    path = write(tmp_path, "Customer ID,Note\n,x\n")
    run_import(path, mode="insert", key="customer_id", dry_run=True, operator=owner)
    run_import(path, mode="insert", key="customer_id", name="customers.csv")
    dry, real = OperationLog.objects.filter(action__startswith="import").order_by("id")
    assert (dry.action, dry.operator, dry.target) == ("import_dry_run", owner, "in.csv")
    assert dry.detail["inserted"] == 1 and dry.detail["dry_run"] is True
    assert (real.action, real.operator, real.target) == ("import", None, "customers.csv")


def test_created_and_updated_columns_are_ignored(fields, tmp_path):
    c = Customer.objects.create(email="a@example.com")
    path = write(tmp_path, f"Customer ID,created,updated,Note\n{c.id},2000-01-01 00:00,x,y\n")
    result = run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.ignored_columns) == (1, ["created", "updated"])
    created = c.created_at
    c.refresh_from_db()
    assert c.created_at == created


def test_many_columns_and_chunks(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
    for i in range(70):  # more than one json_object / jsonb_build_object call holds
        design.add_field(f"f{i}", f"F{i}", "text")
    header = "Customer ID," + ",".join(f"f{i}" for i in range(70))
    lines = [header] + ["," + ",".join(f"v{r}-{i}" for i in range(70)) for r in range(10)]
    result = run_import(write(tmp_path, "\n".join(lines) + "\n"), mode="insert", key="customer_id")
    assert result.inserted == 10
    last = Customer.objects.order_by("id").last()
    assert last.data == {f"f{i}": f"v9-{i}" for i in range(70)}


# ---------------------------------------------------------------------------------------------
# The job


def test_the_import_job_runs_and_reports(
    fields, tmp_path, owner, django_capture_on_commit_callbacks
):
    path = write(tmp_path, "Customer ID,Note\n,x\n,y\n")
    params = {"path": str(path), "mode": "insert", "key": "customer_id", "encoding": "auto"}
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.start("import", owner, params=params | {"filename": "mine.csv"})
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result["inserted"] == 2 and job.result["rejected"] == 0
    assert (job.progress_done, job.progress_total) == (2, 2)
    assert OperationLog.objects.get(action="import").target == "mine.csv"


def test_the_import_job_fails_with_the_reason(fields, tmp_path, owner):
    path = write(tmp_path, "Nickname\nx\n")
    job = Job.objects.create(
        kind="import",
        operator=owner,
        params={"path": str(path), "mode": "upsert", "key": "customer_id"},
    )
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == (
        "The header row has 2 problems: Row 1, Customer ID: The key column is missing: the file"
        " needs a column Customer ID.; Row 1, Nickname: Unknown column: no field has this key or"
        " label."
    )


def test_errors_are_listed_in_file_order(fields, tmp_path):
    Customer.objects.create(email="a@example.com", data={"code": "M1"})
    path = write(tmp_path, "Customer ID,Member code,Age\n,M1,1\n,M2,x\n99999,M3,2\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert [e.row for e in result.errors] == [2, 3, 4]


def test_it_rejects_the_id_of_a_deleted_customer_in_file_order(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    a, b = (Customer.objects.create(email=f"{n}@example.com") for n in "ab")
    gone = Customer.objects.create(email="gone@example.com").id
    c = Customer.objects.create(email="c@example.com")
    Customer.objects.filter(id=gone).delete()
    path = write(
        tmp_path,
        f"Customer ID,Note,Age\n{a.id},x,1\n,y,bad\n{gone},z,2\n{b.id},w,3\n{c.id},v,x\n",
    )
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.updated, result.inserted, result.rejected) == (2, 0, 3)
    assert [(e.row, e.column) for e in result.errors] == [
        (3, "Age"),
        (4, "Customer ID"),
        (6, "Age"),
    ]
    assert result.error_count == 3
    b.refresh_from_db()
    assert b.data == {"note": "w", "age": 3}


def test_unique_refusals_reject_only_their_rows_across_chunks(fields, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    monkeypatch.setattr(importer, "MAX_LISTED_ERRORS", 2)
    holder = Customer.objects.create(email="a@example.com", data={"code": "M1"})
    others = [Customer.objects.create(email=f"{n}@example.com") for n in range(4)]
    lines = [f"{o.id},M1" if n % 2 else f"{o.id},U{n}" for n, o in enumerate(others)]
    path = write(tmp_path, "Customer ID,Member code\n" + "\n".join(lines) + "\n,M1\n,N1\n")
    result = run_import(path, mode="upsert", key="customer_id")
    assert (result.updated, result.inserted, result.rejected) == (2, 1, 3)
    assert (result.error_count, [e.row for e in result.errors]) == (3, [3, 5])
    assert result.errors[0].reason == (
        f"M1 is already used by customer {holder.id} (the field is unique)."
    )
    assert [
        o.data for o in Customer.objects.filter(id__in=[o.id for o in others]).order_by("id")
    ] == [
        {"code": "U0"},
        {},
        {"code": "U2"},
        {},
    ]
    assert Customer.objects.filter(data__code="N1").exists()
