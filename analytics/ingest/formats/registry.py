"""The formats the importer knows, in one explicit list: adding a format is one module in this
folder and one line here.

The order is the order of ``--format`` choices and of recognition: the first format that
recognises a file wins, and ``generic`` (which takes every file) comes last.

To add a format: write ``formats/<name>.py`` with ``FORMAT = Format(name=..., recognise=...,
fit=..., columns=..., rules=...)`` (formats/base.py explains each part; taobao.py is a short
example), add it to :data:`ALL` before ``generic``, and test it on a small synthetic file in
tests/analytics/test_ingest_formats.py. The dashboard shows its name as is unless
app/views/data.py's ``FORMAT_LABELS`` gives it a friendlier one.
"""

from __future__ import annotations

from pathlib import Path

from ..layout import TextLayout
from ..types import IngestError
from . import foursquare, generic, geolife, gowalla, gowalla_export, movielens, taobao, tianchi
from .base import Format

ALL: tuple[Format, ...] = (
    gowalla_export.FORMAT,  # gowalla: before tsmc, whose processed files share its column names
    foursquare.FORMAT,  # tsmc
    gowalla.FORMAT,  # snap
    taobao.FORMAT,
    tianchi.FORMAT,
    movielens.FORMAT,
    geolife.FORMAT,
    generic.FORMAT,  # last: the fallback
)

#: The formats ``import_file(fmt=...)`` accepts besides ``"auto"``.
FORMATS: tuple[str, ...] = tuple(f.name for f in ALL)
_BY_NAME = {f.name: f for f in ALL}

#: Normalised column names that mark a first line as a header (any format's).
HEADER_NAMES: frozenset[str] = frozenset().union(*(f.header_names for f in ALL))


def get(name: str) -> Format:
    """The format called ``name``; IngestError naming the choices for an unknown one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise IngestError(f"unknown format {name!r}; use auto or one of "
                          f"{', '.join(FORMATS)}") from None


def claim(path: Path, text: str | None) -> tuple[Format, str] | None:
    """The format (and variant) that takes the file by its path or first line, if any."""
    for f in ALL:
        variant = f.claim(path, text)
        if variant is not None:
            return f, variant
    return None


def recognise(lay: TextLayout, path: Path) -> tuple[Format, str]:
    """The first format (and its variant) that recognises the layout."""
    for f in ALL:
        variant = f.recognise(lay, path)
        if variant is not None:
            return f, variant
    return generic.FORMAT, ""
