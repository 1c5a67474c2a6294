"""Exportable explanation reports: a self-contained HTML file and a PDF.

A report holds the dataset and model provenance (names, fingerprints, metrics), the user's
behaviour evolution (trend, rhythm, interest drift, path map), the recommendations, and each
view of the explanation of one recommended item (per-event attributions, feature groups,
attention, events on the map, counterfactual, summary).

HTML: plotly.js and the deck.gl bundle are inlined, so the file opens without a network
(``render_html``); a batch writes them once next to its reports, which load them from there
(``shared``). PDF: the same page in its static form (plots drawn as static SVG as wide as the
page's text, the map as a plotly scatter) printed on A4 by Debian's Chromium through
Playwright (``html_to_pdf``).
Every user string is escaped: in the markup with ``html.escape``, in figure and map data by
JSON with ``<``, ``>`` and ``&`` as ``\\u`` escapes, so nothing in the data becomes markup.
"""

from __future__ import annotations

import contextlib
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
PAGE_MARGIN_MM = {"top": 12, "bottom": 12, "left": 10, "right": 10}
#: The printed A4 page's text width in CSS pixels (96 per inch): figures are drawn this wide.
PRINT_WIDTH_PX = int((210 - PAGE_MARGIN_MM["left"] - PAGE_MARGIN_MM["right"]) / 25.4 * 96)


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
    """The report's figures in order; the static (print) form draws the map as a plotly
    scatter and every figure exactly as wide as the printed page's text."""
    figs = dict(evolution_figures(data.events))
    figs["path"] = path_figure(data.events)
    figs.update(explanation_figures(data.explanation, static_map=static))
    if static:
        for fig in figs.values():
            fig.update_layout(width=PRINT_WIDTH_PX, autosize=False)
    return figs


def _script(js: str) -> str:
    return "<script>" + js.replace("</script", "<\\/script") + "</script>"


def libraries(*, deck: bool) -> dict[str, str]:
    """The scripts a report page runs, by the file name a batch shares them under: plotly.js,
    and for the interactive map the deck.gl bundle and TrailScope's map code."""
    from plotly.offline import get_plotlyjs

    libs = {"plotly.min.js": get_plotlyjs()}
    if deck:
        from ..deckgl.assets import bundle_path

        libs["deckgl.min.js"] = bundle_path().read_text(encoding="utf-8")
        libs["deckmap.js"] = (ASSETS / "deckmap.js").read_text(encoding="utf-8")
    return libs


def render_html(data: ReportData, *, static: bool = False, shared: bool = False) -> str:
    """The report as one HTML page. ``static``: the print/PDF form (static plots, the map as a
    plotly scatter). ``shared``: the page loads plotly.js and deck.gl from files next to it
    (``write_libraries``, once per batch) instead of inlining them (one self-contained file).
    """
    figs = {k: safe_json(f.to_json()) for k, f in figures(data, static).items()}
    spec = None if static else events_map_spec(data.explanation)
    names = libraries(deck=spec is not None)
    if shared and not static:
        scripts = "".join(f'<script src="{n}"></script>' for n in names)
    else:
        scripts = "".join(_script(js) for js in names.values())
    return page_html(data, figs, scripts, static=static,
                     deck_spec=None if spec is None else safe_json(spec))


def write_libraries(folder: str | Path) -> list[Path]:
    """Write the scripts a batch's HTML reports share into ``folder`` (once per batch)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, js in libraries(deck=True).items():
        (folder / name).write_text(js, encoding="utf-8")
        out.append(folder / name)
    return out


#: The address the page is served at while printing: an http origin (so the page can reach
#: no local file) whose every other request is refused.
PRINT_URL = "http://report.trailscope.invalid/report.html"


class Printer:
    """One headless Chromium (Playwright, Debian's binary, no downloads) that prints report
    pages to A4 PDF; a batch opens one and prints every report with it."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_ms = timeout_s * 1000
        self._pw: Any = None
        self._browser: Any = None

    def __enter__(self) -> Printer:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            raise ReportError(f"{CHROMIUM} is missing, so PDF reports cannot be printed; "
                              "install Debian's chromium (apt-get install chromium) or export "
                              "HTML")
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=CHROMIUM,
                                                     args=CHROMIUM_ARGS, headless=True)
        except BaseException:
            self._pw.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._browser.close()
        finally:
            self._pw.stop()

    def print(self, page: str, path: Path) -> Path:
        """Print ``page`` to ``path``. The window is as wide as the page's text, so what fits
        the window fits the paper; the page is served from ``PRINT_URL`` and every other
        request fails."""
        pg = self._browser.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1000})
        try:
            pg.route("**/*", lambda route: route.fulfill(
                body=page, content_type="text/html; charset=utf-8")
                if route.request.url == PRINT_URL else route.abort())
            pg.goto(PRINT_URL, wait_until="load", timeout=self.timeout_ms)
            pg.wait_for_function("window.trailscopeReady === true", timeout=self.timeout_ms)
            pg.pdf(path=str(path), format="A4", print_background=True,
                   margin={k: f"{v}mm" for k, v in PAGE_MARGIN_MM.items()})
        finally:
            pg.close()
        return path


