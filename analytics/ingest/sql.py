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


#: One ``'name': '...'`` / ``"name": "..."`` entry of a category list (Python or JSON quoting,
#: backslash escapes allowed inside the value).
_NAME_ENTRY = r"""['"]name['"]\s*:\s*(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_NAME_PREFIX = r"""^['"]name['"]\s*:\s*['"]|['"]$"""


def category_sql(expr: str) -> str:
    """SQL of the category text ``expr`` with list-of-dict values read as their names.

    Gowalla exports (and other API dumps) give a place's categories as one string holding a
    Python or JSON list of dicts, e.g. ``[{'url': '/categories/45', 'name': 'Airport'}]``:
    such a value becomes its ``name`` entries joined with ", " (``Airport``; ``Coffee Shop,
    Bakery``). A value of another shape, or a list without any name, is kept as it is.
    Vectorised: values not starting with ``[{`` only pay for the prefix test. ``expr`` is
    repeated, so it should be a column (the plan's ``c``).
    """
    names = (f"array_to_string(list_transform(regexp_extract_all({expr}, {lit(_NAME_ENTRY)}), "
             f"lambda _m: regexp_replace(regexp_replace(_m, {lit(_NAME_PREFIX)}, '', 'g'), "
             r"'\\(.)', '\1', 'g')), ', ')")
    return (f"CASE WHEN starts_with(ltrim({expr}), '[{{') THEN "
            f"coalesce(nullif({names}, ''), {expr}) ELSE {expr} END")
