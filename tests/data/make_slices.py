"""Recreate the committed dataset slices in tests/data/ from the complete files.

    python tests/data/make_slices.py [FULL_DATA_FOLDER]

FULL_DATA_FOLDER defaults to $TRAILSCOPE_DATA, else ../shared/data next to the repository.
Each slice keeps its source's format (columns, header, compression, line order), so the
importer reads it like a user's file. The cuts are deterministic; gzip output carries no
timestamp, so rerunning gives byte-identical files. See tests/data/README.md.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: NYC check-ins: every check-in of every third user of the file (sorted by user, then time),
#: starting with the first: a third of the users, each over the whole ten months.
NYC_USER_STEP = 3
#: Taobao UserBehavior: every event of the first users of the file (sorted by user).
TAOBAO_USERS = 250
#: GeoLife: for each user and calendar month, every fix of the first days that have fixes.
GEOLIFE_DAYS_PER_MONTH = 7


def _first_users(lines: Iterable[str], n_users: int) -> Iterator[str]:
    """The lines of the first ``n_users`` distinct values of the first column (contiguous runs)."""
    seen: list[str] = []
    for line in lines:
        user = line.split(",", 1)[0]
        if not seen or seen[-1] != user:
            if user in seen:
                raise ValueError(f"user {user} is not contiguous: the file is not sorted by user")
            if len(seen) == n_users:
                return
            seen.append(user)
        yield line


def _every_nth_user(lines: Iterable[str], step: int) -> Iterator[str]:
    """The lines of users number 0, step, 2 * step, ... in file order (contiguous runs)."""
    index, current = -1, None
    for line in lines:
        user = line.split(",", 1)[0]
        if user != current:
            index, current = index + 1, user
        if index % step == 0:
            yield line


def _write_gz(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0, compresslevel=9) as gz:
        for line in lines:
            gz.write(line.encode("utf-8"))


def nyc(full: Path) -> Path:
    src = full / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
    out = HERE / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        header = next(f)
        _write_gz(out, [header, *_every_nth_user(f, NYC_USER_STEP)])
    return out


def taobao(full: Path) -> Path:
    src = full / "taobao-userbehavior" / "UserBehavior_head84475.csv"
    with open(src, encoding="utf-8", newline="") as f:
        lines = list(_first_users(f, TAOBAO_USERS))
    # named like the shared file: the first N lines of Alibaba's UserBehavior.csv
    out = HERE / "taobao-userbehavior" / f"UserBehavior_head{len(lines)}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob("UserBehavior_head*.csv"):
        old.unlink()
    with open(out, "w", encoding="utf-8", newline="") as g:
        g.writelines(lines)
    return out


def geolife(full: Path) -> Path:
    src = full / "geolife" / "geolife_sample.txt.gz"
    out = HERE / "geolife" / "geolife_sample.txt.gz"
    days: dict[tuple[str, str], list[str]] = {}

    def keep(line: str) -> bool:
        _, _, when, uid = line.rstrip("\r\n").split(",")
        day = days.setdefault((uid, when[:7]), [])
        if when[:10] in day:
            return True
        if len(day) < GEOLIFE_DAYS_PER_MONTH:
            day.append(when[:10])
            return True
        return False

    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        header = next(f)
        _write_gz(out, [header, *(ln for ln in f if keep(ln))])
    return out


def main(argv: list[str]) -> None:
    default = os.environ.get("TRAILSCOPE_DATA") or str(ROOT / ".." / "shared" / "data")
    full = Path(argv[1] if len(argv) > 1 else default).resolve()
    if not full.is_dir():
        sys.exit(f"{full}: no such folder (pass the folder holding the complete datasets)")
    for make in (nyc, taobao, geolife):
        path = make(full)
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv)
