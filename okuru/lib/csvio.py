"""Reading and writing CSV files the way Japanese and English spreadsheet users have them.

Reading streams: a file of any size goes through in constant memory. Encoding is UTF-8 (with or
without BOM) or CP932 (Shift_JIS as Excel writes it in Japan), detected from the whole file or
chosen (``prepare``). Every problem with the file itself (bytes that are not the encoding, lines
in two encodings, UTF-16/UTF-32, an image or workbook instead of CSV text, a line too long to be
a customer row, bad quoting) raises ``CsvError``, naming the line where there is one, so an
operator can open the file and fix it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

# No customer row is this long; a longer line is a wrong file (an export of binary data, a
# file without line breaks) and must fail before it is read into memory whole.
MAX_LINE_CHARS = 1024 * 1024
MAX_FIELD_CHARS = MAX_LINE_CHARS
csv.field_size_limit(MAX_FIELD_CHARS)

ENCODINGS = ("utf-8", "cp932")
ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp932": "CP932 (Shift_JIS)"}
_SCAN_CHUNK = 1024 * 1024


class CsvError(ValueError):
    """A problem with the file as a whole. ``line`` is the physical line (1-based) or None."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


# What a file that is not a CSV text file starts with, and what to call it.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", gettext_lazy("a PNG image")),
    (b"\xff\xd8\xff", gettext_lazy("a JPEG image")),
    (b"GIF87a", gettext_lazy("a GIF image")),
    (b"GIF89a", gettext_lazy("a GIF image")),
    (b"%PDF-", gettext_lazy("a PDF document")),
    (b"PK\x03\x04", gettext_lazy("an Excel workbook (.xlsx) or another ZIP archive")),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", gettext_lazy("an Excel workbook (.xls)")),
    (b"\x1f\x8b", gettext_lazy("a gzip archive")),
)
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_WIDE_CODECS = (
    ("utf-32-le", "UTF-32"),
    ("utf-32-be", "UTF-32"),
    ("utf-16-le", "UTF-16"),
    ("utf-16-be", "UTF-16"),
)
# Control bytes that text does not hold (tab, line breaks, form feed, ESC and the old DOS
# end-of-file mark aside).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x0b\x0c\x1a\x1b")
_SNIFF_BYTES = 64 * 1024
# A three-byte UTF-8 character (kana, kanji, full-width forms): what a UTF-8 line in a CP932
# file shows. A CP932 line almost never decodes as UTF-8 with one of these in it.
_UTF8_WIDE_RE = re.compile(rb"[\xe0-\xef][\x80-\xbf]{2}")


def _not_text(kind: str) -> CsvError:
    return CsvError(
        _(
            "The file is not a CSV text file: it looks like %(kind)s. Save the customer list"
            " as CSV (UTF-8 or CP932) and upload that file."
        )
        % {"kind": kind},
        1,
    )


def _wide(name: str) -> CsvError:
    return CsvError(
        _(
            "The file is encoded in %(encoding)s, which Okuru does not read: save it as CSV in"
            " UTF-8 (or CP932)."
        )
        % {"encoding": name},
        1,
    )


def _wide_encoding(head: bytes) -> str | None:
    """ "UTF-16" or "UTF-32" when ``head`` reads as text in one of them without a BOM."""
    for codec, name in _WIDE_CODECS:
        size = len(head) - len(head) % 4
        text = head[:size].decode(codec, errors="replace")
        # Text in that encoding: no NUL characters, line breaks and cell separators in it.
        if "\x00" in text or "\n" not in text or not any(c in text for c in ",\t;"):
            continue
        unreadable = sum(1 for c in text if c == "\ufffd" or not (c.isprintable() or c in "\t\r\n"))
        if unreadable * 50 <= len(text):
            return name
    return None


