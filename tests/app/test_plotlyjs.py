"""The plotly.js the dashboard's graphs load (app/plotlyjs.py): the vendored cartesian bundle
when it is the plotly package's plotly.js version, else the package's full bundle."""

from __future__ import annotations

import dash
from plotly.offline import get_plotlyjs_version
from trailscope.app import plotlyjs


def test_vendored_cartesian_bundle_is_the_plotly_packages_version():
    # after upgrading plotly, refresh app/vendor/ (its README says how); until then the
    # route serves the full bundle, so graphs still draw
    assert plotlyjs.bundle_version(plotlyjs.PARTIAL) == get_plotlyjs_version()
    assert plotlyjs.bundle_path() == plotlyjs.PARTIAL
    assert plotlyjs.PARTIAL.stat().st_size < 0.5 * plotlyjs._full_bundle().stat().st_size


def test_another_version_or_a_missing_file_falls_back_to_the_full_bundle(tmp_path,
                                                                          monkeypatch):
    old = tmp_path / "plotly-cartesian.min.js"
    old.write_text("/**\n* plotly.js (cartesian - minified) v1.2.3\n*/\n")
    assert plotlyjs.bundle_version(old) == "1.2.3"
    monkeypatch.setattr(plotlyjs, "PARTIAL", old)
    assert plotlyjs.bundle_path() == plotlyjs._full_bundle()
    monkeypatch.setattr(plotlyjs, "PARTIAL", tmp_path / "missing.js")
    assert plotlyjs.bundle_version(plotlyjs.PARTIAL) is None
    assert plotlyjs.bundle_path() == plotlyjs._full_bundle()


def test_route_serves_the_bundle_as_javascript():
    app = dash.Dash(__name__)
    app.layout = dash.html.Div()
    plotlyjs.register_plotlyjs(app)
    plotlyjs.register_plotlyjs(app)  # a second call is a no-op
    resp = app.server.test_client().get("/" + plotlyjs.ROUTE)
    assert resp.status_code == 200
    assert resp.mimetype == "text/javascript"
    assert resp.get_data()[:300] == plotlyjs.PARTIAL.read_bytes()[:300]
