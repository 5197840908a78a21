"""Reading and writing CSV files the way Japanese and English spreadsheet users have them.

Reading streams: a file of any size goes through in constant memory. Encoding is UTF-8 (with or
without BOM) or CP932 (Shift_JIS as Excel writes it in Japan), detected or chosen. Every problem
with the file itself (bytes that are not the encoding, a line too long to be a customer row, bad
quoting) raises ``CsvError`` naming the line, so an operator can open the file and fix it.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO

from django.utils.translation import gettext as _

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


def detect_encoding(path: str | Path) -> str:
    """ "utf-8-sig" (BOM), "utf-8" or "cp932".

    The first non-ASCII bytes decide: they are tried as strict UTF-8 (which CP932 text almost
    never is), else as CP932. A file that is ASCII throughout is UTF-8. Reading stops at the first
    chunk with non-ASCII bytes, so a large file is not scanned twice.
    """
    with open(path, "rb") as f:
        head = f.read(3)
        if head == codecs.BOM_UTF8:
            return "utf-8-sig"
        f.seek(0)
        utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        cp932 = codecs.getincrementaldecoder("cp932")("strict")
        while chunk := f.read(_SCAN_CHUNK):
            if chunk.isascii():
                continue
            try:
                utf8.decode(chunk)
                return "utf-8"
            except UnicodeDecodeError:
                pass
            try:
                cp932.decode(chunk)
            except UnicodeDecodeError:
                # Neither: say UTF-8 so the error names the first bad line in the common encoding.
                return "utf-8"
            return "cp932"
    return "utf-8"


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
