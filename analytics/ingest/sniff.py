"""Step 1 of an import, **sniff**: what a file is, from its head only: its layout (CSV-like
text, Parquet or JSON lines; delimiter, header, quoting, compression), which known format and
variant it is (asking the format modules through formats/registry.py), and the column mapping
the importer would use. Public as ``analytics.ingest.pipeline.sniff``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from .. import schema
from .formats import registry
from .formats.base import TEXT_FILE, Format
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
from .sql import category_sql, ident, lit, samples
from .stage import SWAP_SHARE, polar_swappable
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
    detected = sn.format
    if fmt != "auto" and fmt != sn.format:
        _coerce(sn, fmt, path)
    if sn.member:
        sn.notes.append(f"Reading {sn.member}, the largest file in the zip archive.")
    if head.transcoded_from:  # DuckDB reads the UTF-8 copy (Source.readable)
        sn.notes.append(f"The file is {head.transcoded_from.upper()} text, decoded to UTF-8.")
    elif sn.encoding != "utf-8":
        sn.notes.append(f"The file is not UTF-8 text; it is read as {sn.encoding}.")
    form = registry.get(sn.format)
    names = form.names.get(sn.variant)
    if names and sn.kind == "csv" and not sn.has_header and len(names) == len(sn.columns):
        sn.columns = list(names)
    sn.mapping = guess_mapping(sn, form)
    # a format named but also recognised (the Data page names the one it showed) is recognised
    sn.notes.insert(0, recognition_note(sn, form, chosen=fmt not in ("auto", detected),
                                        detected=registry.get(detected)))
    sn.notes.extend(category_notes(sn))
    sn.warnings.extend(swap_warnings(sn))
    width = len(sn.columns)
    rows = [(r + [""] * width)[:width] for r in sn.sample[:PREVIEW_ROWS]]
    sn.preview = pd.DataFrame(rows, columns=sn.columns, dtype="string")
    return sn


def recognition_note(sn: Sniff, form: Format, *, chosen: bool, detected: Format) -> str:
    """What the file was recognised as, and from what, in the user's words."""
    label = form.label or form.name
    if chosen:
        other = ("" if detected.name == form.name else
                 f" (on its own it would be read as {detected.label or detected.name})")
        return f"Read as {label}, as chosen{other}."
    if form.name == "generic":
        return ("No known format recognised: read as a generic event table, each field taken "
                "from the column named like it.")
    if sn.has_header or sn.kind != "csv":
        used = set(sn.mapping.values())
        return f"Recognised as {label} (columns {', '.join(c for c in sn.columns if c in used)})."
    delim = DELIMITER_NAMES.get(sn.delimiter or "", "column")
    return (f"Recognised as {label} from its {len(sn.columns)} {delim}-separated columns "
            f"without a header, read as {', '.join(sn.columns)}.")


def category_notes(sn: Sniff) -> list[str]:
    """A note when the category column holds lists of dicts, which are read as their names
    (the stage step's ``category_sql``, run here on one sampled value for the example)."""
    col = sn.mapping.get(schema.CATEGORY)
    if col is None or col not in sn.columns:
        return []
    lists = [v for v in samples(sn, col) if v.lstrip().startswith("[{")]
    if not lists:
        return []
    con = duckdb.connect()
    try:
        name = con.execute(f"SELECT {category_sql('c')} FROM (SELECT ?::VARCHAR AS c)",
                           [lists[0]]).fetchone()[0]
    finally:
        con.close()
    if name == lists[0]:
        return []
    example = lists[0] if len(lists[0]) <= 80 else lists[0][:79] + "…"
    return [f"The categories ({col}) are lists such as “{example}”: each event gets the "
            f"names in its list (“{name}”)."]


def _numbers(values: list[str]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        try:
            out.append(float(v))
        except ValueError:
            out.append(None)
    return out


def swap_warnings(sn: Sniff) -> list[str]:
    """A warning when the sampled rows' latitude and longitude look swapped: most latitudes
    beyond ±90° with longitudes that would be valid latitudes, or most points polar but not
    when swapped (stage.polar_swappable). The same rules as the import report's."""
    lat_col, lon_col = sn.mapping.get(schema.LAT), sn.mapping.get(schema.LON)
    if not lat_col or not lon_col or lat_col == lon_col or not {lat_col, lon_col} <= set(
            sn.columns):
        return []
    pairs = [(a, b) for a, b in zip(_numbers(samples(sn, lat_col)),
                                    _numbers(samples(sn, lon_col)), strict=False)
             if a is not None and b is not None and not (a == 0 and b == 0)]
    if not pairs:
        return []
    beyond = [p for p in pairs if 90 < abs(p[0]) <= 180 and abs(p[1]) <= 90]
    polar = [p for p in pairs if abs(p[0]) <= 90 and polar_swappable(*p)]
    for found, where in ((beyond, "a latitude beyond ±90°"),
                         (polar, "a point in Antarctica or the high Arctic")):
        if len(found) >= SWAP_SHARE * len(pairs):
            lat, lon = found[0]
            return [f"Latitude and longitude look swapped: {len(found)} of the first "
                    f"{len(pairs)} rows give {where} (latitude {lat:g} from column {lat_col}, "
                    f"longitude {lon:g} from column {lon_col}). Swap the two columns in the "
                    "mapping before importing."]
    return []


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
