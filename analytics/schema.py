"""The canonical event schema. This is the only module that spells the column names.

Every other module imports the constants below instead of writing ``"user_id"`` itself, so a
rename happens in exactly one place (DESIGN.md, "Canonical event schema").
"""

from __future__ import annotations

import re

USER = "user_id"
ITEM = "item_id"
TS = "ts"
LAT = "lat"
LON = "lon"
BEHAVIOR = "behavior"
CATEGORY = "category"
VALUE = "value"
TZ_OFFSET = "tz_offset_min"

#: Column order of every stored events table.
COLUMNS: tuple[str, ...] = (USER, ITEM, TS, LAT, LON, BEHAVIOR, CATEGORY, VALUE, TZ_OFFSET)
REQUIRED: tuple[str, ...] = (USER, ITEM, TS)

#: DuckDB types of the stored columns. ``ts`` is a naive TIMESTAMP holding UTC.
DUCKDB_TYPES: dict[str, str] = {
    USER: "VARCHAR",
    ITEM: "VARCHAR",
    TS: "TIMESTAMP",
    LAT: "DOUBLE",
    LON: "DOUBLE",
    BEHAVIOR: "VARCHAR",
    CATEGORY: "VARCHAR",
    VALUE: "DOUBLE",
    TZ_OFFSET: "INTEGER",
}

#: pandas dtypes used when events are materialised as a DataFrame.
PANDAS_DTYPES: dict[str, str] = {
    USER: "string",
    ITEM: "string",
    TS: "datetime64[us]",
    LAT: "float64",
    LON: "float64",
    BEHAVIOR: "string",
    CATEGORY: "string",
    VALUE: "float64",
    TZ_OFFSET: "Int32",
}

DEFAULT_BEHAVIOR = "visit"

#: Dataset names double as URL parameters, file names and SQL identifiers, so they are kept
#: plain. SQL identifiers ignore case, so two names that differ only in case are one dataset:
#: the store compares names case-insensitively (analytics/store.py).
DATASET_NAME_MAX = 64
DATASET_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_\-]{{0,{DATASET_NAME_MAX - 1}}}")


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name, else raise ``ValueError`` saying why.
    The one rule for dataset names; the whole string must match (no blank, no newline)."""
    if not isinstance(name, str) or not DATASET_NAME_RE.fullmatch(name):
        shown = repr(name if not isinstance(name, str) or len(name) <= 80 else name[:80] + "...")
        raise ValueError(
            f"invalid dataset name {shown}: use 1-{DATASET_NAME_MAX} letters, digits, '_' or "
            "'-', starting with a letter or digit (case does not matter: 'NYC' and 'nyc' are "
            "the same dataset)"
        )
    return name


def clean_dataset_name(name: str) -> str:
    """A dataset name as typed (surrounding blanks and newlines stripped), checked by
    :func:`check_dataset_name`: what the importer, the CLI and the services accept."""
    return check_dataset_name(name.strip() if isinstance(name, str) else name)


def create_table_sql(table: str) -> str:
    """``CREATE TABLE`` statement for an events table in the canonical schema."""
    cols = ", ".join(f"{c} {DUCKDB_TYPES[c]}" for c in COLUMNS)
    return f"CREATE TABLE {table} ({cols})"
