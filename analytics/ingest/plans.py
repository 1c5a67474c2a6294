"""Column plans per format: which source column feeds each canonical field, and the SQL that
turns it into the canonical type.

A :class:`Plan` has two layers of SQL, evaluated by analytics/ingest_sql.py:

* ``inner``: text-level values taken from the source columns (aliases ``u`` user, ``i`` item,
  ``t`` time, ``la``/``lo`` coordinates as given, ``b`` behaviour, ``c`` category, ``v``
  value, ``z`` tz offset), empty strings as NULL;
* ``typed``: canonical columns computed from those aliases (parsed time, numbers, defaults).

Format decisions (see also data/README.md "Formats"):

* tsmc: raw TSV (``timezoneOffset`` -> tz_offset_min, ``venueCategory`` -> category), the
  processed CSVs with a header, and the reconstructed NYC file (item = ``stan_poi_id``, time
  = ``utc_time_minute``, category = ``venue_category``, empty for ~30% of rows and kept).
* taobao / tianchi: Alibaba logs from China, so tz_offset_min = 480. Taobao's unix times are
  absolute; Tianchi's ``2014-12-06 02`` is Beijing wall time and is shifted to UTC (-8 h).
  Tianchi behaviour codes 1..4 -> pv, fav, cart, buy; ``user_geohash`` is decoded to the
  cell centre (empty -> no coordinates; not a geohash -> bad_coordinates).
* movielens: behaviour ``rate``, value = rating; category = the movie's FIRST genre (u.genre
  order for u.item, listed order for movies.dat/.csv) when such a file lies beside the
  ratings; "unknown" / "(no genres listed)" -> NULL.
* geolife: the fixes are validated like events (user, time, coordinates) and then turned into
  stay-point events by analytics/ingest_geolife.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import schema
from . import timeparse
from .detect import norm
from .types import FIELDS, IngestError, Sniff

U, IT, T, BEH, CAT, VAL, TZ = (schema.USER, schema.ITEM, schema.TS, schema.BEHAVIOR,
                              schema.CATEGORY, schema.VALUE, schema.TZ_OFFSET)
LAT, LON = schema.LAT, schema.LON

#: Inner alias of each canonical field's source text.
ALIAS: dict[str, str] = {U: "u", IT: "i", T: "t", LAT: "la", LON: "lo", BEH: "b", CAT: "c",
                         VAL: "v", TZ: "z"}

#: Column names guessed for each field in "generic" files (matched ignoring case and _ - space).
GENERIC_ALIASES: dict[str, tuple[str, ...]] = {
    U: ("user_id", "user", "uid", "customer_id", "customer", "visitor_id", "member_id"),
    IT: ("item_id", "item", "poi_id", "poi", "venue_id", "venue", "product_id", "product",
        "movie_id", "location_id", "place_id", "stan_poi_id", "sku"),
    T: ("utc_time", "timestamp", "ts", "datetime", "time", "date", "event_time", "created_at",
        "checkin_time", "utc_timestamp", "time_stamp"),
    LAT: ("lat", "latitude"),
    LON: ("lon", "lng", "long", "longitude"),
    CAT: ("category", "cat", "genre", "genres", "venue_category", "poi_catname",
          "item_category", "category_name"),
    BEH: ("behavior", "behaviour", "event", "action", "type", "event_type", "behavior_type"),
    VAL: ("rating", "value", "amount", "score"),
    TZ: ("tz_offset_min", "tz_offset", "timezone_offset", "utc_offset", "timezone"),
}

#: Normalised names that mark a first row as a header.
KNOWN_NAMES: set[str] = {norm(a) for names in GENERIC_ALIASES.values() for a in names} | {
    "poiid", "poicatid", "poicatname", "utctime", "venuecategoryid", "stanpoiid",
    "utctimeminute", "minuteoffset", "behaviortype", "usergeohash", "movieid", "userid"}

#: Column names given to headerless files of the known formats.
NAMES: dict[tuple[str, str], list[str]] = {
    ("tsmc", "raw"): ["user_id", "venue_id", "venue_category_id", "venue_category", "latitude",
                      "longitude", "timezone_offset", "utc_time"],
    ("snap", ""): ["user_id", "check_in_time", "latitude", "longitude", "location_id"],
    ("taobao", ""): ["user_id", "item_id", "category_id", "behavior", "timestamp"],
    ("movielens", "udata"): ["user_id", "item_id", "rating", "timestamp"],
    ("movielens", "dat"): ["user_id", "item_id", "rating", "timestamp"],
    ("geolife", "plt"): ["lat", "lon", "zero", "altitude", "days", "date", "time"],
}

#: Per format/variant: field -> candidate source columns (normalised), first found wins.
DEFAULTS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("tsmc", "raw"): {U: ("userid",), IT: ("venueid",), T: ("utctime",), LAT: ("latitude",),
                      LON: ("longitude",), CAT: ("venuecategory",), TZ: ("timezoneoffset",)},
    ("tsmc", "processed"): {
        U: ("userid",), IT: ("poiid", "venueid"), T: ("utctime", "utctimestamp"),
        LAT: ("latitude",), LON: ("longitude",), CAT: ("poicatname", "venuecategory"),
        TZ: ("timezone", "timezoneoffset")},
    ("tsmc", "reconstructed"): {
        U: ("userid",), IT: ("stanpoiid",), T: ("utctimeminute",), LAT: ("latitude",),
        LON: ("longitude",), CAT: ("venuecategory",)},
    ("snap", ""): {U: ("userid",), IT: ("locationid",), T: ("checkintime",),
                   LAT: ("latitude",), LON: ("longitude",)},
    ("taobao", ""): {U: ("userid",), IT: ("itemid",), T: ("timestamp",), BEH: ("behavior",),
                     CAT: ("categoryid",)},
    ("tianchi", ""): {U: ("userid",), IT: ("itemid",), T: ("time",), BEH: ("behaviortype",),
                      CAT: ("itemcategory",), LAT: ("usergeohash",), LON: ("usergeohash",)},
    ("movielens", "udata"): {U: ("userid",), IT: ("itemid",), T: ("timestamp",),
                             VAL: ("rating",)},
    ("movielens", "dat"): {U: ("userid",), IT: ("itemid",), T: ("timestamp",),
                           VAL: ("rating",)},
    ("movielens", "csv"): {U: ("userid",), IT: ("movieid",), T: ("timestamp",),
                           VAL: ("rating",)},
    ("geolife", "csv"): {U: ("uid",), T: ("datetime",), LAT: ("lat",), LON: ("lng",)},
    ("geolife", "plt"): {LAT: ("lat",), LON: ("lon",)},
}

TIANCHI_BEHAVIOR = {"1": "pv", "2": "fav", "3": "cart", "4": "buy"}
CHINA_TZ_MIN = 480


@dataclass
class Plan:
    fmt: str
    variant: str
    mapping: dict[str, str]
    inner: dict[str, str]
    typed: dict[str, str]
    ts_kind: str
    #: strptime format of a plain ISO time column (timeparse.PLAIN_ISO), else None
    ts_format: str | None = None
    genres_sql: str | None = None
    stay_points: bool = False
    notes: list[str] = field(default_factory=list)


def ident(col: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + col.replace('"', '""') + '"'


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _find(columns: list[str], candidates: tuple[str, ...], used: set[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(norm(c), c)
    for cand in candidates:
        c = by_norm.get(norm(cand))
        if c is not None and c not in used:
            return c
    return None


def guess_mapping(sn: Sniff, fmt: str, variant: str) -> dict[str, str]:
    """Field -> source column the format (or, for generic files, the column names) implies."""
    table = DEFAULTS.get((fmt, variant))
    if table is None:
        table = GENERIC_ALIASES
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fld, cands in table.items():
        col = _find(sn.columns, cands, used if table is GENERIC_ALIASES else set())
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


def required_fields(fmt: str, variant: str) -> tuple[str, ...]:
    if fmt == "geolife":
        return (T,) if variant == "plt" else (U, T)
    return (U, IT, T)


def check_required(mapping: dict[str, str], fmt: str, variant: str, sn: Sniff,
                   path: Path) -> None:
    missing = [f for f in required_fields(fmt, variant) if f not in mapping]
    if not missing:
        return
    example = " ".join(f"--map {f}=<column>" for f in missing)
    hint = (" The file has no header, so its columns are called column0, column1, ..."
            if not sn.has_header and sn.kind == "csv" else "")
    raise IngestError(
        f"cannot tell which column holds {', '.join(missing)} (format {fmt}); map "
        f"{'it' if len(missing) == 1 else 'them'} to a column, e.g. `{example}` on the command "
        f"line or with the mapping form in the dashboard.{hint}", path=path, columns=sn.columns)


# -- the SQL ------------------------------------------------------------------------------
def _src(sn: Sniff, col: str) -> str:
    typ = sn.column_types.get(col, "VARCHAR").upper()
    return ident(col) if typ == "VARCHAR" else f"CAST({ident(col)} AS VARCHAR)"


def _text(sn: Sniff, col: str) -> str:
    """The column as text, empty -> NULL (DuckDB's CSV reader already reads empty fields as
    NULL, so plain CSV columns need no extra work)."""
    s = _src(sn, col)
    if sn.padded:
        return f"nullif(trim({s}), '')"
    return s if sn.kind == "csv" else f"nullif({s}, '')"


def _samples(sn: Sniff, col: str) -> list[str]:
    j = sn.columns.index(col)
    return [r[j] for r in sn.sample if j < len(r)]


def plt_user(path: Path) -> str:
    """GeoLife's user id of a .plt file: the folder above ``Trajectory`` (Data/000/...)."""
    return path.parent.parent.name if path.parent.name.lower() == "trajectory" else path.stem


