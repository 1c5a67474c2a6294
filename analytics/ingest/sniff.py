"""Step 1 of an import, **sniff**: what a file is, from its head only: its layout (CSV-like
text, Parquet or JSON lines; delimiter, header, quoting, compression), which known format and
variant it is (asking the format modules through formats/registry.py), and the column mapping
the importer would use. Public as ``analytics.ingest.pipeline.sniff``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from .formats import registry
from .formats.base import TEXT_FILE
from .layout import (
    DELIMITER_NAMES,
    PREVIEW_ROWS,
    SAMPLE_ROWS,
    Source,
    TextLayout,
    check_width,
    decode_text,
    text_layout,
)
from .plan import guess_mapping
from .sql import ident, lit
from .types import IngestError, Sniff


def check_format(fmt: str) -> str:
    """``fmt`` normalised (``auto`` or a registered format); IngestError for an unknown one."""
    fmt = (fmt or "auto").strip().lower()
    if fmt != "auto":
        registry.get(fmt)
    return fmt


def sniff(path: str | Path, fmt: str = "auto", tmp_root: Path | None = None) -> Sniff:
    """Recognise ``path`` (or check it fits the named format) from its head (``tmp_root``:
    the workspace temp folder a zipped Parquet/JSON file is unpacked into, for its columns)."""
    fmt = check_format(fmt)
    with Source(path, tmp_root) as src:
        return sniff_source(src, fmt)


def sniff_source(src: Source, fmt: str = "auto") -> Sniff:
    """:func:`sniff` of an opened file (``fmt`` as checked by :func:`check_format`)."""
    path, head = src.path, src.head
    if src.kind == "csv":
        text, encoding = decode_text(head, path)
        claimed = registry.claim(path, text)
        skip = claimed[0].preamble.get(claimed[1], 0) if claimed else 0
        lay = text_layout(text, encoding, path, registry.HEADER_NAMES, skip)
        form, variant = claimed or registry.recognise(lay, path)
        sn = Sniff(format=form.name, variant=variant, columns=lay.columns, mapping={},
                   preview=pd.DataFrame(), delimiter=lay.delimiter, has_header=lay.has_header,
                   kind="csv", encoding=encoding, quote=lay.quote, skip=lay.skip,
                   compression=src.compression, member=head.member, padded=lay.padded,
                   multiline=lay.multiline, sample=lay.rows)
    else:
        sn = _sniff_table(src, array=head.data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[")
    if fmt != "auto" and fmt != sn.format:
        _coerce(sn, fmt, path)
    if sn.member:
        sn.notes.append(f"reading {sn.member!r}, the largest file in the zip archive")
    if head.transcoded_from:  # DuckDB reads the UTF-8 copy (Source.readable)
        sn.notes.append(f"the file is {head.transcoded_from.upper()} text; decoded to UTF-8")
    elif sn.encoding != "utf-8":
        sn.notes.append(f"the file is not UTF-8; read as {sn.encoding}")
    form = registry.get(sn.format)
    names = form.names.get(sn.variant)
    if names and sn.kind == "csv" and not sn.has_header and len(names) == len(sn.columns):
        sn.columns = list(names)
    sn.mapping = guess_mapping(sn, form)
    width = len(sn.columns)
    rows = [(r + [""] * width)[:width] for r in sn.sample[:PREVIEW_ROWS]]
    sn.preview = pd.DataFrame(rows, columns=sn.columns, dtype="string")
    return sn


def _sniff_table(src: Source, array: bool) -> Sniff:
    """Columns, types and sample rows of a Parquet or JSON file, through DuckDB."""
    path, kind, compression = src.path, src.kind, src.compression
    if kind == "parquet" and compression == "gzip":
        raise IngestError("a gzip-compressed Parquet file cannot be read; Parquet compresses "
                          "itself: give the .parquet file directly", path=path)
    con = duckdb.connect()
    try:
        rp = src.readable()
        form = lit("array" if array else "newline_delimited")
        source = (f"read_parquet({lit(str(rp))})" if kind == "parquet" else
                  f"read_json({lit(str(rp))}, format={form})")
        desc = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        columns = [str(r[0]) for r in desc]
        types = {str(r[0]): str(r[1]) for r in desc} if kind == "parquet" else {}
        cast = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in columns)
        sample = con.execute(f"SELECT {cast} FROM {source} LIMIT {SAMPLE_ROWS}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise IngestError(f"cannot read it as {kind} ({first}); check the file is complete",
                          path=path) from exc
    finally:
        con.close()
    if not columns:
        raise IngestError(f"the {kind} file has no columns", path=path)
    check_width(len(columns), path)
    rows = [["" if v is None else str(v) for v in r] for r in sample]
    lay = TextLayout(",", True, columns, "", "utf-8", 0, False, rows)
    found, variant = registry.claim(path, None) or registry.recognise(lay, path)
    return Sniff(format=found.name, variant="array" if array else variant, columns=columns,
                 mapping={}, preview=pd.DataFrame(), delimiter=None, has_header=False,
                 kind=kind, compression=compression, member=src.head.member,
                 column_types=types, sample=rows)


def _coerce(sn: Sniff, fmt: str, path: Path) -> None:
    """Read the file as the named format ``fmt``: pick its variant, or explain the misfit."""
    form = registry.get(fmt)
    variant = form.fit(sn) if sn.kind == "csv" or not form.text_only else None
    if variant is None:
        width, d = len(sn.columns), sn.delimiter
        expect = form.expect if sn.kind == "csv" else TEXT_FILE
        found = (f"{width} {DELIMITER_NAMES.get(d or '', 'column')}-separated columns"
                 f"{' with a header' if sn.has_header else ' without a header'}"
                 if sn.kind == "csv" else f"a {sn.kind} file")
        raise IngestError(
            f"does not look like the {fmt} format: expected {expect}, "
            f"found {found} (it looks like {sn.format}). Pick another --format, or auto",
            path=path, columns=sn.columns)
    sn.format, sn.variant = fmt, variant
