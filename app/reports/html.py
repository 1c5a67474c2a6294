"""The markup of an explanation report (report.py builds the data and writes files).

Every value from the data goes through ``esc`` (HTML) or arrives pre-escaped as JSON
(figures); the events table is also offered as CSV whose cells cannot start a spreadsheet
formula (``formula_safe``).
"""

from __future__ import annotations

import base64
import csv
import io
import math
from typing import Any

import pandas as pd

from ...analytics.schema import CATEGORY, ITEM, TS
from ...models.explain.text import deletion_rows
from ...models.explain.types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, HOUR, POSITION
from ..views.plotsafe import esc
from .data import ReportData

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Arial,sans-serif;color:#1e293b;
margin:24px auto;max-width:1100px;padding:0 16px;line-height:1.45}
body.print{margin:0;max-width:none;padding:0}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:1px solid #e2e8f0;padding-bottom:4px;
margin-top:2em}.muted{color:#64748b}.summary{background:#eff6ff;border-left:4px solid #2563eb;
padding:10px 14px;font-size:1.05em}table{border-collapse:collapse;font-size:.9em;margin:8px 0;
width:100%}
td,th{border:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}td code{overflow-wrap:anywhere}th{background:#f8fafc}
tr.chosen td{background:#fef3c7}
.fig{min-height:200px;margin:6px 0 18px}.deckmap{position:relative;height:440px;
border:1px solid #e2e8f0;margin:6px 0 18px}code{font-size:.9em}
#nolib{display:none;background:#fef2f2;border-left:4px solid #dc2626;padding:10px 14px}
h2,h3{break-after:avoid;page-break-after:avoid}
@media print{.fig,.nobreak,table,tr{break-inside:avoid}a.download{display:none}
table{font-size:.8em}td,th{padding:3px 5px}}
"""


def formula_safe(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before ``= + - @ | tab CR``.

    Numbers are written as numbers (a negative attribution stays a number)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def events_csv(data: ReportData) -> str:
    """The explained events as CSV (formula-safe cells)."""
    ex = data.explanation
    cols = [POSITION, TS, ITEM, CATEGORY, HOUR, ATTRIBUTION, *GROUP_COLUMNS.values()]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["user", *cols])
    for row in ex.events[cols].itertuples(index=False):
        w.writerow([formula_safe(data.user), *(formula_safe(
            v.isoformat() if isinstance(v, pd.Timestamp) else v) for v in row)])
    return buf.getvalue()


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else esc(x)


def _table(header: list[str], rows: list[list[Any]], chosen: int | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    mark = ' class="chosen"'
    body = "".join(
        f"<tr{mark if i == chosen else ''}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
        for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(data: ReportData) -> str:
    p, ex = data.explanation.provenance, data.explanation
    fresh = p.get("trained_on_fingerprint") == p.get("dataset_fingerprint")
    rows = [["dataset", esc(data.dataset)],
            ["dataset fingerprint", f"<code>{esc(p.get('dataset_fingerprint'))}</code>"],
            ["model", f"{esc(ex.model)} (<code>{esc(ex.model_id)}</code>)"],
            ["trained on fingerprint", f"<code>{esc(p.get('trained_on_fingerprint'))}</code> "
             + ("(matches the data)" if fresh else "(<b>differs from the data</b>)")],
            ["split", esc(p.get("split"))], ["trained", esc(p.get("created"))]]
    rows += [[f"test {esc(k)}", _num(v)] for k, v in (p.get("metrics") or {}).items()]
    return _table(["", ""], rows)


def _recommendations(data: ReportData) -> str:
    ex = data.explanation
    rows, chosen = [], None
    for i, r in enumerate(ex.recommendations):
        if str(r.get("item_id")) == ex.item_id:
            chosen = i
        rows.append([str(i + 1), esc(r.get("item_id")), esc(r.get("category") or "–"),
                     _num(r.get("score"))])
    if not rows:
        return "<p class='muted'>No recommendations were stored with this explanation.</p>"
    return _table(["rank", "item", "category", "score"], rows, chosen)


def _counterfactual(data: ReportData) -> str:
    rows = [[label, _num(rank, 1) if isinstance(rank, float) else rank, _num(score)]
            for label, rank, score in deletion_rows(data.explanation)]
    if not rows:
        return "<p class='muted'>No deletion test for this explanation.</p>"
    return _table(["history", "rank of the item", "score"], [[esc(r[0]), esc(r[1]), r[2]]
                                                              for r in rows])


def _events(data: ReportData) -> str:
    ev = data.explanation.events
    rows = [[str(int(r[POSITION]) + 1), esc(pd.Timestamp(r[TS]).strftime("%Y-%m-%d %H:%M")),
             esc(r[ITEM]), esc(r[CATEGORY] if isinstance(r[CATEGORY], str) else "–"),
             str(int(r[HOUR])), _num(float(r[ATTRIBUTION]))]
            + [_num(float(r[GROUP_COLUMNS[g]])) for g in GROUPS] for _, r in ev.iterrows()]
    # the groups' shares of the attribution: "by item", not a second "item" column
    return _table(["#", "time (UTC)", "item", "category", "local hour", "attribution",
                   *(f"by {g}" for g in GROUPS)], rows)


def _fig(name: str, title: str) -> str:
    return (f"<div class='nobreak'><h3>{esc(title)}</h3>"
            f"<div class='fig' id='fig-{name}'></div></div>")


def _keep(*parts: str) -> str:
    """A heading and the block after it, kept on one page when printed."""
    return "<div class='nobreak'>" + "".join(parts) + "</div>"


NO_LIBRARY = ("The charts and the map of this report are drawn by plotly.min.js, deckgl.min.js "
              "and deckmap.js, which came in the same zip: unpack the whole zip and keep those "
              "files in the folder that holds this report.")


def page_html(data: ReportData, figs: dict[str, str], scripts: str, *,
              deck_spec: str | None, static: bool) -> str:
    """The whole report page; ``figs`` maps names to escaped figure JSON, ``scripts`` is the
    ``<script>`` markup that loads plotly.js (and deck.gl when ``deck_spec``, the escaped map
    spec JSON, is given); ``static``: the print form (page-wide figures, no interaction)."""
    ex = data.explanation
    csv64 = base64.b64encode(events_csv(data).encode("utf-8")).decode("ascii")
    fname = esc(f"trailscope-{data.dataset}-explanation.csv")
    map_title = "Events on the map, coloured by attribution"
    if deck_spec is not None:
        the_map = _keep(f"<h3>{map_title}</h3>", "<div class='deckmap' id='deck-map'></div>")
    elif "map" in figs:
        the_map = _fig("map", map_title)
    else:
        the_map = "<p class='muted'>These events have no coordinates.</p>"
    fig_js = "{" + ",".join(f"{json_key(k)}:{v}" for k, v in figs.items()) + "}"
    config = "{displaylogo:false,responsive:true" + (",staticPlot:true" if static else "") + "}"
    draw_map = ("" if deck_spec is None else
                "if(window.trailscopeDeck){window.trailscopeDeck.render("
                f"document.getElementById('deck-map'),{deck_spec},null);}}")
    facts = (f"method {esc(ex.method)}" + (f", {ex.n_steps} integration steps" if ex.n_steps
                                           else "")
             + f"; score {_num(ex.score)}, baseline score {_num(ex.baseline_score)}, "
             f"convergence delta {_num(ex.delta, 6)}")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>TrailScope report: {esc(data.dataset)} / user {esc(data.user)}</title>
<style>{CSS}</style>{scripts}</head><body{" class='print'" if static else ""}>
<h1>Why {esc(ex.item_id)} for user {esc(data.user)}?</h1>
<p class="muted">TrailScope explanation report · dataset {esc(data.dataset)} · generated
{esc(data.generated)}</p>
<div id="nolib">{esc(NO_LIBRARY)}</div>
<div class="summary" id="summary">{esc(ex.summary)}</div>
<p class="muted">{facts}</p>
{_keep("<h2>Provenance</h2>", _provenance(data))}
{_keep("<h2>Recommendations</h2>", _recommendations(data))}
{_keep("<h2>Behaviour evolution</h2>", _fig("trend", "Activity over time"))}
{_fig("rhythm", "Weekly rhythm (local time)")}
{_fig("drift", "Interest drift")}{_fig("path", "Path")}
{_keep(f"<h2>Explanation of {esc(ex.item_id)}</h2>",
       _fig("attribution", "Per-event attribution over the timeline"))}
{_fig("groups", "Feature groups")}{_fig("attention", "Attention (scoring position)")}
{the_map}
{_keep(_fig("counterfactual", "Counterfactual: deleting events"), _counterfactual(data))}
{_keep("<h3>Events</h3>", _events(data))}
<p><a class="download" download="{fname}" href="data:text/csv;base64,{csv64}">Download the
events as CSV</a></p>
<script>
(function(){{var ready=function(){{window.trailscopeReady=true;}};
if(typeof Plotly==='undefined'){{document.getElementById('nolib').style.display='block';
ready();return;}}
var figs={fig_js};var jobs=[];
for(var k in figs){{var el=document.getElementById('fig-'+k);if(!el)continue;
jobs.push(Plotly.newPlot(el,figs[k].data,figs[k].layout,{config}));}}
{draw_map}
Promise.all(jobs).then(ready,ready);}})();
</script></body></html>"""


def json_key(name: str) -> str:
    """A figure name as a JS object key (names are ours, but quote them anyway)."""
    return '"' + "".join(c for c in name if c.isalnum() or c == "_") + '"'
