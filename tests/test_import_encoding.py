"""Which files the import reads as text, in which encoding, and which it refuses whole."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from okuru.accounts import jobs
from okuru.accounts.models import Job
from okuru.customers import design
from okuru.customers.importer import ImportFailed, run_import
from okuru.customers.models import Customer

pytestmark = pytest.mark.django_db
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KANJI = "名前田中山本佐藤鈴木高橋東京大阪日本語顧客様あいうえおかきくけこアイウエオ"
ACCENTED = "àáâäçèéêëìíîïñòóôöùúûüýÿ"  # Latin-1 0xE0-0xFF: never valid UTF-8 before ASCII


@pytest.fixture
def note(db):
    design.add_field("note", "Note", "text")


def body(count: int) -> list[str]:
    return [f",{KANJI[i % 20]}{KANJI[(i + 7) % 20]}{i}" for i in range(count)]


def refused(path: Path, encoding: str = "auto") -> str:
    with pytest.raises(ImportFailed) as info:
        run_import(path, mode="insert", key="customer_id", encoding=encoding)
    assert not Customer.objects.exists()
    return str(info.value)


@HYPOTHESIS
@given(
    rows=st.integers(1, 300),
    at=st.floats(0, 1),
    line=st.one_of(
        st.text(st.sampled_from(KANJI), min_size=1, max_size=8).map(
            lambda t: (t.encode("cp932"), "CP932")
        ),
        st.text(st.sampled_from(ACCENTED), min_size=1, max_size=8).map(
            lambda t: (" ".join(t).encode("latin-1"), "Latin-1")
        ),
    ),
)
def test_it_refuses_a_utf8_file_with_one_line_in_another_encoding(note, tmp_path, rows, at, line):
    data, _kind = line
    assume(not _decodes(data, "utf-8"))
    lines = [b"Customer ID,Note"] + [r.encode() for r in body(rows)]
    pos = 1 + int(at * rows)
    lines.insert(pos, b"," + data)
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    for encoding in ("auto", "utf-8"):
        message = refused(path, encoding)
        assert message.startswith(f"Line {pos + 1} is not valid UTF-8 (bytes "), message


@HYPOTHESIS
@given(rows=st.integers(2, 200), at=st.floats(0, 1))
def test_it_refuses_a_cp932_file_with_a_utf8_line(note, tmp_path, rows, at):
    lines = [b"Customer ID,Note"] + [r.encode("cp932") for r in body(rows)]
    pos = 1 + int(at * rows)
    lines.insert(pos, ",東京の顧客".encode())
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = (
        f"Line {pos + 1} is UTF-8, but the rest of the file is CP932 (Shift_JIS): the file"
        " mixes encodings. Save the whole file in one encoding (UTF-8 is best) and import it"
        " again."
    )
    assert refused(path) == expected
    assert refused(path, "cp932") == expected


def test_it_names_the_issue_example_line_and_stores_nothing(note, tmp_path):
    lines = [f",名前{i}".encode() for i in range(3000)]
    lines.insert(1500, ",名前1500".encode("cp932"))
    path = tmp_path / "issue.csv"
    path.write_bytes(b"Customer ID,Note\n" + b"\n".join(lines) + b"\n")
    assert refused(path) == (
        "Line 1502 is not valid UTF-8 (bytes 96). The rest of the file is UTF-8: the file mixes"
        " encodings. Save the whole file in one encoding (UTF-8 is best) and import it again."
    )


def test_a_clean_file_in_either_encoding_still_imports(note, tmp_path):
    for encoding in ("utf-8", "utf-8-sig", "cp932"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(("Customer ID,Note\n" + "\n".join(body(50)) + "\n").encode(encoding))
        result = run_import(path, mode="insert", key="customer_id")
        assert (result.inserted, result.rejected) == (50, 0)
    values = list(Customer.objects.order_by("id").values_list("data__note", flat=True))
    assert values == [b[1:] for b in body(50)] * 3


@HYPOTHESIS
@given(
    codec=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]),
    rows=st.lists(st.text(st.sampled_from(KANJI + "abc xyz019"), max_size=12), max_size=20),
    choice=st.sampled_from(["auto", "utf-8", "cp932"]),
)
def test_it_refuses_utf16_and_utf32_with_or_without_bom(note, tmp_path, codec, rows, choice):
    text = "Customer ID,Note\r\n" + "".join(f",{r}\r\n" for r in rows)
    path = tmp_path / "wide.csv"
    path.write_bytes(text.encode(codec))
    name = "UTF-16" if "16" in codec else "UTF-32"
    assert refused(path, choice) == (
        f"The file is encoded in {name}, which Okuru does not read: save it as CSV in UTF-8 (or"
        " CP932)."
    )


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
)


@pytest.mark.parametrize(
    "data, kind",
    [
        (PNG, "a PNG image"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "an Excel workbook (.xlsx) or another ZIP"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (bytes(1000), "binary data"),
        (b"Customer ID,Note\n" + b"\x00\x01\x02\x03" * 50, "binary data"),
    ],
)
def test_it_tells_a_binary_file_is_not_csv(note, tmp_path, data, kind):
    path = tmp_path / "upload.csv"
    path.write_bytes(data)
    for choice in ("auto", "utf-8", "cp932"):
        assert refused(path, choice).startswith(
            f"The file is not a CSV text file: it looks like {kind}"
        )


@HYPOTHESIS
@given(data=st.binary(min_size=200, max_size=4000))
def test_random_binary_never_imports_and_never_crashes(note, tmp_path, data):
    # Bytes that happen to be text may import (or be rejected row by row); nothing else.
    path = tmp_path / "random.csv"
    path.write_bytes(b"Customer ID,Note\n" + data)
    try:
        run_import(path, mode="insert", key="customer_id")
    except ImportFailed as e:
        assert not Customer.objects.exists()
        assert re.match(r"(Line \d+ |The file |Row \d+ |The row|The header)", str(e)), str(e)


def test_a_nul_in_a_cell_is_the_rows_problem_not_the_files(note, tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"Customer ID,Note\n,a\x00b\n,ok\n")
    result = run_import(path, mode="insert", key="customer_id")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.errors[0].row == 2


def test_a_cp932_choice_refuses_a_utf8_bom(note, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("Customer ID,Note\n,名前\n".encode("utf-8-sig"))
    assert refused(path, "cp932").startswith("The file starts with a UTF-8 byte order mark")


def test_the_import_job_reports_the_encoding_error(note, tmp_path, owner):
    path = tmp_path / "wide.csv"
    path.write_bytes("Customer ID,Note\r\n,名前\r\n".encode("utf-16"))
    params = {"path": str(path), "mode": "insert", "key": "customer_id", "encoding": "auto"}
    job = Job.objects.create(kind="import", operator=owner, params=params)
    jobs.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "UTF-16" in job.error
    assert "Unexpected" not in job.error


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        codecs.decode(data, encoding)
    except UnicodeDecodeError:
        return False
    return True
