"""Helpers for the app tests: real-data datasets and file slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trailscope.analytics import schema
from trailscope.analytics.store import DatasetInfo, Store

from tests.conftest import MOVIELENS, TAOBAO


def _save_head(store: Store, name: str, path: Path, fmt: str, columns: str, read: str, n: int,
               replace: bool) -> DatasetInfo:
    """Save the first ``n`` rows of CSV ``path`` (``read``: read_csv options) as dataset
    ``name``; ``columns`` selects the canonical columns in order."""
    select = f"SELECT {columns} FROM read_csv(?, {read}) LIMIT {int(n)}"
    return store.save_dataset(name, select, source=str(path), fmt=fmt, report={},
                              replace=replace, params=[str(path)])


def save_movielens(store: Store, name: str, n: int, replace: bool = False) -> DatasetInfo:
    """Save the first ``n`` MovieLens ratings as a dataset, straight through the Store."""
    return _save_head(
        store, name, MOVIELENS, "movielens",
        f"CAST(u AS VARCHAR) AS {schema.USER}, CAST(i AS VARCHAR) AS {schema.ITEM}, "
        f"to_timestamp(t)::TIMESTAMP AS {schema.TS}, NULL::DOUBLE, NULL::DOUBLE, 'rate', NULL, "
        "CAST(r AS DOUBLE), NULL::INTEGER",
        "delim='\t', header=false, "
        "columns={'u': 'BIGINT', 'i': 'BIGINT', 'r': 'BIGINT', 't': 'BIGINT'}", n, replace)


def save_taobao(store: Store, name: str, n: int, replace: bool = False) -> DatasetInfo:
    """Save the first ``n`` events of the committed Taobao slice as a dataset, straight through
    the Store (no coordinates)."""
    return _save_head(
        store, name, TAOBAO, "taobao",
        f"CAST(u AS VARCHAR) AS {schema.USER}, CAST(i AS VARCHAR) AS {schema.ITEM}, "
        f"to_timestamp(t)::TIMESTAMP AS {schema.TS}, NULL::DOUBLE, NULL::DOUBLE, b, "
        "CAST(c AS VARCHAR), NULL::DOUBLE, 480",
        "header=false, "
        "columns={'u': 'BIGINT', 'i': 'BIGINT', 'c': 'BIGINT', 'b': 'VARCHAR', 't': 'BIGINT'}",
        n, replace)


def slice_file(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` lines of ``src`` written to ``dst``."""
    with open(src, encoding="latin-1") as fh:
        dst.write_text("".join(line for _, line in zip(range(n), fh, strict=False)),
                       encoding="latin-1")
    return dst


def texts(component: Any) -> list[str]:
    """Every string in a Dash component tree (what the user would read)."""
    out: list[str] = []
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, str | int | float):
            out.append(str(c))
        elif isinstance(c, list | tuple):
            stack.extend(c)
        elif c is not None and hasattr(c, "children"):
            stack.append(c.children)
    return out
