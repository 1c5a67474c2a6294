"""How a file is laid out, before knowing which format it is: open it once (:class:`Source`:
the decompressed head, and a path DuckDB can read), tell CSV-like text from Parquet and JSON
lines, and find a text file's delimiter, header, quoting and sample rows (:class:`TextLayout`).
Also the value-shape tests the format modules recognise their files with.

Only the head of the file is read here (:data:`HEAD_BYTES`, decompressed); the import itself
streams the whole file through DuckDB (analytics/ingest/stage.py).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import timeparse
from .types import IngestError

HEAD_BYTES = 256 * 1024
SAMPLE_ROWS = 500
PREVIEW_ROWS = 10
#: Candidate delimiters, in order of preference when several fit equally well.
DELIMITERS: tuple[str, ...] = ("::", "\t", ",", ";", "|")
DELIMITER_NAMES = {"::": "'::'", "\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_IDENT_RE = re.compile(r"^[A-Za-z_][\w .\-()/#]*$")


def norm(name: str) -> str:
    """Column name normalised for matching: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass
class Head:
    """The decompressed first bytes of a file and how it is packed."""

    data: bytes
    compression: str  # none | gzip | zip
    member: str | None  # the member read inside a zip
    eof: bool  # True when ``data`` is the whole (decompressed) file


def read_head(path: Path, limit: int = HEAD_BYTES) -> Head:
    """Read (and decompress) up to ``limit`` bytes; IngestError for missing/empty/broken files."""
    if not path.exists():
        raise IngestError("file not found; check the path", path=path)
    if path.is_dir():
        raise IngestError("is a folder, not a file; give the path of a data file", path=path)
    if path.stat().st_size == 0:
        raise IngestError("the file is empty (0 bytes); nothing to import", path=path)
    with path.open("rb") as raw:  # opened once: the magic bytes, then the head itself
        magic = raw.read(4)
        raw.seek(0)
        try:
            if magic[:2] == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                    data = fh.read(limit + 1)
                head = Head(data[:limit], "gzip", None, len(data) <= limit)
            elif magic == b"PK\x03\x04":
                with zipfile.ZipFile(raw) as zf:
                    member = zip_member(zf, path)
                    with zf.open(member) as fh:
                        data = fh.read(limit + 1)
                head = Head(data[:limit], "zip", member, len(data) <= limit)
            else:
                data = raw.read(limit + 1)
                head = Head(data[:limit], "none", None, len(data) <= limit)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            kind = "zip" if magic == b"PK\x03\x04" else "gzip"
            raise IngestError(f"cannot decompress it ({exc}); the {kind} file is damaged or "
                              "incomplete: download or compress it again", path=path) from exc
    if not head.data.strip():
        raise IngestError("the file is empty (no data after decompressing)", path=path)
    return head


def zip_member(zf: zipfile.ZipFile, path: Path) -> str:
    """The data file inside a zip: the largest member (folders and macOS metadata skipped)."""
    members = [i for i in zf.infolist()
               if not i.is_dir() and not i.filename.startswith("__MACOSX/")
               and not Path(i.filename).name.startswith(".")]
    if not members:
        raise IngestError("the zip archive holds no file to import", path=path)
    return max(members, key=lambda i: i.file_size).filename


class Source:
    """One file to sniff or import, opened once: its path, its decompressed head (read here),
    and on demand a path DuckDB can read: the file itself, or its zip member extracted once
    into a temp folder that :meth:`close` removes. Use it as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.head = read_head(self.path)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._readable: Path | None = None

    @property
    def kind(self) -> str:
        """csv, parquet or json (:func:`content_kind`)."""
        return content_kind(self.head)

    def readable(self) -> Path:
        """A path DuckDB can read (a zip member is extracted on the first call only)."""
        if self._readable is not None:
            return self._readable
        if self.head.compression != "zip":
            self._readable = self.path
            return self.path
        member = self.head.member
        self._tmp = tempfile.TemporaryDirectory(prefix="trailscope-import-")
        out = Path(self._tmp.name) / Path(member or "member").name
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(member or "") as src, \
                    out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
            raise IngestError(f"cannot extract {member!r} from the zip ({exc})",
                              path=self.path) from exc
        self._readable = out
        return out

    def close(self) -> None:
        """Remove an extracted zip member."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self._readable = None, None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def content_kind(head: Head) -> str:
    """csv, parquet or json, from the first bytes."""
    if head.data[:4] == b"PAR1":
        return "parquet"
    start = head.data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return "json"
    return "csv"


