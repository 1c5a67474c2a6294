"""The Explain page's per-event attribution chart says so when no event moved the score (a
blend that gives the encoder no weight attributes 0 to every event) instead of drawing empty
axes; with attributions it draws one bar trace per feature group that moved the score."""

from __future__ import annotations

import dataclasses

from trailscope.app.views import explain_figures
from trailscope.models.explain.types import ATTRIBUTION, GROUP_COLUMNS

from tests.app.test_hostile_strings import _explanation


def test_attribution_chart_says_when_no_event_moved_the_score():
    ex = _explanation("u1")
    drawn = explain_figures.attribution_figure(ex)
    assert len(drawn.data) == len(GROUP_COLUMNS) and not drawn.layout.annotations
    zero = ex.events.assign(**{c: 0.0 for c in GROUP_COLUMNS.values()}, **{ATTRIBUTION: 0.0})
    empty = explain_figures.attribution_figure(dataclasses.replace(ex, events=zero))
    assert not empty.data
    assert [a.text for a in empty.layout.annotations] == [
        "No past event moved the score: every event's attribution is 0."]
