"""Exportable explanation reports: a self-contained HTML file and a PDF.

A report holds the dataset and model provenance (names, fingerprints, metrics), the user's
behaviour evolution (trend, rhythm, interest drift, path map), the recommendations, and each
view of the explanation of one recommended item (per-event attributions, feature groups,
attention, events on the map, counterfactual, summary).

HTML: plotly.js and the deck.gl bundle are inlined, so the file opens without a network
(``render_html``). PDF: the same page in its static form (plots drawn as static SVG, the map
as a plotly scatter) printed by Debian's Chromium through Playwright (``write_pdf``).
Every user string is escaped: in the markup with ``html.escape``, in figure and map data by
JSON with ``<``, ``>`` and ``&`` as ``\\u`` escapes, so nothing in the data becomes markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ...analytics.schema import USER
from ...analytics.store import Store
from ...models.explain.types import Explanation
from ...models.training.checkpoint import Loaded
from .. import ASSETS
from ..views.explain_figures import events_map_spec, explanation_figures
from ..views.plotsafe import esc
from .data import ReportData
from .evolution import evolution_figures, path_figure
from .html import page_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
FORMATS = ("html", "pdf")


class ReportError(ValueError):
    """A report that cannot be written; the message says why and what to do."""


def collect(store: Store, name: str, user: str, item_id: str | None = None,
            model_id: str | None = None, *, n_steps: int = 32,
            explanation: Explanation | None = None, loaded: Loaded | None = None) -> ReportData:
    """Explain (unless ``explanation`` is given) and gather a user's report data;
    ``loaded``: the model already loaded (``models.api.load``)."""
    from ...models.explain.user import explain_user

    ex = explanation or explain_user(store, name, user, item_id, model_id, n_steps=n_steps,
                                     loaded=loaded)
    events = store.events(name, where=f"{USER} = ?", params=[str(user)])
    return ReportData(dataset=name, user=str(user), explanation=ex, events=events)


def safe_json(obj: Any) -> str:
    """JSON for a ``<script>`` block: ``<``, ``>``, ``&`` escaped so no string in it can
    close the script or open markup."""
    return (obj if isinstance(obj, str) else json.dumps(obj, allow_nan=False)).replace(
        "<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def figures(data: ReportData, static: bool) -> dict[str, go.Figure]:
    """The report's figures in order; the static form draws the map as a plotly scatter."""
    figs = dict(evolution_figures(data.events))
    figs["path"] = path_figure(data.events)
    figs.update(explanation_figures(data.explanation, static_map=static))
    return figs


def render_html(data: ReportData, *, static: bool = False) -> str:
    """The report as one self-contained HTML page (``static``: the print/PDF form)."""
    from plotly.offline import get_plotlyjs

    figs = {k: safe_json(f.to_json()) for k, f in figures(data, static).items()}
    deck = None
    if not static:
        spec = events_map_spec(data.explanation)
        if spec is not None:
            deck = _deck_page(spec)
    return page_html(data, figs, get_plotlyjs(), deck_page=deck, static=static)


def _deck_page(spec: dict) -> str:
    from ..deckgl.assets import bundle_path
    from ..deckgl.deckmap import deck_html

    deckmap_js = (ASSETS / "deckmap.js").read_text()
    return deck_html(spec, height=440, bundle_js=bundle_path().read_text(),
                     deckmap_js=deckmap_js)


def html_to_pdf(page: str, path: Path, timeout_s: float = 60.0) -> Path:
    """Print an HTML page to PDF with headless Chromium (Playwright, no downloads)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise ReportError(f"{CHROMIUM} is missing, so PDF reports cannot be printed; install "
                          "Debian's chromium (apt-get install chromium) or export HTML")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            pg = browser.new_page()
            pg.route("**/*", lambda route: route.abort()
                     if not route.request.url.startswith(("data:", "about:")) else
                     route.continue_())
            pg.set_content(page, wait_until="load", timeout=timeout_s * 1000)
            pg.wait_for_function("window.trailscopeReady === true", timeout=timeout_s * 1000)
            pg.pdf(path=str(path), format="A4", print_background=True,
                   margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
        finally:
            browser.close()
    return path


def write(data: ReportData, path: str | Path) -> Path:
    """Write the report to ``path``; the suffix (.html or .pdf) picks the format."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ReportError(f"report path {str(path)!r} must end in .html or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        path.write_text(render_html(data), encoding="utf-8")
        return path
    return html_to_pdf(render_html(data, static=True), path)


def export(store: Store, name: str, user: str, path: str | Path, item_id: str | None = None,
           model_id: str | None = None, *, explanation: Explanation | None = None,
           loaded: Loaded | None = None) -> Path:
    """Explain and write one user's report to ``path`` (.html or .pdf)."""
    return write(collect(store, name, user, item_id, model_id, explanation=explanation,
                         loaded=loaded), path)


def safe_filename(text: str) -> str:
    """A file-name-safe version of a user id (no path separators, no leading dots)."""
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))
    return keep.strip("_")[:60] or "user"


def export_batch(store: Store, name: str, users: list[str], folder: str | Path,
                 fmt: str = "html", model_id: str | None = None,
                 loaded: Loaded | None = None,
                 on_user: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """One report per user into ``folder``; users that fail are listed with the reason.
    The model is loaded once for all of them (or ``loaded`` is used, with ``model_id``).
    ``on_user(i, n, user)`` is called before the ``i``-th of ``n`` users (progress; it may
    raise to stop the batch).

    Returns ``{"written": [paths], "failed": {user: reason}}``.
    """
    from ...models import api
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    if fmt not in FORMATS:
        raise ReportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = Path(folder)
    written, failed, used = [], {}, set()
    todo = list(dict.fromkeys(str(u).strip() for u in users if str(u).strip()))
    for i, user in enumerate(todo):
        if on_user is not None:
            on_user(i, len(todo), user)
        stem = safe_filename(f"{name}-{user}")
        while stem in used:
            stem += "_"
        used.add(stem)
        try:
            if loaded is None:  # a model that cannot load fails every user with its reason
                model_id = model_id or api.default_model(store, name)
                loaded = api.load(store, name, model_id)
            written.append(export(store, name, user, folder / f"{stem}.{fmt}",
                                  model_id=model_id, loaded=loaded))
        except (UnknownUser, CheckpointError, ValueError) as exc:
            failed[user] = str(exc)
    return {"written": [str(p) for p in written], "failed": failed}


__all__ = ["ReportData", "ReportError", "collect", "esc", "export", "export_batch",
           "render_html", "write", "html_to_pdf", "safe_json"]
