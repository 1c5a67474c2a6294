"""The plotly.js that ``dcc.Graph`` loads: the cartesian partial bundle (app/vendor/).

Dash's graphs load the full plotly.js (4.8 MB) the first time a page shows one; a browser
spends 1.5-2 s evaluating it on this 2-core machine, the largest part of drawing the Overview,
Users and Models pages (issue #13). The dashboard only draws cartesian traces (scatter, bar,
heatmap), so it serves plotly.js's official cartesian bundle (1.5 MB, evaluated 3-5x faster)
instead: :func:`register_plotlyjs` adds the route, and assets/plotlyjs.js points ``dcc.Graph``
at it. When the vendored bundle is missing or is another plotly.js version than the
``plotly`` package's (after an upgrade), the route serves the package's full bundle, so
graphs always draw with the version the figures were built for.
"""

from __future__ import annotations

import re
from pathlib import Path

from dash import Dash
from flask import Response, send_file

#: Below the app's routes prefix; assets/plotlyjs.js requests the same path.
ROUTE = "_trailscope/plotly/plotly.min.js"
PARTIAL = Path(__file__).resolve().parent / "vendor" / "plotly-cartesian.min.js"
_VERSION = re.compile(rb"plotly\.js[^\n]*?v(\d+\.\d+\.\d+)")


def _full_bundle() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def bundle_version(path: Path) -> str | None:
    """The plotly.js version in a bundle's licence header (``v4.1.1`` -> ``"4.1.1"``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(300)
    except OSError:
        return None
    found = _VERSION.search(head)
    return found.group(1).decode("ascii") if found else None


def bundle_path() -> Path:
    """The cartesian bundle when it matches the ``plotly`` package's plotly.js, else the
    package's full bundle."""
    from plotly.offline import get_plotlyjs_version

    if bundle_version(PARTIAL) == get_plotlyjs_version():
        return PARTIAL
    return _full_bundle()


def register_plotlyjs(app: Dash) -> None:
    """Serve :func:`bundle_path` at ``ROUTE`` (repeat calls are no-ops)."""
    server = app.server
    if "trailscope_plotlyjs" in server.view_functions:
        return
    path = bundle_path()
    prefix = "/" + (app.config.routes_pathname_prefix or "/").strip("/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"

    def plotlyjs() -> Response:
        return send_file(path, mimetype="text/javascript", max_age=86400, conditional=True)

    server.add_url_rule(prefix + ROUTE, endpoint="trailscope_plotlyjs", view_func=plotlyjs)
