"""How a file is laid out, before knowing which format it is: open it once (:class:`Source`:
the decompressed head, and a path DuckDB can read), tell CSV-like text from Parquet and JSON
lines, and find a text file's delimiter, header, quoting and sample rows (:class:`TextLayout`).
Also the value-shape tests the format modules recognise their files with.

Only the head of the file is read here (:data:`HEAD_BYTES`, decompressed); the import itself
streams the whole file through DuckDB (analytics/ingest/stage.py).

Hostile files: whatever is decompressed here (a zip member, a gzip file's counting pass, UTF-16
text) is streamed through :func:`_checked` with a byte counter that stops at
:data:`MAX_UNPACKED_BYTES` or at :data:`MAX_RATIO` times the packed size (a decompression
bomb is refused after at most :data:`RATIO_FLOOR` bytes, within seconds). Unpacked files go to
a work folder in the workspace's own temp folder (analytics/store.py ``make_work_dir``),
removed when the :class:`Source` closes; a killed import's folder is removed when the
workspace next opens.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ..store import make_work_dir, remove_work_dir, temp_root
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

#: Decompression limits: unpacking stops as soon as the output passes MAX_UNPACKED_BYTES, or
#: passes RATIO_FLOOR and MAX_RATIO times the packed size (real event logs pack 3-10 times:
#: the NYC check-ins 5.9, GeoLife 5.5; a zip bomb of one repeated row packs 400 times).
MAX_UNPACKED_BYTES = 32 * 2**30
MAX_RATIO = 100
RATIO_FLOOR = 128 * 2**20
CHUNK = 1 << 20
#: A zip's directory is parsed whole into Python objects (about 1 KB each): refuse archives
#: listing more members than this before opening them (a GeoLife archive holds ~18,700).
MAX_ZIP_MEMBERS = 100_000
#: Columns one file may have (each becomes a column of the staging query).
MAX_COLUMNS = 2000
#: Byte-order marks of the Unicode encodings decoded to UTF-8 (longest first), with the codec
#: that reads the mark itself (and drops it).
BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


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
    #: UTF-16/32 text: its codec (utf-16, utf-32; utf-16-le/-be without a byte-order mark);
    #: ``data`` then holds the head decoded to UTF-8
    transcoded_from: str | None = None


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
                check_zip_directory(raw, path)
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
        except (RuntimeError, NotImplementedError) as exc:  # zipfile's refusals
            raise unsupported_zip(exc, path) from exc
    if not head.data.strip():
        raise IngestError("the file is empty (no data after decompressing)", path=path)
    encoding = unicode_encoding(head.data)
    if encoding is not None:
        head.data = _decoder(encoding).decode(head.data, final=head.eof).encode("utf-8")
        head.transcoded_from = encoding
    return head


def unicode_encoding(data: bytes) -> str | None:
    """The codec of UTF-16/32 text starting with ``data``: from its byte-order mark, or for
    UTF-16 without one from its zero bytes (ASCII text has one in every other byte)."""
    for bom, name in BOMS:
        if data.startswith(bom):
            return name
    sample = data[:4096]
    half = len(sample) // 2
    if half < 8:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > 0.3 * half and even < 0.01 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.01 * half:
        return "utf-16-be"
    return None


def _decoder(codec: str) -> codecs.IncrementalDecoder:
    """An incremental decoder of ``codec`` (undecodable bytes become U+FFFD)."""
    return codecs.getincrementaldecoder(codec)(errors="replace")


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def check_unpacked(n: int, packed: int, what: str, path: Path) -> None:
    """IngestError when ``n`` unpacked bytes from ``packed`` bytes pass the limits."""
    advice = ("If the data is genuine, unpack it yourself and import the uncompressed file, "
              "or split it")
    if n > MAX_UNPACKED_BYTES:
        raise IngestError(f"{what} unpacks to more than {_mib(MAX_UNPACKED_BYTES)}, the most "
                          f"one import unpacks. {advice}", path=path)
    if n > RATIO_FLOOR and n > MAX_RATIO * max(packed, 1):
        raise IngestError(
            f"{what} unpacks to more than {MAX_RATIO} times its packed size ({_mib(packed)} "
            f"packed; stopped after {_mib(n)}): refused as a decompression bomb. {advice}",
            path=path)


def _checked(stream: BinaryIO, packed: int, what: str, path: Path) -> Iterator[bytes]:
    """The chunks of ``stream``, counted: IngestError as soon as they pass the limits."""
    n = 0
    while chunk := stream.read(CHUNK):
        n += len(chunk)
        check_unpacked(n, packed, what, path)
        yield chunk


def check_zip_directory(raw: BinaryIO, path: Path) -> None:
    """IngestError when the zip's end record lists more than MAX_ZIP_MEMBERS members (read
    from the last 64 KiB, before zipfile builds an object per member); leaves ``raw`` at 0."""
    size = raw.seek(0, 2)
    raw.seek(max(0, size - (1 << 16) - 22))
    tail = raw.read()
    raw.seek(0)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        return  # no end record: zipfile says the archive is damaged
    members = int.from_bytes(tail[end + 10:end + 12], "little")
    z64 = tail.rfind(b"PK\x06\x06", 0, end)
    if members == 0xFFFF and z64 >= 0 and len(tail) >= z64 + 40:
        members = int.from_bytes(tail[z64 + 32:z64 + 40], "little")
    if members > MAX_ZIP_MEMBERS:
        raise IngestError(f"the zip archive lists {members:,} files, more than the "
                          f"{MAX_ZIP_MEMBERS:,} an import opens; zip only the data file",
                          path=path)


def unsupported_zip(exc: BaseException, path: Path) -> IngestError:
    """The error for a zip member Python's zipfile will not read (a password, a method)."""
    return IngestError(f"cannot unpack it ({exc}): password-protected zip files and compression "
                       "methods other than deflate, bzip2 and LZMA are not supported; unpack "
                       "it yourself and import the data file", path=path)