def build_plan(sn: Sniff, path: Path, user_mapping: dict[str, str] | None = None) -> Plan:
    """The column plan for importing ``path`` as sniffed (format and variant in ``sn``)."""
    fmt, variant = sn.format, sn.variant
    mapping = apply_mapping(guess_mapping(sn, fmt, variant), user_mapping, sn, path)
    if fmt == "geolife" and variant == "plt" and T not in mapping and "date" in sn.columns:
        mapping[T] = "date"
    check_required(mapping, fmt, variant, sn, path)
    user_set = set(user_mapping or {})
    inner = {a: "CAST(NULL AS VARCHAR)" for a in ALIAS.values()}
    for fld, col in mapping.items():
        inner[ALIAS[fld]] = _text(sn, col)
    typed = {U: "u", IT: "i", LAT: "TRY_CAST(la AS DOUBLE)", LON: "TRY_CAST(lo AS DOUBLE)",
             BEH: f"coalesce(b, {lit(schema.DEFAULT_BEHAVIOR)})", CAT: "c",
             VAL: "TRY_CAST(v AS DOUBLE)", TZ: "CAST(TRY_CAST(z AS DOUBLE) AS INTEGER)"}
    plan = Plan(fmt, variant, mapping, inner, typed, ts_kind="auto")

    # time: native timestamp columns (Parquet) as they are, text by its detected form
    tcol = mapping[T]
    ttype = sn.column_types.get(tcol, "VARCHAR").upper()
    samples = _samples(sn, tcol) if tcol in sn.columns else []
    if fmt == "geolife" and variant == "plt" and T not in user_set and "time" in sn.columns:
        inner["t"] = f"nullif(concat_ws(' ', {_src(sn, tcol)}, {_src(sn, 'time')}), ' ')"
        j = sn.columns.index("time")
        samples = [f"{r[sn.columns.index(tcol)]} {r[j]}" for r in sn.sample if j < len(r)]
    if ttype.startswith("TIMESTAMP") or ttype == "DATE":
        inner["t"] = ident(tcol)
        plan.ts_kind = "native"
        typed[T] = "CAST(t AS TIMESTAMP)"
    else:
        plan.ts_kind = timeparse.detect_kind(samples)
        typed[T] = timeparse.ts_sql("t", plan.ts_kind)
        if plan.ts_kind == "iso":
            plan.ts_format = timeparse.plain_iso_format(samples)
        if (TZ not in mapping and plan.ts_kind in ("iso", "auto")
                and timeparse.has_numeric_offsets(samples)):
            typed[TZ] = timeparse.offset_minutes_sql("t")
            plan.notes.append("tz_offset_min taken from the offsets in the time column")
    _format_rules(plan, sn, path, user_set)
    return plan


