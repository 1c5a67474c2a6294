"""Specs and map components for the 2D canvas renderer (assets/canvasmap.js)."""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics.schema import LAT, LON
from trailscope.app.deckgl import deckmap as dm

PTS = pd.DataFrame({LAT: [40.70, 40.75, 40.80], LON: [-74.00, -73.95, -73.90]})


def test_canvas_spec_is_marked_and_refuses_layers_a_canvas_can_not_draw():
    view = dm.view_for(PTS[LAT], PTS[LON])
    spec = dm.deck_spec([dm.scatter_layer(PTS)], view, renderer="canvas")
    assert spec["renderer"] == "canvas"
    assert "renderer" not in dm.deck_spec([dm.scatter_layer(PTS)], view)  # deck.gl: unmarked
    with pytest.raises(ValueError, match="can not be drawn on a canvas"):
        dm.deck_spec([dm.heat_layer(PTS)], view, renderer="canvas")
    with pytest.raises(ValueError, match="renderer must be one of"):
        dm.deck_spec([dm.scatter_layer(PTS)], view, renderer="svg")


def test_canvas_deckmap_container_is_marked_so_the_page_skips_deckgl():
    canvas = dm.DeckMap("m", height=200, renderer="canvas").children[3]
    assert getattr(canvas, "data-renderer") == "canvas"
    assert not hasattr(dm.DeckMap("m").children[3], "data-renderer")
    with pytest.raises(ValueError, match="renderer must be one of"):
        dm.DeckMap("m", renderer="webgpu")

