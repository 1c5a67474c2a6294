"""Quoting for the SQL the importer writes, and a sniffed column read as text."""

from __future__ import annotations

from .types import Sniff


def ident(col: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + col.replace('"', '""') + '"'


def lit(s: str) -> str:
    """A string as a SQL literal."""
    return "'" + s.replace("'", "''") + "'"


def source_text(sn: Sniff, col: str) -> str:
    """Column ``col`` of the sniffed file as VARCHAR (Parquet columns may be typed)."""
    typ = sn.column_types.get(col, "VARCHAR").upper()
    return ident(col) if typ == "VARCHAR" else f"CAST({ident(col)} AS VARCHAR)"


def text_or_null(sn: Sniff, col: str) -> str:
    """The column as text, empty -> NULL (DuckDB's CSV reader already reads empty fields as
    NULL, so plain CSV columns need no extra work)."""
    s = source_text(sn, col)
    if sn.padded:
        return f"nullif(trim({s}), '')"
    return s if sn.kind == "csv" else f"nullif({s}, '')"


def samples(sn: Sniff, col: str) -> list[str]:
    """The sniffed sample values of column ``col``."""
    j = sn.columns.index(col)
    return [r[j] for r in sn.sample if j < len(r)]