def decode_text(head: Head, path: Path) -> tuple[str, str]:
    """(text, encoding) of a text head; IngestError when it looks binary."""
    data = head.data
    if not head.eof:  # drop the last, probably cut, line
        cut = data.rfind(b"\n")
        data = data[:cut + 1] if cut > 0 else data
    sample = data[:65536]
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32 or b == 127)
    if b"\x00" in sample or controls > max(2, len(sample) // 100):
        raise IngestError(
            "looks like a binary file, not text (CSV/TSV), Parquet or JSON lines; export the "
            "data as CSV, or give the uncompressed/gzip/zip file itself", path=path)
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def split_line(line: str, delim: str, quote: str) -> list[str]:
    """One line's fields (``::`` is split plainly: DuckDB reads it without quoting)."""
    if delim == "::":
        return line.split("::")
    if quote:
        return next(csv.reader([line], delimiter=delim, quotechar=quote), [])
    return line.split(delim)


def choose_delimiter(lines: list[str], quote: str) -> tuple[str, int] | None:
    """(delimiter, fields per row) that splits the lines consistently, or None."""
    best: tuple[int, int] | None = None  # (fields per row, -preference rank)
    for rank, delim in enumerate(DELIMITERS):
        if delim == "::" and not all("::" in ln for ln in lines):
            continue
        counts = Counter(len(split_line(ln, delim, quote)) for ln in lines)
        width, n = counts.most_common(1)[0]
        if width < 2 or n < 0.9 * len(lines):
            continue
        if delim == "::":
            return delim, width
        if best is None or (width, -rank) > best:
            best = (width, -rank)
    if best is None:
        return None
    return DELIMITERS[-best[1]], best[0]


def is_number(s: str) -> bool:
    """A decimal or scientific number."""
    return bool(_NUM_RE.match(s.strip()))


def is_int(s: str) -> bool:
    """An integer."""
    return bool(_INT_RE.match(s.strip()))


def column_all(rows: list[list[str]], j: int, pred: Callable[[str], bool]) -> bool:
    """True when column ``j`` has values in the first 50 sample rows and all fit ``pred``."""
    vals = [r[j] for r in rows[:50] if j < len(r) and r[j].strip()]
    return bool(vals) and all(pred(v) for v in vals)


def looks_like_data(s: str) -> bool:
    """A value that is data, not a column name: a number or a timestamp."""
    s = s.strip()
    return bool(s) and (is_number(s) or any(timeparse.matches(k, s)
                                            for k in ("iso", "tsmc", "date_hour")))


def has_header(rows: list[list[str]], known: AbstractSet[str]) -> bool:
    """Guess whether ``rows[0]`` names the columns (``known``: normalised familiar names)."""
    first, rest = rows[0], rows[1:]
    if any(looks_like_data(f) for f in first):
        return False
    if any(norm(f) in known for f in first):
        return True
    if not all(_IDENT_RE.match(f.strip()) for f in first if f.strip()):
        return False
    if not rest:
        return True
    for j in range(len(first)):
        col = [r[j] for r in rest if j < len(r) and r[j].strip()]
        if col and sum(looks_like_data(v) for v in col) >= 0.8 * len(col):
            return True
    return all(first[j] not in {r[j] for r in rest if j < len(r)} for j in range(len(first)))


def column_names(header: list[str] | None, width: int) -> list[str]:
    """Unique, non-empty column names (``column0``... when there is no header)."""
    if header is None:
        return [f"column{i}" for i in range(width)]
    names: list[str] = []
    for i, raw in enumerate(header[:width] + [""] * (width - len(header))):
        name = raw.strip().strip('"') or f"column{i}"
        base, k = name, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    return names


@dataclass
class TextLayout:
    """A CSV-like file's layout (or a Parquet/JSON file's columns and sample, as text)."""

    delimiter: str
    has_header: bool
    columns: list[str]
    quote: str
    encoding: str
    skip: int
    padded: bool  # some values carry leading/trailing blanks
    rows: list[list[str]]  # sample data rows (header excluded)
    multiline: bool = False  # a quoted field spans lines

    @property
    def names(self) -> set[str]:
        """The column names, normalised (:func:`norm`)."""
        return {norm(c) for c in self.columns}


def text_layout(text: str, encoding: str, path: Path, known: AbstractSet[str],
                skip: int = 0) -> TextLayout:
    """Delimiter, header and sample rows of a CSV-like head; IngestError when it has none."""
    lines = [ln.rstrip("\r") for ln in text.split("\n")[skip:]]
    lines = [ln for ln in lines if ln.strip()][: SAMPLE_ROWS + 1]
    if not lines:
        raise IngestError("has no data lines", path=path)
    quote = '"' if any(re.search(r'(^|[,\t;|])"', ln) for ln in lines[:200]) else ""
    found = choose_delimiter(lines[:200], quote)
    if found is None:
        raise IngestError(
            "found a single column: no comma, tab, semicolon, pipe or '::' separates the "
            f"values consistently (first line: {lines[0][:120]!r}). Save the file as CSV or "
            "TSV with one event per line", path=path, columns=[lines[0][:60]])
    delim, width = found
    # a line with an odd number of quotes opens (or closes) a field that spans lines
    multiline = bool(quote) and delim != "::" and any(ln.count(quote) % 2 for ln in lines)
    if multiline:
        rows = [r for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delim,
                                      quotechar=quote) if r][: SAMPLE_ROWS + 1]
    else:
        rows = [split_line(ln, delim, quote) for ln in lines]
    header = has_header(rows, known) if len(rows[0]) == width else False
    data = rows[1:] if header else rows
    padded = any(v != v.strip() for r in data[:200] for v in r if v)
    return TextLayout(delim, header, column_names(rows[0] if header else None, width),
                      quote, encoding, skip, padded, data[:SAMPLE_ROWS], multiline)
