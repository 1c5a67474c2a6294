"""The words of an explanation report (app/reports) on a real NYC user's history: the deletion
table names the events it removed, in the right number, and the report's errors quote no
Python reprs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.app.reports import html as report_html
from trailscope.app.reports.data import ReportData
from trailscope.app.reports.report import ReportError, export_batch, write
from trailscope.models.explain import types as T

from tests.conftest import NYC


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """The first 6 check-ins of the NYC slice's first user as an explanation's events."""
    raw = pd.read_csv(NYC, nrows=200)
    mine = raw[raw["user_id"] == raw["user_id"].iloc[0]].head(6).reset_index(drop=True)
    ts = pd.to_datetime(mine["utc_time_minute"])
    ev = pd.DataFrame({T.POSITION: np.arange(len(mine)), T.ITEM_INDEX: np.arange(1, 7),
                       schema.ITEM: mine["stan_poi_id"].astype(str), schema.TS: ts,
                       T.HOUR: ts.dt.hour, schema.CATEGORY: mine["venue_category"],
                       schema.BEHAVIOR: "visit", schema.LAT: mine["latitude"],
                       schema.LON: mine["longitude"], T.ATTRIBUTION: 0.0,
                       **dict.fromkeys(T.GROUP_COLUMNS.values(), 0.0)})
    return ev[list(T.EVENT_COLUMNS)]


def _data(events: pd.DataFrame, k: int) -> ReportData:
    cf = {"k": k, "rank_before": 2, "score_before": 1.5, "rank_after_top": 7,
          "score_after_top": 0.4, "rank_after_attention": 5, "score_after_attention": 0.9,
          "rank_after_random": 3.4, "score_after_random": 1.1, "n_random": 8}
    ex = T.Explanation(model="st-transformer", method="integrated-gradients", item_index=1,
                       item_id=str(events[schema.ITEM].iloc[0]), score=1.5, baseline_score=1.5,
                       delta=0.0, events=events, groups=dict.fromkeys(T.GROUPS, 0.0),
                       counterfactual=cf)
    return ReportData(dataset="nyc", user="1", explanation=ex, events=events)


def _rows(markup: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", r) for r in re.findall(r"<tr>(.*?)</tr>", markup)]


def test_the_deletion_table_names_what_it_removed(events) -> None:
    tied = _rows(report_html._counterfactual(_data(events, 3)))
    assert tied[2].startswith("without the 3 most recent events")  # every attribution ties
    assert tied[3].startswith("without the 3 events with the most attention")
    assert tied[4].startswith("without 3 random events (mean of 8 draws)")
    ev = events.copy()
    ev.loc[1, [T.ATTRIBUTION, T.GROUP_COLUMNS["item"]]] = 0.6
    one = _rows(report_html._counterfactual(_data(ev, 1)))
    assert one[2].startswith("without the 1 most attributed event" + "7")  # then its rank
    assert one[3].startswith("without the 1 event with the most attention")
    assert one[4].startswith("without 1 random event (mean of 8 draws)")
    assert not any("(s)" in r or "top-" in r for r in tied + one)


def test_report_errors_quote_no_reprs(events, tmp_path) -> None:
    with pytest.raises(ReportError) as bad_path:
        write(_data(events, 3), tmp_path / "out.docx")
    assert str(bad_path.value) == "the report file out.docx must end in .html or .pdf"
    with pytest.raises(ReportError) as bad_fmt:
        export_batch(None, "nyc", ["1"], tmp_path, fmt="docx")
    assert str(bad_fmt.value) == "the report format must be html or pdf, not “docx”"
    assert "'" not in str(bad_path.value) + str(bad_fmt.value)


def test_the_events_table_names_each_column_once(events) -> None:
    markup = report_html._events(_data(events, 3))
    head = re.findall(r"<th>(.*?)</th>", markup)
    assert len(head) == len(set(head)) == 6 + len(T.GROUPS)
    assert head[-len(T.GROUPS):] == [f"by {g}" for g in T.GROUPS]
    assert len(re.findall(r"<tr>", markup)) == len(events) + 1
