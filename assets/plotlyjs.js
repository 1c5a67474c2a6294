/*
 * The plotly.js the dashboard's graphs use: the server's cartesian bundle (app/plotlyjs.py),
 * the trace types the dashboard draws, evaluated 3-5x faster than the full plotly.js (issue
 * #13). It starts loading once the app's shell is drawn (Dash's page container appears), so
 * the browser evaluates it while it waits for the server to send the page, instead of after
 * the page arrived (and not before the app's own start, which it would delay).
 *
 * dcc.Graph asks for plotly.js the first time a page shows a graph: it uses window.Plotly if
 * set, else loads window._dashPlotlyJSURL (which Dash's renderer sets to the full bundle).
 * Until the bundle has run, window.Plotly is the promise of its load, which dcc.Graph waits
 * for (Promise.resolve adopts it), so the bundle is never loaded twice; the bundle's own
 * `window.Plotly = Plotly` then stores the library. _dashPlotlyJSURL points at the same
 * bundle, for a load that failed and is asked for again.
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
  var NO_GRAPHS = ['/data']; // the pages (app/pages) that show no plotly graph
  var library = null;
  var pending = null;

  function load() {
    if (!pending) {
      pending = new Promise(function (resolve, reject) {
        var script = document.createElement('script');
        script.src = url;
        script.async = true;
        script.onload = function () { resolve(library); };
        script.onerror = function () {
          pending = null; // dcc.Graph may ask again through _dashPlotlyJSURL
          reject(new Error('could not load plotly.js from ' + url));
        };
        document.head.appendChild(script);
      });
      pending.catch(function () { return null; }); // dcc.Graph reports the failure
    }
    return pending;
  }

  try {
    Object.defineProperty(window, 'Plotly', {
      configurable: true,
      get: function () { return library || pending || undefined; },
      set: function (v) { library = v; }
    });
    Object.defineProperty(window, '_dashPlotlyJSURL', {
      configurable: true, get: function () { return url; }, set: function () {}
    });
  } catch (e) {
    return; // a browser that refuses: Dash loads its own plotly.js, as before
  }
  if (typeof MutationObserver === 'undefined') { return; } // dcc.Graph asks when it needs it
  // pages without a graph do not load it (dcc.Graph asks if the user goes on to one)
  var page = window.location.pathname.slice(prefix.length - 1).replace(/\/+$/, '');
  if (NO_GRAPHS.indexOf(page) >= 0) { return; }
  var shell = function () { return document.getElementById('_pages_content'); };
  var observer = new MutationObserver(function () {
    if (shell()) { observer.disconnect(); load(); }
  });
  observer.observe(document.documentElement, {childList: true, subtree: true});
}());
