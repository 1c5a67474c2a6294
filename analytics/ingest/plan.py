"""Step 2 of an import, **plan**: which source column feeds each canonical field, and the SQL
that turns it into the canonical type (a :class:`~analytics.ingest.types.Plan`).

The mapping is the format's column table for its variant (or, for generic files, a guess from
the column names: formats/generic.py), updated with the user's mapping and checked for the
required fields. The time column's form is detected from the sniffed samples
(analytics/ingest/timeparse.py); then the format module's own rules adjust the SQL
(formats/*.py: time zones, behaviour codes, geohashes, genres, stay points).
"""

from __future__ import annotations

from pathlib import Path

from .. import schema
from ..spacetime import BASIS_FILE, BASIS_FORMAT
from . import timeparse
from .formats.base import Format
from .formats.generic import ALIASES
from .layout import norm
from .sql import ident, lit, samples, text_or_null
from .types import ALIAS, FIELDS, IngestError, Plan, Sniff

T, TZ = schema.TS, schema.TZ_OFFSET
#: The SQL of tz_offset_min from its mapped column (NULL when none is mapped).
TZ_FROM_COLUMN = "CAST(TRY_CAST(z AS DOUBLE) AS INTEGER)"


def _find(columns: list[str], candidates: tuple[str, ...], used: set[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(norm(c), c)
    for cand in candidates:
        c = by_norm.get(norm(cand))
        if c is not None and c not in used:
            return c
    return None


def guess_mapping(sn: Sniff, form: Format) -> dict[str, str]:
    """Field -> source column the format's variant (or, without a column table of its own,
    the column names) implies."""
    table = form.columns.get(sn.variant)
    by_name = table is None  # each column feeds one field at most
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fld, cands in (ALIASES if table is None else table).items():
        col = _find(sn.columns, cands, used if by_name else set())
        if col is not None:
            mapping[fld] = col
            used.add(col)
    return mapping


def apply_mapping(base: dict[str, str], user: dict[str, str] | None, sn: Sniff,
                  path: Path) -> dict[str, str]:
    """``base`` updated with the user's mapping; IngestError naming the columns on a bad one.

    An empty value unmaps a field (e.g. ``{"category": ""}`` imports no category)."""
    out = dict(base)
    for fld, col in (user or {}).items():
        if fld not in FIELDS:
            raise IngestError(f"unknown field {fld!r} in the column mapping; the fields are "
                              f"{', '.join(FIELDS)}", path=path, columns=sn.columns)
        if col is None or str(col).strip() == "":
            out.pop(fld, None)
            continue
        if col not in sn.columns:
            same = [c for c in sn.columns if c.lower() == str(col).lower()]
            if len(same) != 1:
                raise IngestError(
                    f"the mapping {fld}={col!r} names a column the file does not have; map "
                    "the field to one of the columns found", path=path, column=str(col),
                    columns=sn.columns)
            col = same[0]
        out[fld] = col
    return out


def check_required(mapping: dict[str, str], form: Format, sn: Sniff, path: Path) -> None:
    """IngestError saying how to map the required fields the mapping lacks."""
    missing = [f for f in form.required(sn.variant) if f not in mapping]
    if not missing:
        return
    example = " ".join(f"--map {f}=<column>" for f in missing)
    hint = (" The file has no header, so its columns are called column0, column1, ..."
            if not sn.has_header and sn.kind == "csv" else "")
    raise IngestError(
        f"cannot tell which column holds {', '.join(missing)} (format {form.name}); map "
        f"{'it' if len(missing) == 1 else 'them'} to a column, e.g. `{example}` on the command "
        f"line or with the mapping form in the dashboard.{hint}", path=path, columns=sn.columns)


def build_plan(sn: Sniff, form: Format, path: Path,
               user_mapping: dict[str, str] | None = None) -> Plan:
    """The column plan for importing ``path`` as sniffed (``form``: the format of ``sn``)."""
    mapping = apply_mapping(guess_mapping(sn, form), user_mapping, sn, path)
    form.complete(mapping, sn)
    check_required(mapping, form, sn, path)
    user_set = set(user_mapping or {})
    inner = {a: "CAST(NULL AS VARCHAR)" for a in ALIAS.values()}
    for fld, col in mapping.items():
        inner[ALIAS[fld]] = text_or_null(sn, col)
    typed = {schema.USER: "u", schema.ITEM: "i", schema.LAT: "TRY_CAST(la AS DOUBLE)",
             schema.LON: "TRY_CAST(lo AS DOUBLE)",
             schema.BEHAVIOR: f"coalesce(b, {lit(schema.DEFAULT_BEHAVIOR)})",
             schema.CATEGORY: "c", schema.VALUE: "TRY_CAST(v AS DOUBLE)",
             TZ: TZ_FROM_COLUMN}
    plan = Plan(sn.format, sn.variant, mapping, inner, typed, ts_kind="auto")

    # time: native timestamp columns (Parquet) as they are, text by its detected form
    tcol = mapping[T]
    ttype = sn.column_types.get(tcol, "VARCHAR").upper()
    values = samples(sn, tcol) if tcol in sn.columns else []
    several = form.time_text(sn, mapping, user_set)
    if several is not None:
        inner["t"], values = several
    if ttype.startswith("TIMESTAMP") or ttype == "DATE":
        inner["t"] = ident(tcol)
        plan.ts_kind = "native"
        typed[T] = "CAST(t AS TIMESTAMP)"
    else:
        plan.ts_kind = timeparse.detect_kind(values)
        if plan.ts_kind == "unix" and several is None:
            check_is_time(tcol, values, sn, path)
        typed[T] = timeparse.ts_sql("t", plan.ts_kind)
        if plan.ts_kind == "iso":
            plan.ts_format = timeparse.plain_iso_format(values)
        # +hh:mm offsets are the local offset of each event; Z / +00:00 on every time is a
        # UTC marker, not a place: local time then comes from the coordinates (localtime.py)
        if (TZ not in mapping and plan.ts_kind in ("iso", "auto")
                and timeparse.has_local_offsets(values)):
            typed[TZ] = timeparse.offset_minutes_sql("t")
            plan.notes.append("The times carry their UTC offsets: each event's local time uses its "
                              "own offset.")
    form.rules(plan, sn, path, user_set)
    return plan


def check_is_time(col: str, values: list[str], sn: Sniff, path: Path) -> None:
    """IngestError when a numeric time column's sampled values cannot be timestamps (hours
    of the day, weekdays, small counts): read as unix seconds they would all land in 1970."""
    why = timeparse.not_a_time(values)
    if why is not None:
        raise IngestError(f"{why}: {timeparse.not_a_time_help()}", path=path, column=col,
                          columns=sn.columns)


def offset_basis(plan: Plan) -> str | None:
    """Where the staged ``tz_offset_min`` values come from: the file (a mapped column or the
    offsets in the times), the format's fixed zone, or nothing (None)."""
    if TZ in plan.mapping or plan.typed[TZ] == timeparse.offset_minutes_sql("t"):
        return BASIS_FILE
    return None if plan.typed[TZ] == TZ_FROM_COLUMN else BASIS_FORMAT
