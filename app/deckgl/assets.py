"""Serve the deck.gl JavaScript bundle from the local pydeck install (no CDN, works offline).

pydeck ships ``nbextension/static/index.js``: the @deck.gl/jupyter-widget UMD bundle. Loaded
with a plain ``<script>`` tag it defines ``window.deck`` (the whole deck.gl namespace: ``Deck``,
``JSONConverter``, every core/aggregation/geo layer incl. ``HeatmapLayer``, ``H3HexagonLayer``,
``TripsLayer``, ``TileLayer``, ``BitmapLayer``) plus ``createDeck``/``updateDeck``.
``assets/deckmap.js`` uses only ``window.deck``, which the standalone deck.gl dist exposes too, so
``TRAILSCOPE_DECKGL_JS=/path/to/dist.min.js`` can swap bundles without code changes.

The 4 MB bundle is streamed from site-packages on request (browser-cached), never copied into
the repository, and fetched lazily by ``assets/deckmap.js`` only on pages that show a map.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from flask import Flask, Response, abort, send_file

#: Path of the bundle below the app's routes prefix; assets/deckmap.js requests the same path.
BUNDLE_ROUTE = "_trailscope/deck/deckgl.js"
#: Where the bundle's ``//# sourceMappingURL=index.js.map`` resolves (devtools only).
SOURCE_MAP_ROUTE = "_trailscope/deck/index.js.map"
ENV_BUNDLE = "TRAILSCOPE_DECKGL_JS"


def bundle_path() -> Path:
    """The deck.gl bundle file: ``$TRAILSCOPE_DECKGL_JS`` if set, else pydeck's own copy."""
    override = os.environ.get(ENV_BUNDLE)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_BUNDLE}={override} is not a file; point it at a "
                                    f"deck.gl UMD bundle or unset it to use pydeck's copy")
        return path
    spec = importlib.util.find_spec("pydeck")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pydeck is not installed, so there is no local deck.gl bundle "
                                "to serve; run `make setup` (pip install 'pydeck>=0.9')")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "nbextension" / "static" / "index.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this pydeck install has no bundled deck.gl; "
                                f"reinstall it with `pip install --force-reinstall pydeck`")
    return path


def _normalise_prefix(prefix: str) -> str:
    prefix = "/" + prefix.strip("/")
    return prefix if prefix.endswith("/") else prefix + "/"


def register_deck_routes(server: Flask, prefix: str = "/") -> None:
    """Add the routes serving the deck.gl bundle to ``server`` (the Dash app's Flask server).

    ``prefix`` must equal the Dash app's ``routes_pathname_prefix`` (``"/"`` by default); the
    browser side builds the URL from ``requests_pathname_prefix``. Calling twice is harmless.
    The bundle file is located now, so a broken install fails at start-up, not on first map.
    """
    path = bundle_path()
    base = _normalise_prefix(prefix)

    def deck_bundle() -> Response:
        return send_file(path, mimetype="text/javascript", max_age=86400, conditional=True)

    def deck_source_map() -> Response:
        source_map = path.with_name(path.name + ".map")
        if not source_map.is_file():
            abort(404)
        return send_file(source_map, mimetype="application/json", max_age=86400)

    for route, endpoint, view in ((BUNDLE_ROUTE, "trailscope_deck_bundle", deck_bundle),
                                  (SOURCE_MAP_ROUTE, "trailscope_deck_map", deck_source_map)):
        if endpoint not in server.view_functions:
            server.add_url_rule(base + route, endpoint=endpoint, view_func=view)
