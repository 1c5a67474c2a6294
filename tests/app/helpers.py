"""Helpers for the app tests: real-data datasets and file slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trailscope.analytics import schema
from trailscope.analytics.store import DatasetInfo, Store

from tests.conftest import MOVIELENS


def save_movielens(store: Store, name: str, n: int, replace: bool = False) -> DatasetInfo:
    """Save the first ``n`` MovieLens ratings as a dataset, straight through the Store."""
    select = (
        f"SELECT CAST(u AS VARCHAR) AS {schema.USER}, CAST(i AS VARCHAR) AS {schema.ITEM}, "
        f"to_timestamp(t)::TIMESTAMP AS {schema.TS}, NULL::DOUBLE, NULL::DOUBLE, 'rate', NULL, "
        "CAST(r AS DOUBLE), NULL::INTEGER FROM read_csv(?, delim='\t', header=false, "
        "columns={'u': 'BIGINT', 'i': 'BIGINT', 'r': 'BIGINT', 't': 'BIGINT'}) "
        f"LIMIT {int(n)}")
    return store.save_dataset(name, select, source=str(MOVIELENS), fmt="movielens",
                              report={}, replace=replace, params=[str(MOVIELENS)])


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