def zip_member(zf: zipfile.ZipFile, path: Path) -> str:
    """The data file inside a zip: the largest member (folders and macOS metadata skipped)."""
    members = [i for i in zf.infolist()
               if not i.is_dir() and not i.filename.startswith("__MACOSX/")
               and not Path(i.filename).name.startswith(".")]
    if not members:
        raise IngestError("the zip archive holds no file to import", path=path)
    best = max(members, key=lambda i: i.file_size)
    # the declared sizes refuse an honest bomb at once; _checked stops a lying one
    check_unpacked(best.file_size, best.compress_size, f"the zip member {best.filename!r}",
                   path)
    return best.filename


class Source:
    """One file to sniff or import, opened once: its path, its decompressed head (read here),
    and on demand a path DuckDB can read (:meth:`readable`): the file itself, or its zip
    member / its text decoded from UTF-16 to UTF-8, unpacked once into a work folder of the
    workspace temp folder ``tmp_root`` (default: ``$TRAILSCOPE_HOME/tmp``) that :meth:`close`
    removes. Use it as a context manager."""

    def __init__(self, path: str | Path, tmp_root: Path | None = None) -> None:
        self.path = Path(path)
        self.head = read_head(self.path)
        self.tmp_root = temp_root() if tmp_root is None else Path(tmp_root)
        self._work: Path | None = None
        self._readable: Path | None = None
        self._size: int | None = None

    @property
    def kind(self) -> str:
        """csv, parquet or json (:func:`content_kind`)."""
        return content_kind(self.head)

    @property
    def compression(self) -> str:
        """How the file :meth:`readable` returns is packed: ``none`` once decoded to UTF-8,
        else as the head says (a zip member is unpacked either way)."""
        return "none" if self.head.transcoded_from else self.head.compression

    def size(self) -> int:
        """The unpacked size in bytes (counts a gzip file through once, within the limits)."""
        self.readable()
        assert self._size is not None
        return self._size

    def readable(self) -> Path:
        """A path DuckDB can read; the first call unpacks (zip, UTF-16) or counts (gzip)."""
        if self._readable is not None:
            return self._readable
        head = self.head
        if head.compression != "zip" and not head.transcoded_from:
            if head.compression == "gzip":  # DuckDB decompresses it; count it first
                try:
                    with gzip.open(self.path, "rb") as fh:
                        self._size = self._count(fh, None)
                except (OSError, EOFError, zlib.error) as exc:
                    raise IngestError(f"cannot decompress it ({exc}); the gzip file is damaged "
                                      "or incomplete: download or compress it again",
                                      path=self.path) from exc
            else:
                self._size = self.path.stat().st_size
            self._readable = self.path
            return self.path
        self._work = make_work_dir(self.tmp_root)
        out = self._work / unpacked_name(head.member or self.path.name)
        try:
            with self._open() as src, out.open("wb") as dst:
                self._size = self._count(src, dst)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
            self.close()
            what = f"extract {head.member!r} from the zip" if head.member else "decompress it"
            raise IngestError(f"cannot {what} ({exc}); the file is damaged or incomplete",
                              path=self.path) from exc
        except (RuntimeError, NotImplementedError) as exc:
            self.close()
            raise unsupported_zip(exc, self.path) from exc
        except BaseException:
            self.close()
            raise
        self._readable = out
        return out

    def _open(self) -> BinaryIO:
        head = self.head
        if head.compression == "zip":
            zf = zipfile.ZipFile(self.path)
            try:
                return zf.open(head.member or "")  # type: ignore[return-value]
            finally:
                zf.close()  # the member keeps its own handle of the file
        if head.compression == "gzip":
            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        return self.path.open("rb")

    def _count(self, src: BinaryIO, dst: BinaryIO | None) -> int:
        """Stream ``src`` (decoded to UTF-8 when the text is UTF-16/32) into ``dst``; the
        unpacked bytes, checked against the limits while they stream."""
        head, n = self.head, 0
        packed = self.path.stat().st_size
        if head.compression == "zip":
            with zipfile.ZipFile(self.path) as zf:
                packed = zf.getinfo(head.member or "").compress_size
        what = (f"the zip member {head.member!r}" if head.member else
                "the gzip file" if head.compression == "gzip" else "the file")
        decoder = _decoder(head.transcoded_from) if head.transcoded_from else None
        for chunk in _checked(src, packed, what, self.path):
            n += len(chunk)
            if dst is not None:
                dst.write(decoder.decode(chunk).encode("utf-8") if decoder else chunk)
        if dst is not None and decoder is not None:
            dst.write(decoder.decode(b"", final=True).encode("utf-8"))
        return n

    def close(self) -> None:
        """Remove the work folder (an unpacked member, a decoded copy)."""
        if self._work is not None:
            remove_work_dir(self._work)
            self._work, self._readable = None, None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def unpacked_name(name: str) -> str:
    """A plain file name for an unpacked copy of ``name`` (DuckDB's errors show it): its last
    part, other characters as ``_``, a compression suffix dropped."""
    base = re.sub(r"[^\w.\-]+", "_", Path(name).name)[-100:].lstrip(".")
    base = re.sub(r"\.(gz|zip|zst|bz2|xz)$", "", base, flags=re.IGNORECASE)
    return base or "unpacked.txt"


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
        try:
            return next(csv.reader([line], delimiter=delim, quotechar=quote), [])
        except csv.Error:  # e.g. a lone carriage return inside the line
            pass
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
    taken: set[str] = set()
    last: dict[str, int] = {}  # base name -> the last suffix tried (linear, not quadratic)
    for i, raw in enumerate(header[:width] + [""] * (width - len(header))):
        name = raw.strip().strip('"') or f"column{i}"
        base, k = name, last.get(name, 1)
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        last[base] = k
        taken.add(name)
        names.append(name)
    return names


def check_width(width: int, path: Path) -> None:
    """IngestError for more columns than an import plans (:data:`MAX_COLUMNS`)."""
    if width > MAX_COLUMNS:
        raise IngestError(f"has {width:,} columns, more than the {MAX_COLUMNS:,} an import "
                          "reads; keep the columns of the events (user, item, time, ...) and "
                          "export again", path=path)


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
    check_width(width, path)
    # a line with an odd number of quotes opens (or closes) a field that spans lines
    multiline = bool(quote) and delim != "::" and any(ln.count(quote) % 2 for ln in lines)
    rows = [split_line(ln, delim, quote) for ln in lines]
    if multiline:
        try:
            rows = [r for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delim,
                                          quotechar=quote) if r][: SAMPLE_ROWS + 1]
        except csv.Error:  # not parseable as CSV after all: keep the rows line by line
            multiline = False
    header = has_header(rows, known) if len(rows[0]) == width else False
    data = rows[1:] if header else rows
    padded = any(v != v.strip() for r in data[:200] for v in r if v)
    return TextLayout(delim, header, column_names(rows[0] if header else None, width),
                      quote, encoding, skip, padded, data[:SAMPLE_ROWS], multiline)
