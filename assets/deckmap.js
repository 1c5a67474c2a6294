/*
 * TrailScope offline deck.gl maps (Python side: app/deckmap.py, bundle route: app/deck_assets.py).
 *
 * Loads deck.gl lazily from this server (never a CDN), converts the JSON spec written by
 * app.deckmap.deck_spec with deck.gl's JSONConverter, and keeps one Deck per map container.
 * Replay time changes only clone the time-dependent layers (TripsLayer currentTime, heat layers
 * with a time window), so scrubbing does not re-send or re-parse the data.
 * Tooltips are filled as plain text (deck.gl puts `text` into innerText), never as HTML.
 */
(function () {
  'use strict';

  var BUNDLE_ROUTE = '_trailscope/deck/deckgl.js';
  var TIP_STYLE = {
    backgroundColor: 'rgba(30, 30, 30, 0.9)', color: '#fff', fontSize: '12px',
    padding: '6px 8px', borderRadius: '4px', whiteSpace: 'pre-line', maxWidth: '320px'
  };
  var bundlePromise = null;
  var converter = null;
  var maps = {}; // container DOM id -> state

  function bundleUrl() {
    if (window.TRAILSCOPE_DECK_BUNDLE_URL) { return window.TRAILSCOPE_DECK_BUNDLE_URL; }
    var prefix = '/';
    var cfg = document.getElementById('_dash-config');
    if (cfg) {
      try { prefix = JSON.parse(cfg.textContent).requests_pathname_prefix || '/'; } catch (e) {
        prefix = '/';
      }
    }
    return prefix + BUNDLE_ROUTE;
  }

  function loadDeck() {
    if (window.deck && window.deck.Deck) { return Promise.resolve(window.deck); }
    if (!bundlePromise) {
      bundlePromise = new Promise(function (resolve, reject) {
        var url = bundleUrl();
        var script = document.createElement('script');
        // The bundle is UMD: with an AMD loader on the page it would not set window.deck.
        var amd = window.define;
        if (amd && amd.amd) { window.define = undefined; }
        script.src = url;
        script.onload = function () {
          if (amd && amd.amd) { window.define = amd; }
          if (window.deck && window.deck.Deck) { resolve(window.deck); return; }
          reject(new Error('the script at ' + url + ' did not define window.deck'));
        };
        script.onerror = function () {
          if (amd && amd.amd) { window.define = amd; }
          bundlePromise = null;
          reject(new Error('could not load deck.gl from ' + url + ': the server must call ' +
            'app.deck_assets.register_deck_routes(app.server)'));
        };
        document.head.appendChild(script);
      });
    }
    return bundlePromise;
  }

  function getConverter(deck) {
    if (!converter) {
      var classes = {};
      Object.keys(deck).forEach(function (k) {
        if (/^[A-Z]/.test(k) && typeof deck[k] === 'function') { classes[k] = deck[k]; }
      });
      converter = new deck.JSONConverter({
        configuration: new deck.JSONConfiguration({
          classes: classes, enumerations: {COORDINATE_SYSTEM: deck.COORDINATE_SYSTEM}
        })
      });
    }
    return converter;
  }

  // Same string Dash uses as the DOM id of a component with a dict id.
  function stringifyId(id) {
    if (typeof id !== 'object' || id === null) { return String(id); }
    return '{' + Object.keys(id).sort().map(function (k) {
      return JSON.stringify(k) + ':' + JSON.stringify(id[k]);
    }).join(',') + '}';
  }

  function lookup(obj, key) {
    var parts = key.split('.');
    var v = obj;
    for (var i = 0; i < parts.length; i++) {
      if (v === null || typeof v !== 'object' || !(parts[i] in v)) { return null; }
      v = v[parts[i]];
    }
    return v;
  }

  function tooltipFor(key) {
    return function (info) {
      var state = maps[key];
      if (!state || !info || !info.picked || info.object == null || !info.layer) { return null; }
      var meta = state.meta[info.layer.id] || {};
      var tpl = meta.tooltip || (state.spec.tooltip && state.spec.tooltip.text);
      if (!tpl) { return null; }
      var obj = info.object;
      var text = tpl.replace(/\{([^{}]+)\}/g, function (_, field) {
        var v = lookup(obj, field);
        return v == null ? '' : String(v);
      });
      return {text: text, style: TIP_STYLE};
    };
  }

  // Spec layers -> deck.gl layer instances. Data stays out of the converter (fast, and user
  // strings starting with "@@" are never interpreted); private "_" keys hold our metadata.
  function buildLayers(deck, spec) {
    var meta = {};
    var raw = {};
    var descriptors = (spec.layers || []).map(function (layer) {
      var clean = {};
      Object.keys(layer).forEach(function (k) {
        if (k.charAt(0) !== '_' && k !== 'data') { clean[k] = layer[k]; }
      });
      meta[layer.id] = {type: layer['@@type'], tooltip: layer._tooltip || null,
        window: layer._timeWindow || null};
      raw[layer.id] = layer.data || [];
      return clean;
    });
    var converted = getConverter(deck).convert({layers: descriptors, views: spec.views});
    var base = (converted.layers || []).map(function (l, i) {
      if (!l || typeof l.clone !== 'function') {
        throw new Error('layer "' + descriptors[i].id + '" has unknown type "' +
          descriptors[i]['@@type'] + '"; use the *_layer builders of app.deckmap');
      }
      return l.clone({data: raw[l.id]});
    });
    return {base: base, meta: meta, raw: raw, views: converted.views};
  }

  function basemapLayer(deck, basemap) {
    return new deck.TileLayer({
      id: '__basemap', data: basemap.url, minZoom: 0, maxZoom: 19, tileSize: 256,
      renderSubLayers: function (props) {
        var b = props.tile.boundingBox;
        return new deck.BitmapLayer(props, {
          data: null, image: props.data, bounds: [b[0][0], b[0][1], b[1][0], b[1][1]]
        });
      }
    });
  }

  function layersAt(state, t) {
    var out = state.base.map(function (layer) {
      var m = state.meta[layer.id];
      if (t === null || t === undefined || !m) { return layer; }
      if (m.type === 'TripsLayer') { return layer.clone({currentTime: t}); }
      if (m.window) {
        var lo = t - m.window;
        return layer.clone({data: state.raw[layer.id].filter(function (d) {
          return d.t > lo && d.t <= t;
        })});
      }
      return layer;
    });
    return state.basemap ? [state.basemap].concat(out) : out;
  }

  function setMessage(container, text) {
    var placeholder = container.querySelector('.trailscope-deckmap-placeholder');
    if (placeholder) { placeholder.style.display = 'none'; }
    var box = container.querySelector('.trailscope-deckmap-message');
    if (!text) { if (box) { box.remove(); } return; }
    if (!box) {
      box = document.createElement('div');
      box.className = 'trailscope-deckmap-message';
      box.style.cssText = 'position:absolute;left:8px;top:8px;z-index:2;color:#a00;' +
        'background:#fff;padding:4px 8px;font:12px sans-serif;';
      container.appendChild(box);
    }
    box.textContent = text;
  }

  function setAttribution(container, text) {
    var box = container.querySelector('.trailscope-deckmap-attribution');
    if (!text) { if (box) { box.remove(); } return; }
    if (!box) {
      box = document.createElement('div');
      box.className = 'trailscope-deckmap-attribution';
      box.style.cssText = 'position:absolute;right:4px;bottom:2px;z-index:2;' +
        'font:10px sans-serif;background:rgba(255,255,255,0.7);padding:0 4px;';
      container.appendChild(box);
    }
    box.textContent = text;
  }

  // view_for() sends the data's bounding box as `fit`: refit it to the container's real size.
  function fitView(deck, vs, container) {
    if (!vs || !vs.fit) { return vs; }
    var out = Object.assign({}, vs);
    delete out.fit;
    var w = container.clientWidth;
    var h = container.clientHeight;
    var f = vs.fit;
    if (w > 0 && h > 0 && f.bounds) {
      try {
        var fitted = new deck.WebMercatorViewport({width: w, height: h}).fitBounds(f.bounds, {
          padding: Math.round((f.padding || 0) * Math.min(w, h)), maxZoom: f.maxZoom || 20
        });
        if (isFinite(fitted.zoom) && isFinite(fitted.latitude) && isFinite(fitted.longitude)) {
          out.longitude = fitted.longitude;
          out.latitude = fitted.latitude;
          out.zoom = Math.max(fitted.zoom, f.minZoom || 0);
        }
      } catch (e) {
        // degenerate bounds (one point): keep the centre and zoom computed in Python
      }
    }
    return out;
  }

  function sweep() {
    Object.keys(maps).forEach(function (key) {
      if (!maps[key].container.isConnected) { maps[key].deck.finalize(); delete maps[key]; }
    });
  }

  function render(container, spec, time) {
    return loadDeck().then(function (deck) {
      sweep();
      var key = container.id || '__standalone';
      var state = maps[key];
      if (state && state.container !== container) { state.deck.finalize(); state = null; }
      if (!spec) {
        if (state) { state.deck.setProps({layers: []}); state.spec = {}; }
        var waiting = container.querySelector('.trailscope-deckmap-placeholder');
        if (waiting && !state) { waiting.textContent = 'Nothing to show on the map here.'; }
        return {ok: true, layers: 0, error: null};
      }
      var built;
      if (!state || state.spec !== spec) {
        built = buildLayers(deck, spec);
      }
      if (!state) {
        state = maps[key] = {container: container, spec: spec, viewKey: null};
        state.deck = new deck.Deck({
          parent: container, views: built.views,
          initialViewState: fitView(deck, spec.initialViewState, container),
          layers: [], getTooltip: tooltipFor(key),
          onError: function (err) { setMessage(container, 'Map error: ' + err.message); }
        });
      }
      if (built) {
        state.builds = (state.builds || 0) + 1;
        state.spec = spec;
        state.base = built.base;
        state.meta = built.meta;
        state.raw = built.raw;
        state.basemap = spec.basemap && spec.basemap.url ? basemapLayer(deck, spec.basemap) : null;
        setAttribution(container, spec.basemap ? spec.basemap.attribution : '');
        var viewKey = JSON.stringify(spec.initialViewState);
        if (viewKey !== state.viewKey) {
          state.viewKey = viewKey;
          state.deck.setProps({initialViewState: fitView(deck, spec.initialViewState, container)});
        }
      }
      setMessage(container, null);
      state.deck.setProps({layers: layersAt(state, time)});
      return {ok: true, layers: state.base.length, error: null};
    }).catch(function (err) {
      setMessage(container, 'Map could not be drawn: ' + err.message);
      console.error('trailscope deckmap:', err);
      return {ok: false, layers: 0, error: String(err.message || err)};
    });
  }

  function findContainer(id, tries) {
    var el = document.getElementById(stringifyId(id));
    if (el || tries <= 0) { return Promise.resolve(el); }
    return new Promise(function (resolve) {
      window.requestAnimationFrame(function () { resolve(findContainer(id, tries - 1)); });
    });
  }

  window.trailscopeDeck = {render: render, loadDeck: loadDeck, maps: maps};

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.trailscope = {
      renderDeck: function (spec, time, canvasId) {
        return findContainer(canvasId, 30).then(function (el) {
          if (!el) { return {ok: false, layers: 0, error: 'map container not found'}; }
          return render(el, spec, time);
        });
      },
      replayToggle: function (nClicks, disabled) {
        var nowDisabled = disabled === false;
        return [nowDisabled, nowDisabled ? 'Play' : 'Pause'];
      },
      replayTick: function (n, value, min, max, step) {
        var v = (value == null ? min : value);
        if (v >= max) { return min; }
        return Math.min(v + (step || (max - min) / 200), max);
      },
      replayTime: function (value, origin) {
        var nu = window.dash_clientside.no_update;
        if (value == null) { return [nu, nu]; }
        var label = (value / 3600).toFixed(1) + ' h';
        // origins are naive UTC (canonical schema); parse them as UTC, not local time
        var iso = origin && !/([Zz]|[+-]\d\d:\d\d)$/.test(origin) ? origin + 'Z' : origin;
        var t0 = iso ? Date.parse(iso) : NaN;
        if (isFinite(t0)) {
          label = new Date(t0 + value * 1000).toISOString().slice(0, 16).replace('T', ' ');
        }
        return [value, label];
      }
  };
}());
