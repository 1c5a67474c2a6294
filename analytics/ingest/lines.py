"""Row index -> 1-based file line number, for the examples in an import report.

DuckDB stages rows in file order, so a staged row's ``rowid`` is its position among the
rows DuckDB produced. Lines that produced no row are the preamble/header, empty lines and
lines rejected as malformed (DuckDB reports those with their own line numbers). This module
finds the empty lines (only when an example needs a line number, with a C-speed scan that
stops as soon as it has passed the rows asked for) and maps positions to lines.

Assumes one record per line (a quoted field spanning lines shifts later numbers).
"""

from __future__ import annotations

import bisect
import gzip
import re
from pathlib import Path
from typing import BinaryIO

_CHUNK = 8 << 20
_EMPTY_LINE = re.compile(rb"\n\r?(?=\n)")


def _open(path: Path, compression: str) -> BinaryIO:
    if compression == "gzip" or (compression == "auto" and path.suffix.lower() == ".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def empty_lines(path: Path, compression: str, up_to_rows: int, first_data_line: int,
                excluded: list[int]) -> list[int]:
    """1-based numbers of the empty lines, scanning until ``up_to_rows`` rows are passed."""
    found: list[int] = []
    base = 0  # number of the line ended by the newline that starts ``buf``
    carry = b"\n"  # a virtual newline before line 1 lets the regex see an empty first line
    with _open(path, compression) as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            buf = carry + chunk
            at_line, pos = base, 0
            for m in _EMPTY_LINE.finditer(buf):
                at_line += buf.count(b"\n", pos, m.start() + 1)
                pos = m.start() + 1
                found.append(at_line)  # the line starting after this newline is empty
            base += buf.count(b"\n") - 1
            carry = buf[buf.rfind(b"\n"):]
            rows = base - (first_data_line - 1) - len(found) - bisect.bisect_right(excluded, base)
            if rows > up_to_rows + 1:
                break
    return found


def rows_to_lines(rowids: list[int], first_data_line: int, excluded: list[int]) -> list[int]:
    """Line numbers of the 0-based row positions ``rowids``; ``excluded`` lists the lines
    at or after ``first_data_line`` that produced no row (sorted or not)."""
    skip = sorted(set(x for x in excluded if x >= first_data_line))
    out: dict[int, int] = {}
    k = 0  # how many of ``skip`` lie at or before the current candidate line
    for r in sorted(set(rowids)):
        line = first_data_line + r + k
        while k < len(skip) and skip[k] <= line:
            k += 1
            line += 1
        out[r] = line
    return [out[r] for r in rowids]


def lines_for(rowids: list[int], *, path: Path | None, compression: str, kind: str,
              first_data_line: int, malformed: list[int]) -> list[int]:
    """Map staged row positions to file line numbers (see the module docstring)."""
    if not rowids:
        return []
    if kind != "csv" or path is None:
        return [r + first_data_line for r in rowids]
    blanks = empty_lines(path, compression, max(rowids), first_data_line, sorted(malformed))
    return rows_to_lines(rowids, first_data_line, blanks + list(malformed))