def check_head(head: bytes) -> str | None:
    """Refuse a file that is not CSV text from its first bytes: UTF-16 and UTF-32 (with or
    without a byte order mark), images, archives, workbooks, binary data. Returns "utf-8-sig"
    when the file starts with a UTF-8 BOM, else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            raise _wide(name)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            raise _not_text(str(kind))
    nuls = head.count(0)
    if nuls * 20 >= len(head) > 0 and (name := _wide_encoding(head)):
        raise _wide(name)
    # A NUL or another control byte in a cell is that row's problem (the row is refused); a
    # file that is a quarter control bytes, or thousands of them, is not text at all.
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls * 4 >= len(head) > 0 or (controls >= 32 and controls * 20 >= len(head)):
        raise _not_text(str(_("binary data")))
    return None


def _read_head(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_SNIFF_BYTES)


def _valid_throughout(path: str | Path, encoding: str) -> bool:
    """Whether every byte of the file decodes, read in chunks (fast: no Python per line)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    with open(path, "rb") as f:
        try:
            while chunk := f.read(_SCAN_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _mixed(line: int, found: str, expected: str) -> CsvError:
    return CsvError(
        _(
            "Line %(line)s is %(found)s, but the rest of the file is %(expected)s: the file mixes"
            " encodings. Save the whole file in one encoding (UTF-8 is best) and import it again."
        )
        % {"line": line, "found": found, "expected": expected},
        line,
    )


def _utf8_line_in_cp932(path: str | Path) -> int | None:
    """The first line of a CP932 file that is UTF-8 text instead, if any."""
    line = 0
    with open(path, "rb") as f:
        for piece in iter(partial(f.readline, _SCAN_CHUNK), b""):
            line += 1
            if piece.isascii() or not _UTF8_WIDE_RE.search(piece):
                continue
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError:
                continue
            return line
    return None


def _utf8_evidence(path: str | Path) -> tuple[int, int, bytes, int, int]:
    """For a file that is not UTF-8 throughout, line by line: (first line that is not UTF-8,
    its offending bytes, how many lines are not, first non-ASCII line that is UTF-8 (0: none),
    how many are)."""
    bad_line, bad, bad_count, good_line, good_count = 0, b"", 0, 0, 0
    line = 0
    with open(path, "rb") as f:
        for piece in iter(partial(f.readline, _SCAN_CHUNK), b""):
            line += 1
            if piece.isascii():
                continue
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as e:
                cut = not piece.endswith(b"\n") and e.end == len(piece)
                if not (cut and len(piece) - e.start < 4):  # not a character cut in two
                    bad_count += 1
                    if not bad_line:
                        bad_line, bad = line, piece[e.start : e.end]
                    continue
            good_count += 1
            good_line = good_line or line
    return bad_line, bad, bad_count, good_line, good_count


def detect_encoding(path: str | Path) -> str:
    """ "utf-8-sig" (BOM), "utf-8" or "cp932", from the whole file.

    A file that is valid UTF-8 throughout is UTF-8 (CP932 text almost never is). Otherwise it
    is CP932 when no line of it is UTF-8 text and the whole file decodes as CP932. A file with
    lines of both is refused (``CsvError`` naming the first line not in the encoding of most
    of its lines) rather than read with part of its text garbled, and so is a file that is not
    text at all (``check_head``).
    """
    if bom := check_head(_read_head(path)):
        return bom
    if _valid_throughout(path, "utf-8"):
        return "utf-8"
    bad_line, bad, bad_count, good_line, good_count = _utf8_evidence(path)
    if good_count >= bad_count:
        raise _mixed_bytes(bad_line, bad, "utf-8")
    if good_count:
        raise _mixed(good_line, "UTF-8", ENCODING_NAMES["cp932"])
    if not _valid_throughout(path, "cp932"):
        line, bad = _locate_decode_error(path, "cp932")
        raise CsvError(
            _(
                "Line %(line)s is neither UTF-8 nor CP932 (Shift_JIS) text (bytes %(bytes)s):"
                " save the file as CSV in UTF-8 and import it again."
            )
            % {"line": line, "bytes": bad.hex(" ")},
            line,
        )
    return "cp932"


def check_cp932(path: str | Path) -> None:
    """Refuse a CP932 file with a UTF-8 line in it (its bytes are valid CP932, as garbage)."""
    if (line := _utf8_line_in_cp932(path)) is not None:
        raise _mixed(line, "UTF-8", ENCODING_NAMES["cp932"])


def _mixed_bytes(line: int, bad: bytes, encoding: str) -> CsvError:
    return CsvError(
        _(
            "Line %(line)s is not valid %(encoding)s (bytes %(bytes)s). The rest of the file is"
            " %(encoding)s: the file mixes encodings. Save the whole file in one encoding"
            " (UTF-8 is best) and import it again."
        )
        % {"line": line, "encoding": ENCODING_NAMES.get(encoding, encoding), "bytes": bad.hex(" ")},
        line,
    )


def prepare(path: str | Path, encoding: str) -> str:
    """The codec to read the file with: ``encoding`` ("auto", "utf-8-sig" or "cp932") checked
    against the file. Raises ``CsvError`` for a file that is not CSV text in that encoding, as
    far as can be told before reading it (undecodable bytes further on are found as the rows
    are read, and name their line then)."""
    if encoding == "auto":
        return detect_encoding(path)
    bom = check_head(_read_head(path))
    if encoding == "cp932":
        if bom:
            raise CsvError(
                _(
                    "The file starts with a UTF-8 byte order mark, but CP932 (Shift_JIS) was"
                    " chosen: choose UTF-8 or automatic detection."
                ),
                1,
            )
        check_cp932(path)
    return encoding


def _locate_decode_error(path: str | Path, encoding: str) -> tuple[int, bytes]:
    """(line number, offending bytes) of the first bytes that ``encoding`` cannot decode.

    Only called after decoding failed, so it may be slow; it reads bounded pieces of lines. A
    byte 0x0A is never part of a multibyte character in UTF-8 or CP932, so lines decode alone.
    """
    line = 1
    carry = b""
    with open(path, "rb") as f:
        for piece in iter(partial(f.readline, _SCAN_CHUNK), b""):
            data = carry + piece
            carry = b""
            try:
                data.decode(encoding)
            except UnicodeDecodeError as e:
                cut = not data.endswith(b"\n")
                if cut and e.end == len(data) and len(data) - e.start < 4:
                    carry = data[e.start :]  # a character split between two pieces
                    continue
                return line, data[e.start : e.end]
            if data.endswith(b"\n"):
                line += 1
    return line, carry


def _decode_error(path: str | Path, encoding: str) -> CsvError:
    line, bad = _locate_decode_error(path, encoding)
    return CsvError(
        _(
            "Line %(line)s is not valid %(encoding)s (bytes %(bytes)s). Choose the file's"
            " encoding (UTF-8 or CP932) or save it again as UTF-8."
        )
        % {"line": line, "encoding": ENCODING_NAMES.get(encoding, encoding), "bytes": bad.hex(" ")},
        line,
    )


def _lines(f: IO[str], counter: list[int]) -> Iterator[str]:
    """Physical lines, none longer than ``MAX_LINE_CHARS`` (read in bounded pieces)."""
    readline = f.readline
    limit = MAX_LINE_CHARS + 1
    n = 0
    while line := readline(limit):
        n += 1
        if len(line) >= limit and line[-1] not in "\r\n":
            counter[0] = n
            raise CsvError(
                _(
                    "Line %(line)s is longer than %(limit)s characters: this is not a CSV file of"
                    " customers (or a quote is never closed)."
                )
                % {"line": n, "limit": f"{MAX_LINE_CHARS:,}"},
                n,
            )
        counter[0] = n
        yield line


def read_rows(path: str | Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) for every record of the file; the first record is row 1.

    Rows are numbered as a spreadsheet shows them (a quoted cell with line breaks is still one
    row). Raises ``CsvError`` for undecodable bytes, over-long lines and malformed quoting.
    """
    counter = [0]
    with open(path, encoding=encoding, errors="strict", newline="") as f:
        reader = csv.reader(_lines(f, counter), strict=True)
        row = 0
        try:
            for cells in reader:
                row += 1
                yield row, cells
        except UnicodeDecodeError:
            raise _decode_error(path, encoding) from None
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                message = _(
                    "Row %(row)s has a cell longer than %(limit)s characters (is a quote never"
                    " closed?)."
                ) % {"row": row + 1, "limit": f"{MAX_FIELD_CHARS:,}"}
            elif "unexpected end of data" in str(e):
                message = _("Row %(row)s has a quote that is never closed.") % {"row": row + 1}
            else:
                message = _("Row %(row)s is not valid CSV: %(error)s") % {
                    "row": row + 1,
                    "error": e,
                }
            raise CsvError(message, counter[0]) from None


def count_lines(path: str | Path) -> int:
    """Physical lines in the file: a cheap upper bound of its rows, for progress bars."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(_SCAN_CHUNK):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


class ChunkWriter:
    """CSV rows to encoded bytes, a chunk at a time (for files and streamed downloads).

    ``encode`` raises ``UnicodeEncodeError`` when a character has no form in the encoding; the
    caller knows which rows it just wrote and names the cell.
    """

    def __init__(self, encoding: str):
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        # Incremental, so "utf-8-sig" writes its BOM once, not once per chunk.
        self.encoder = codecs.getincrementalencoder(encoding)("strict")

    def writerow(self, row: list[str]) -> None:
        self.writer.writerow(row)

    def writerows(self, rows: list[list[str]]) -> None:
        self.writer.writerows(rows)

    def take(self) -> bytes:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return self.encoder.encode(text)
