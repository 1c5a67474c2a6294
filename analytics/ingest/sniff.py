"""``sniff``: what a file is (format, columns, delimiter, header) and the column mapping the
importer would use, from its head only. Public through analytics.ingest.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from .detect import (
    DELIMITER_NAMES,
    PLT_SKIP,
    PREVIEW_ROWS,
    SAMPLE_ROWS,
    TextLayout,
    content_kind,
    decode_text,
    detect_text_format,
    norm,
    read_head,
    readable_path,
    text_layout,
)
from .plans import KNOWN_NAMES, NAMES, guess_mapping, ident, lit
from .types import FORMATS, IngestError, Sniff


def check_format(fmt: str) -> str:
    fmt = (fmt or "auto").strip().lower()
    if fmt != "auto" and fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}")
    return fmt


def sniff(path: str | Path, fmt: str = "auto") -> Sniff:
    """Recognise ``path`` (or check it fits the named format) from its head."""
    path = Path(path)
    fmt = check_format(fmt)
    head = read_head(path)
    kind = content_kind(head)
    if kind == "csv":
        text, encoding = decode_text(head, path)
        plt = path.suffix.lower() == ".plt" or text.startswith("Geolife trajectory")
        lay = text_layout(text, encoding, path, KNOWN_NAMES, PLT_SKIP if plt else 0)
        detected, variant = detect_text_format(lay, path)
        if plt:
            detected, variant = "geolife", "plt"
        sn = Sniff(format=detected, variant=variant, columns=lay.columns, mapping={},
                   preview=pd.DataFrame(), delimiter=lay.delimiter, has_header=lay.has_header,
                   kind="csv", encoding=encoding, quote=lay.quote, skip=lay.skip,
                   compression=head.compression, member=head.member, padded=lay.padded,
                   sample=lay.rows)
    else:
        sn = _sniff_table(path, kind, head.compression, head.member,
                          array=head.data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[")
    if fmt != "auto" and fmt != sn.format:
        _coerce(sn, fmt, path)
    if sn.member:
        sn.notes.append(f"reading {sn.member!r}, the largest file in the zip archive")
    if sn.encoding != "utf-8":
        sn.notes.append(f"the file is not UTF-8; read as {sn.encoding}")
    names = NAMES.get((sn.format, sn.variant))
    if names and sn.kind == "csv" and not sn.has_header and len(names) == len(sn.columns):
        sn.columns = list(names)
    sn.mapping = guess_mapping(sn, sn.format, sn.variant)
    width = len(sn.columns)
    rows = [(r + [""] * width)[:width] for r in sn.sample[:PREVIEW_ROWS]]
    sn.preview = pd.DataFrame(rows, columns=sn.columns, dtype="string")
    return sn


def _sniff_table(path: Path, kind: str, compression: str, member: str | None,
                 array: bool) -> Sniff:
    """Columns, types and sample rows of a Parquet or JSON file, through DuckDB."""
    if kind == "parquet" and compression == "gzip":
        raise IngestError("a gzip-compressed Parquet file cannot be read; Parquet compresses "
                          "itself: give the .parquet file directly", path=path)
    con = duckdb.connect()
    try:
        with tempfile.TemporaryDirectory(prefix="trailscope-sniff-") as tmp, \
                readable_path(path, compression, member, Path(tmp)) as rp:
            form = lit("array" if array else "newline_delimited")
            src = (f"read_parquet({lit(str(rp))})" if kind == "parquet" else
                   f"read_json({lit(str(rp))}, format={form})")
            desc = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
            columns = [str(r[0]) for r in desc]
            types = {str(r[0]): str(r[1]) for r in desc} if kind == "parquet" else {}
            cast = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in columns)
            sample = con.execute(f"SELECT {cast} FROM {src} LIMIT {SAMPLE_ROWS}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise IngestError(f"cannot read it as {kind} ({first}); check the file is complete",
                          path=path) from exc
    finally:
        con.close()
    if not columns:
        raise IngestError(f"the {kind} file has no columns", path=path)
    rows = [["" if v is None else str(v) for v in r] for r in sample]
    lay = TextLayout(",", True, columns, "", "utf-8", 0, False, rows)
    detected, variant = detect_text_format(lay, path)
    return Sniff(format=detected, variant="array" if array else variant, columns=columns,
                 mapping={}, preview=pd.DataFrame(), delimiter=None, has_header=False,
                 kind=kind, compression=compression, member=member, column_types=types,
                 sample=rows)


def _coerce(sn: Sniff, fmt: str, path: Path) -> None:
    """Read the file as the named format ``fmt``: pick its variant, or explain the misfit."""
    cols = {norm(c) for c in sn.columns}
    width, d = len(sn.columns), sn.delimiter
    variant: str | None = None
    expect = "a delimited text file (CSV/TSV)"
    if fmt == "generic":
        variant = "array" if sn.variant == "array" else ""
    elif sn.kind != "csv":
        variant = None
    elif fmt == "tsmc":
        if sn.has_header:
            variant = "reconstructed" if "stanpoiid" in cols else "processed"
        elif width == 8 and d == "\t":
            variant = "raw"
        expect = "8 tab-separated columns without a header, or a header with POI_id/UTC_time"
    elif fmt == "snap":
        variant = "" if not sn.has_header and width == 5 and d == "\t" else None
        expect = "5 tab-separated columns (user, ISO time, lat, lon, location id), no header"
    elif fmt == "taobao":
        variant = "" if not sn.has_header and width == 5 and d == "," else None
        expect = "5 comma-separated columns (user, item, category, behavior, unix time)"
    elif fmt == "tianchi":
        variant = "" if {"userid", "itemid", "behaviortype", "time"} <= cols else None
        expect = "a header user_id,item_id,behavior_type,user_geohash,item_category,time"
    elif fmt == "movielens":
        if sn.has_header:
            variant = "csv" if {"userid", "movieid", "rating"} <= cols else None
        elif width == 4 or (d == "::" and width >= 3):
            variant = "dat" if d == "::" else "udata"
        expect = ("u.data (user item rating time, tab), ratings.dat (::) or ratings.csv "
                  "(userId,movieId,rating,timestamp)")
    elif fmt == "geolife":
        variant = "csv" if {"lat", "lng", "datetime", "uid"} <= cols else None
        expect = "a header lat,lng,datetime,uid or a .plt trajectory file"
    if variant is None:
        found = (f"{width} {DELIMITER_NAMES.get(d or '', 'column')}-separated columns"
                 f"{' with a header' if sn.has_header else ' without a header'}"
                 if sn.kind == "csv" else f"a {sn.kind} file")
        raise IngestError(
            f"does not look like the {fmt} format: expected {expect}, "
            f"found {found} (it looks like {sn.format}). Pick another --format, or auto",
            path=path, columns=sn.columns)
    sn.format, sn.variant = fmt, variant
