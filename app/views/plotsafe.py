"""The one place where data strings are made safe for plotly (and for the reports' HTML).

plotly.js draws a subset of HTML in every label it shows (tick labels, legend entries, hover
text, annotations, titles, table cells): ``<a href>`` becomes a live link, ``<span style>``
styles the text, ``<b>`` and ``<br>`` change the layout. The strings come from imported files
(user ids, items, categories, behaviours) or from requests (dataset and model names, chosen
options), so none of them may reach plotly as markup.

Every figure builder in app/views is wrapped in :func:`plot_safe`: the finished figure goes
through :func:`safe_figure`, which escapes each string the figure shows (data values, names,
hover and cell text, titles, annotations, tick texts and category orders). plotly turns the
entities back into characters, so ``<b>x</b>`` is shown as those eight characters. Builders
follow two rules:

- markup belongs only in templates (``hovertemplate``, ``texttemplate``), which are not
  escaped, and a template never embeds a data string: it refers to the data with ``%{x}``,
  ``%{customdata[0]}`` or ``%{fullData.name}``;
- any other text (titles, annotations, trace names) is escaped whole, so it carries no markup.

deck.gl maps need nothing of this: their tooltips are text templates that assets/deckmap.js
hands to deck.gl as ``text`` (shown with ``innerText``), and ``deck_spec`` refuses HTML ones.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any, ParamSpec

import numpy as np
import pandas as pd
import plotly.graph_objects as go

P = ParamSpec("P")

#: Keys, anywhere in a figure's JSON, whose strings plotly shows as text.
TEXT_KEYS = frozenset({
    "name", "x", "y", "text", "hovertext", "customdata", "labels", "parents", "meta",
    "values", "ticktext", "categoryarray"})
#: Parts of the layout that hold no data strings (the template is large: skip it).
_SKIP = frozenset({"template"})
_MARK = "_trailscope_plot_safe"


def esc(value: Any) -> str:
    """``value`` as text safe in HTML text and attributes (the reports' markup).

    ``&``, ``<``, ``>``, ``'`` and ``"`` become entities; ``"`` as ``&#34;``, which plotly
    decodes too (it shows ``&quot;`` as it is). None and NA become ``""``.
    """
    if value is None or value is pd.NA:
        return ""
    return html.escape(str(value), quote=True).replace("&quot;", "&#34;")


def plot_text(value: str) -> str:
    """``value`` as a plotly label that shows exactly ``value``: ``&``, ``<`` and ``>`` as
    entities, so no tag forms (quotes are harmless outside a tag and stay readable)."""
    return html.escape(value, quote=False)


_SPECIAL = frozenset("&<>")


def _escape_values(value: Any) -> Any:
    """Every string in ``value`` (a string, a list or an array, nested) escaped; other values
    (numbers, timestamps) as they are. ``value`` itself when no string needs escaping."""
    if isinstance(value, str):
        return plot_text(value) if not _SPECIAL.isdisjoint(value) else value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "UO":
            return value
        items = value.ravel().tolist()
        escaped = [_escape_values(v) for v in items]
        if all(a is b for a, b in zip(escaped, items, strict=True)):
            return value
        out = np.empty(value.shape, dtype=object)
        out.ravel()[:] = escaped
        return out
    if isinstance(value, (pd.Series, pd.Index)):
        return _escape_values(value.to_numpy())
    if isinstance(value, (list, tuple)):
        escaped = [_escape_values(v) for v in value]
        return value if all(a is b for a, b in zip(escaped, value, strict=True)) else escaped
    return value


def _walk(node: Any) -> Any:
    """A copy of ``node`` (plain JSON of a plotly object) with its texts escaped."""
    if isinstance(node, dict):
        return {k: v if k in _SKIP else _escape_values(v) if k in TEXT_KEYS else _walk(v)
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_walk(v) for v in node]
    return node


def _patch(props: dict[str, Any]) -> dict[str, Any]:
    """The text-holding parts of a plotly object's properties, escaped: an update that leaves
    every other property (and the type of numeric arrays) as it is."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in _SKIP:
            continue
        if key in TEXT_KEYS:
            escaped = _escape_values(value)
            if escaped is not value:
                out[key] = escaped
        elif isinstance(value, dict):
            sub = _patch(value)
            if sub:
                out[key] = sub
        elif isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value):
            out[key] = _walk(value)   # annotations, shapes: replaced whole
    return out


def safe_figure(fig: go.Figure) -> go.Figure:
    """``fig``, changed in place, with every string it shows escaped for plotly; a figure that
    already went through here is returned as it is, so nothing is escaped twice."""
    if getattr(fig, _MARK, False):
        return fig
    for trace in fig.data:
        trace.update(_patch(trace.to_plotly_json()))
    fig.update_layout(_patch(fig.layout.to_plotly_json()))
    setattr(fig, _MARK, True)
    return fig


def plot_safe(builder: Callable[P, go.Figure]) -> Callable[P, go.Figure]:
    """Decorator of a figure builder: its figure goes through :func:`safe_figure`."""
    @functools.wraps(builder)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> go.Figure:
        return safe_figure(builder(*args, **kwargs))

    setattr(wrapper, _MARK, True)
    return wrapper


def is_plot_safe(builder: Callable[..., Any]) -> bool:
    """Whether a builder is wrapped in :func:`plot_safe` (the tests check every builder)."""
    return bool(getattr(builder, _MARK, False))
