/*
 * dcc.Graph loads plotly.js from window._dashPlotlyJSURL (set by Dash's renderer) the first
 * time a page shows a graph. Point it at the server's cartesian bundle (app/plotlyjs.py): the
 * trace types the dashboard draws, evaluated 3-5x faster than the full plotly.js (issue #13).
 * The renderer's own assignment is ignored; a page that already has window.Plotly (the
 * reports) never asks.
 */
(function () {
  'use strict';
  var prefix = '/';
  var cfg = document.getElementById('_dash-config');
  if (cfg) {
    try { prefix = JSON.parse(cfg.textContent).requests_pathname_prefix || '/'; } catch (e) {
      prefix = '/';
    }
  }
  var url = prefix + '_trailscope/plotly/plotly.min.js';
  try {
    Object.defineProperty(window, '_dashPlotlyJSURL', {
      configurable: true, get: function () { return url; }, set: function () {}
    });
  } catch (e) {
    // a browser that refuses: Dash's own plotly.js is loaded, as before
  }
}());