def _format_rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    inner, typed, mapping = plan.inner, plan.typed, plan.mapping
    fmt, variant = plan.fmt, plan.variant
    if fmt in ("taobao", "tianchi") and TZ not in mapping:
        typed[TZ] = f"CAST({CHINA_TZ_MIN} AS INTEGER)"
    if fmt == "tianchi":
        cases = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in TIANCHI_BEHAVIOR.items())
        typed[BEH] = f"CASE b {cases} ELSE coalesce(b, {lit(schema.DEFAULT_BEHAVIOR)}) END"
        if T not in user_set or plan.ts_kind == "date_hour":
            typed[T] = f"({typed[T]}) - INTERVAL {CHINA_TZ_MIN} MINUTE"
            plan.notes.append("Tianchi times are Beijing wall time: shifted by -8 h to UTC")
        if mapping.get(LAT) and mapping.get(LAT) == mapping.get(LON):
            typed[LAT], typed[LON] = "_ts_gh_lat(la)", "_ts_gh_lon(lo)"
    if fmt == "movielens":
        if BEH not in mapping:
            typed[BEH] = "'rate'"
        plan.genres_sql = genres_sql(path, variant)
        if plan.genres_sql is None:
            plan.notes.append("no u.item / movies.dat / movies.csv beside the ratings: "
                              "no categories")
    if fmt == "geolife":
        plan.stay_points = True
        if IT not in mapping:
            inner["i"] = "'fix'"
        if variant == "plt" and U not in mapping:
            inner["u"] = lit(plt_user(path))


