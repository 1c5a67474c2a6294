"""MovieLens ratings (format ``movielens``; Harper & Konstan 2015).

Variants: ``udata`` (100K's u.data: user, item, rating, time, tab-separated, no header),
``dat`` (1M/10M's ratings.dat, ``::``-separated) and ``csv`` (ratings.csv with the header
``userId,movieId,rating,timestamp``). Behaviour ``rate``, value = the rating; category = the
movie's FIRST genre (u.genre order for u.item, listed order for movies.dat/.csv) when such a
file lies beside the ratings; "unknown" / "(no genres listed)" -> NULL.
"""

from __future__ import annotations

from pathlib import Path

from ... import schema
from ..layout import TextLayout, column_all, is_int, norm
from ..sql import lit
from ..types import Plan, Sniff
from .base import Format

U, IT, T, VAL = schema.USER, schema.ITEM, schema.TS, schema.VALUE
HEADER = {"userid", "movieid", "rating"}
#: MovieLens 100K's genre list, used when u.genre is missing.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                 "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _recognise(lay: TextLayout, path: Path) -> str | None:
    if lay.has_header:
        return "csv" if HEADER <= lay.names else None
    rows, width, d = lay.rows, len(lay.columns), lay.delimiter
    if d == "::" and width >= 3 and column_all(rows, 0, is_int) and column_all(rows, 1, is_int):
        return "dat"
    if d == "\t" and width == 4 and all(column_all(rows, j, is_int) for j in range(4)):
        return "udata"
    return None


def _fit(sn: Sniff) -> str | None:
    width, d = len(sn.columns), sn.delimiter
    if sn.has_header:
        return "csv" if HEADER <= {norm(c) for c in sn.columns} else None
    if width == 4 or (d == "::" and width >= 3):
        return "dat" if d == "::" else "udata"
    return None


def _rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    if schema.BEHAVIOR not in plan.mapping:
        plan.typed[schema.BEHAVIOR] = "'rate'"
    plan.genres_sql = genres_sql(path, plan.variant)
    if plan.genres_sql is None:
        plan.notes.append("No movie list (u.item, movies.dat or movies.csv) lies beside the "
                          "ratings, so the movies get no genre.")


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


def _ugenre_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ML100K_GENRES
    pairs = []
    for line in path.read_text(encoding="latin-1").splitlines():
        name, _, idx = line.strip().rpartition("|")
        if name and idx.isdigit():
            pairs.append((int(idx), name))
    return tuple(n for _, n in sorted(pairs)) or ML100K_GENRES


_RATINGS = ["user_id", "item_id", "rating", "timestamp"]

FORMAT = Format(
    name="movielens", label="MovieLens ratings", recognise=_recognise, fit=_fit,
    expect=("u.data (user item rating time, tab), ratings.dat (::) or ratings.csv "
            "(userId,movieId,rating,timestamp)"),
    header_names=frozenset({"movieid"}),
    names={"udata": _RATINGS, "dat": _RATINGS},
    columns={
        "udata": {U: ("userid",), IT: ("itemid",), T: ("timestamp",), VAL: ("rating",)},
        "dat": {U: ("userid",), IT: ("itemid",), T: ("timestamp",), VAL: ("rating",)},
        "csv": {U: ("userid",), IT: ("movieid",), T: ("timestamp",), VAL: ("rating",)},
    },
    rules=_rules)