def html_to_pdf(page: str, path: Path, timeout_s: float = 60.0) -> Path:
    """Print an HTML page to A4 PDF with a Chromium of its own (see ``Printer``)."""
    with Printer(timeout_s) as printer:
        return printer.print(page, path)


def write(data: ReportData, path: str | Path, *, shared: bool = False,
          printer: Printer | None = None) -> Path:
    """Write the report to ``path``; the suffix (.html or .pdf) picks the format.
    ``shared``: an HTML report loads its scripts from files next to it (``write_libraries``);
    ``printer``: an open ``Printer`` for a PDF (else one is started for this report)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ReportError(f"the report file {path.name or path} must end in .html or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        path.write_text(render_html(data, shared=shared), encoding="utf-8")
        return path
    page = render_html(data, static=True)
    return html_to_pdf(page, path) if printer is None else printer.print(page, path)


def export(store: Store, name: str, user: str, path: str | Path, item_id: str | None = None,
           model_id: str | None = None, *, explanation: Explanation | None = None,
           loaded: Loaded | None = None, shared: bool = False,
           printer: Printer | None = None) -> Path:
    """Explain and write one user's report to ``path`` (.html or .pdf); ``shared`` and
    ``printer`` as in ``write``."""
    return write(collect(store, name, user, item_id, model_id, explanation=explanation,
                         loaded=loaded), path, shared=shared, printer=printer)


def safe_filename(text: str) -> str:
    """A file-name-safe version of a user id (no path separators, no leading dots)."""
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))
    return keep.strip("_")[:60] or "user"


def export_batch(store: Store, name: str, users: list[str], folder: str | Path,
                 fmt: str = "html", model_id: str | None = None,
                 loaded: Loaded | None = None,
                 on_user: Callable[[int, int, str], None] | None = None,
                 shared: bool = False) -> dict[str, Any]:
    """One report per user into ``folder``; users that fail are listed with the reason.
    The model is loaded once for all of them (or ``loaded`` is used, with ``model_id``).
    ``on_user(i, n, user)`` is called before the ``i``-th of ``n`` users (progress; it may
    raise to stop the batch). One Chromium prints all the PDFs. ``shared`` (HTML): plotly.js
    and deck.gl are written once into ``folder`` (``write_libraries``) and every report
    loads them from there, so a report holds only its own data; ship those files with the
    reports.

    Returns ``{"written": [paths], "failed": {user: reason}, "libraries": [paths]}``
    (``libraries``: the shared script files, empty unless ``shared`` wrote some).
    """
    from ...models import api
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    if fmt not in FORMATS:
        raise ReportError(f"the report format must be {' or '.join(FORMATS)}, not “{fmt}”")
    folder = Path(folder)
    written, failed, used = [], {}, set()
    todo = list(dict.fromkeys(str(u).strip() for u in users if str(u).strip()))
    with Printer() if fmt == "pdf" and todo else contextlib.nullcontext() as printer:
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
                                      model_id=model_id, loaded=loaded, shared=shared,
                                      printer=printer))
            except (UnknownUser, CheckpointError, ValueError) as exc:
                failed[user] = str(exc)
    libs = write_libraries(folder) if shared and fmt == "html" and written else []
    return {"written": [str(p) for p in written], "failed": failed,
            "libraries": [str(p) for p in libs]}


__all__ = ["ReportData", "ReportError", "collect", "esc", "export", "export_batch",
           "render_html", "write", "write_libraries", "html_to_pdf", "Printer", "safe_json"]
