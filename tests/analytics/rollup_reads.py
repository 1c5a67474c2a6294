"""What a call read from the summary tables: every ``Rollup.df`` it made, recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from trailscope.analytics.rollups import tables as rollup


def recorded(call: Callable[[], Any]) -> tuple[Any, list[str], list[pd.DataFrame]]:
    """(what ``call`` returns, the SQL of each summary-table read, the frames they gave)."""
    sqls, frames = [], []
    real = rollup.Rollup.df

    def recording(self, sql, params=None, **kw):
        out = real(self, sql, params, **kw)
        sqls.append(sql)
        frames.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rollup.Rollup, "df", recording)
        got = call()
    return got, sqls, frames