def genres_sql(ratings: Path, variant: str) -> str | None:
    """SELECT item, genre (the first one) from the movie list beside a MovieLens ratings file."""
    folder = ratings.parent
    order = {"udata": ("u.item", "movies.dat", "movies.csv"),
             "dat": ("movies.dat", "u.item", "movies.csv")}.get(
                 variant, ("movies.csv", "movies.dat", "u.item"))
    for fname in order:
        f = folder / fname
        if not f.is_file():
            continue
        p = lit(str(f))
        if fname == "u.item":
            names = _ugenre_names(folder / "u.genre")
            cols = "{" + ", ".join(f"'c{k}': 'VARCHAR'" for k in range(5 + len(names))) + "}"
            cases = " ".join(f"WHEN c{5 + k} = '1' THEN {lit(g)}" for k, g in enumerate(names)
                             if g.lower() != "unknown")
            return (f"SELECT c0 AS item, CASE {cases} END AS genre FROM read_csv({p}, "
                    f"delim='|', header=false, quote='', escape='', encoding='latin-1', "
                    f"auto_detect=false, null_padding=true, columns={cols})")
        if fname == "movies.dat":
            return (f"SELECT c0 AS item, nullif(split_part(c2, '|', 1), '(no genres listed)') "
                    f"AS genre FROM read_csv({p}, delim='::', header=false, quote='', "
                    f"escape='', encoding='latin-1', auto_detect=false, null_padding=true, "
                    "columns={'c0': 'VARCHAR', 'c1': 'VARCHAR', 'c2': 'VARCHAR'})")
        return (f"SELECT movieId AS item, nullif(split_part(genres, '|', 1), "
                f"'(no genres listed)') AS genre FROM read_csv({p}, header=true, quote='\"', "
                "escape='\"', auto_detect=false, columns={'movieId': 'VARCHAR', "
                "'title': 'VARCHAR', 'genres': 'VARCHAR'})")
    return None


#: MovieLens 100K's genre list, used when u.genre is missing.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                 "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _ugenre_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ML100K_GENRES
    pairs = []
    for line in path.read_text(encoding="latin-1").splitlines():
        name, _, idx = line.strip().rpartition("|")
        if name and idx.isdigit():
            pairs.append((int(idx), name))
    return tuple(n for _, n in sorted(pairs)) or ML100K_GENRES
