/*
 * TrailScope offline deck.gl maps (Python side: app/deckgl/deckmap.py, bundle route:
 * app/deckgl/assets.py).
 *
 * Loads deck.gl lazily from this server (never a CDN), converts the JSON spec written by
 * app.deckgl.deckmap.deck_spec with deck.gl's JSONConverter, and keeps one Deck per map container.
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
            'app.deckgl.assets.register_deck_routes(app.server)'));
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

  // The text of a layer's tooltip template filled from one of its objects (null: none).
  function tooltipText(state, layerId, obj) {
    var meta = state.meta[layerId] || {};
    var tpl = meta.tooltip || (state.spec.tooltip && state.spec.tooltip.text);
    if (!tpl) { return null; }
    return tpl.replace(/\{([^{}]+)\}/g, function (_, field) {
      var v = lookup(obj, field);
      return v == null ? '' : String(v);
    });
  }

  function tooltipFor(key) {
    return function (info) {
      var state = maps[key];
      if (!state || !info || !info.picked || info.object == null || !info.layer) { return null; }
      var text = tooltipText(state, info.layer.id, info.object);
      if (text === null) { return null; }
      return {text: text, style: TIP_STYLE};
    };
  }

  // Binary columns (app/deckgl/layers.py binary_column): base64 little-endian float32.
  function decodeColumns(cols) {
    var out = {length: cols.length || 0, attributes: {}, t: null};
    Object.keys(cols).forEach(function (k) {
      var c = cols[k];
      if (!c || typeof c.b64 !== 'string') { return; }
      var bin = window.atob(c.b64);
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
      var arr;
      if (c.u16) { // 16-bit steps above a minimum, per component
        var q = new Uint16Array(bytes.buffer);
        var size = c.size || 1;
        arr = new Float32Array(q.length);
        for (var j = 0; j < q.length; j++) {
          arr[j] = c.min[j % size] + q[j] * c.step[j % size];
        }
      } else {
        arr = new Float32Array(bytes.buffer);
      }
      if (k === 't') { out.t = arr; } else { out.attributes[k] = {value: arr, size: c.size || 1}; }
    });
    return out;
  }

  // Rows [lo, hi) of decoded columns as deck.gl binary data (typed-array views, no copy);
  // `weights` replaces getWeight (faded by age).
  function binaryData(cols, lo, hi, weights) {
    var attrs = {};
    Object.keys(cols.attributes).forEach(function (k) {
      var a = cols.attributes[k];
      attrs[k] = {value: a.value.subarray(lo * a.size, hi * a.size), size: a.size};
    });
    if (weights) { attrs.getWeight = {value: weights, size: 1}; }
    return {length: hi - lo, attributes: attrs};
  }

  // First index i of the sorted array with arr[i] > x.
  function upperBound(arr, x) {
    var lo = 0;
    var hi = arr.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (arr[mid] <= x) { lo = mid + 1; } else { hi = mid; }
    }
    return lo;
  }

  // The replay window (t - window, t] of a binary layer: one slice of the time-ordered rows,
  // weighted by age when the layer fades (newest 1, oldest 0.1).
  function windowData(cols, t, win, fade) {
    var lo = upperBound(cols.t, t - win);
    var hi = upperBound(cols.t, t);
    var weights = null;
    if (fade && hi > lo) {
      var base = cols.attributes.getWeight ? cols.attributes.getWeight.value : null;
      weights = new Float32Array(hi - lo);
      for (var i = lo; i < hi; i++) {
        var age = Math.min(Math.max((t - cols.t[i]) / win, 0), 1);
        weights[i - lo] = (base ? base[i] : 1) * (1 - 0.9 * age);
      }
    }
    return binaryData(cols, lo, hi, weights);
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
        window: layer._timeWindow || null, fade: !!layer._fade,
        columns: layer._columns ? decodeColumns(layer._columns) : null};
      raw[layer.id] = meta[layer.id].columns ? binaryData(meta[layer.id].columns, 0,
        meta[layer.id].columns.length, null) : (layer.data || []);
      return clean;
    });
    var converted = getConverter(deck).convert({layers: descriptors, views: spec.views});
    var base = (converted.layers || []).map(function (l, i) {
      if (!l || typeof l.clone !== 'function') {
        throw new Error('layer "' + descriptors[i].id + '" has unknown type "' +
          descriptors[i]['@@type'] + '"; use the *_layer builders of app.deckgl.deckmap');
      }
      return l.clone({data: raw[l.id]});
    });
    return {base: base, meta: meta, raw: raw, views: converted.views};
  }

  var OFFLINE_NOTE = 'Street map unavailable offline: showing a blank map.';

  // When a map's street tiles can not load (offline, blocked) before any has, it falls back to
  // the blank basemap with a note saying so; deck.gl maps and canvas maps alike.
  function tilesFailed(state) {
    if (!state || state.tilesLoaded || !state.basemap) { return; }
    state.basemap = null;
    state.offline = true;
    setAttribution(state.container, '');
    setNote(state.container, OFFLINE_NOTE);
    if (state.lite) {
      state.deck.redraw();
    } else {
      state.deck.setProps({layers: layersAt(state, state.time)});
    }
  }

  // A tile basemap (see tilesFailed).
  function basemapLayer(deck, basemap, key) {
    return new deck.TileLayer({
      id: '__basemap', data: basemap.url, minZoom: 0, maxZoom: 19, tileSize: 256,
      onTileLoad: function () {
        var state = maps[key];
        if (state) { state.tilesLoaded = (state.tilesLoaded || 0) + 1; }
      },
      onTileError: function () { tilesFailed(maps[key]); },
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
      if (m.window && m.columns && m.columns.t) {
        return layer.clone({data: windowData(m.columns, t, m.window, m.fade)});
      }
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

  // What a user reads when a map fails; the technical reason goes to the console and to the
  // map's status store.
  function userMessage(err) {
    var text = String((err && err.message) || err || '');
    if (/webgl/i.test(text)) {
      return 'This browser can not draw maps (WebGL is turned off or unavailable). Try ' +
        'another browser, or turn on hardware acceleration.';
    }
    if (/did not load|could not load/i.test(text)) {
      return 'The map could not load its drawing library. Reload the page; if the map ' +
        'stays empty, the server may need restarting.';
    }
    return 'This map could not be drawn. Reload the page; if it happens again, the ' +
      'browser console has the details for whoever maintains TrailScope.';
  }

  function setNote(container, text) {
    var box = container.querySelector('.trailscope-deckmap-note');
    if (!text) { if (box) { box.remove(); } return; }
    if (!box) {
      box = document.createElement('div');
      box.className = 'trailscope-deckmap-note';
      box.setAttribute('role', 'status');
      box.style.cssText = 'position:absolute;left:8px;top:8px;z-index:2;color:#444;' +
        'background:rgba(255,255,255,0.9);padding:3px 8px;border-radius:3px;' +
        'font:12px sans-serif;';
      container.appendChild(box);
    }
    box.textContent = text;
  }

  // Zoom buttons (+ / -) at the top right; they move the view the user is looking at.
  function addZoomButtons(state) {
    if (state.container.querySelector('.trailscope-deckmap-zoom')) { return; }
    var box = document.createElement('div');
    box.className = 'trailscope-deckmap-zoom';
    box.style.cssText = 'position:absolute;right:8px;top:8px;z-index:2;display:flex;' +
      'flex-direction:column;gap:2px;';
    [['+', 'Zoom in', 1], ['\u2212', 'Zoom out', -1]].forEach(function (b) {
      var btn = document.createElement('button');
      btn.type = 'button';
      btn.textContent = b[0];
      btn.title = b[1];
      btn.setAttribute('aria-label', b[1]);
      btn.style.cssText = 'width:28px;height:28px;font:16px/1 sans-serif;cursor:pointer;' +
        'background:#fff;border:1px solid #bbb;border-radius:3px;color:#333;padding:0;';
      btn.addEventListener('click', function () { zoomBy(state, b[2]); });
      box.appendChild(btn);
    });
    state.container.appendChild(box);
  }

  // The one zoom range of every map: the view's minZoom / maxZoom, else 0-20.
  function clampZoom(vs, zoom) {
    return Math.min(Math.max(zoom, vs.minZoom || 0), vs.maxZoom || 20);
  }

  function zoomBy(state, step) {
    var vs = state.viewState;
    if (!vs) { return; }
    var next = Object.assign({}, vs, {zoom: clampZoom(vs, vs.zoom + step)});
    state.viewState = next;
    state.deck.setProps({initialViewState: next});
    setScale(state);
  }

  // Scale bar: metres per pixel at the view's latitude (deck.gl's 512 px world at zoom 0),
  // rounded to 1, 2 or 5 times a power of ten no longer than 100 px.
  function scaleFor(latitude, zoom, maxPx) {
    var perPx = 40075016.686 * Math.cos(latitude * Math.PI / 180) / (512 * Math.pow(2, zoom));
    var most = perPx * maxPx;
    var pow = Math.pow(10, Math.floor(Math.log10(most)));
    var nice = [5, 2, 1].map(function (m) { return m * pow; }).filter(function (v) {
      return v <= most;
    })[0] || pow;
    return {metres: nice, px: nice / perPx,
      label: nice >= 1000 ? (nice / 1000) + ' km' : nice + ' m'};
  }

  function setScale(state) {
    var vs = state.viewState;
    if (!vs || !isFinite(vs.zoom) || !isFinite(vs.latitude)) { return; }
    var box = state.container.querySelector('.trailscope-deckmap-scale');
    if (!box) {
      box = document.createElement('div');
      box.className = 'trailscope-deckmap-scale';
      box.style.cssText = 'position:absolute;left:8px;bottom:8px;z-index:2;' +
        'font:11px sans-serif;color:#333;background:rgba(255,255,255,0.75);' +
        'border:1px solid #555;border-top:none;padding:0 4px;text-align:center;';
      state.container.appendChild(box);
    }
    var s = scaleFor(vs.latitude, vs.zoom, 100);
    box.style.width = Math.round(s.px) + 'px';
    box.textContent = s.label;
    box.setAttribute('data-metres', String(s.metres));
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

  // Time-to-drawn: after a new spec, the first frame in which every data layer has loaded
  // sets data-drawn on the container (ms since navigation, performance.now()) and counts the
  // draws in data-draws, so tests and benches wait for the map rather than for a fixed time;
  // data-pending marks a map between a new spec and that frame.
  function markPending(state) {
    state.pending = true;
    state.container.removeAttribute('data-drawn');
    state.container.setAttribute('data-pending', '1');
  }

  function markDrawn(state) {
    if (!state || !state.pending) { return; }
    var live = (state.deck.props.layers || []).filter(function (l) {
      return l.id !== '__basemap';
    });
    var ready = live.every(function (l) { return l.isLoaded; });
    if (!ready) { return; }
    state.pending = false;
    state.draws = (state.draws || 0) + 1;
    state.container.removeAttribute('data-pending');
    state.container.setAttribute('data-drawn', performance.now().toFixed(1));
    state.container.setAttribute('data-draws', String(state.draws));
  }

  function sweep() {
    Object.keys(maps).forEach(function (key) {
      if (!maps[key].container.isConnected) { maps[key].deck.finalize(); delete maps[key]; }
    });
  }

  // Helpers the canvas renderer (assets/canvasmap.js) shares with deck.gl maps.
  var canvasHooks = {
    setAttribution: setAttribution, tilesFailed: tilesFailed, clampZoom: clampZoom,
    tipStyle: TIP_STYLE, tooltipText: tooltipText, pending: markPending, drawn: markDrawn,
    viewChanged: function (state) { setScale(state); }
  };

  function wantsCanvas(spec) {
    var lite = window.trailscopeCanvasMap;
    return !!(spec && spec.renderer === 'canvas' && lite && lite.supports(spec));
  }

  // A spec with renderer "canvas" (deck_spec(..., renderer="canvas")): drawn on a 2D canvas
  // at once, without loading deck.gl (see assets/canvasmap.js for why).
  function renderCanvas(container, spec, time) {
    var asked = performance.now();
    try {
      sweep();
      var key = container.id || '__standalone';
      var state = maps[key];
      if (state && (state.container !== container || !state.lite)) {
        state.deck.finalize();
        state = null;
      }
      var before = state ? state.spec : null;
      state = maps[key] = window.trailscopeCanvasMap.render(container, spec, time, state,
        canvasHooks);
      if (state.spec !== before) {
        addZoomButtons(state);
        setScale(state);
        state.timing = {spec: asked, deck: asked, built: performance.now()};
      }
      setMessage(container, null);
      return Promise.resolve({ok: true, layers: state.base.length, error: null, spec: true});
    } catch (err) {
      setMessage(container, userMessage(err));
      console.error('trailscope deckmap:', err);
      return Promise.resolve({ok: false, layers: 0, error: String(err.message || err),
        spec: true});
    }
  }

  function render(container, spec, time) {
    var current = maps[container.id || '__standalone'];
    // a canvas map with nothing to draw yet never loads deck.gl (see renderCanvas)
    var canvasBox = container.getAttribute('data-renderer') === 'canvas';
    if (!spec && !current && canvasBox) {
      var empty = container.querySelector('.trailscope-deckmap-placeholder');
      if (empty) { empty.textContent = 'Nothing to show on the map here.'; }
      return Promise.resolve({ok: true, layers: 0, error: null, spec: false});
    }
    if (wantsCanvas(spec) || (!spec && current && current.lite)) {
      if (spec) { return renderCanvas(container, spec, time); }
      current.base = [];
      current.spec = {};
      current.deck.redraw();
      return Promise.resolve({ok: true, layers: 0, error: null, spec: false});
    }
    var asked = performance.now();
    return loadDeck().then(function (deck) {
      sweep();
      var key = container.id || '__standalone';
      var state = maps[key];
      if (!spec && state && state.lite && state.container === container) {
        // an empty render that waited for deck.gl while a canvas spec was drawn: keep it
        return {ok: true, layers: state.base.length, error: null, spec: false};
      }
      if (state && (state.container !== container || state.lite)) {
        state.deck.finalize();
        state = null;
      }
      if (!spec) {
        if (state) { state.deck.setProps({layers: []}); state.spec = {}; state.base = []; }
        var waiting = container.querySelector('.trailscope-deckmap-placeholder');
        if (waiting && !state) { waiting.textContent = 'Nothing to show on the map here.'; }
        return {ok: true, layers: 0, error: null, spec: false};
      }
      var built;
      var loaded = performance.now();
      if (!state || state.spec !== spec) {
        built = buildLayers(deck, spec);
      }
      if (!state) {
        state = maps[key] = {container: container, spec: spec, viewKey: null};
        state.deck = new deck.Deck({
          parent: container, views: built.views,
          initialViewState: fitView(deck, spec.initialViewState, container),
          layers: [], getTooltip: tooltipFor(key),
          onAfterRender: function () { markDrawn(maps[key]); },
          onViewStateChange: function (p) {
            var st = maps[key];
            if (st) { st.viewState = p.viewState; setScale(st); }
          },
          onError: function (err) {
            console.error('trailscope deckmap:', err);
            setMessage(container, userMessage(err));
          }
        });
      }
      if (built) {
        state.builds = (state.builds || 0) + 1;
        state.spec = spec;
        state.base = built.base;
        state.meta = built.meta;
        state.raw = built.raw;
        var tiles = spec.basemap && spec.basemap.url && !state.offline;
        state.basemap = tiles ? basemapLayer(deck, spec.basemap, key) : null;
        setAttribution(container, tiles ? spec.basemap.attribution : '');
        var viewKey = JSON.stringify(spec.initialViewState);
        if (viewKey !== state.viewKey) {
          state.viewKey = viewKey;
          state.viewState = fitView(deck, spec.initialViewState, container);
          state.deck.setProps({initialViewState: state.viewState});
        }
        addZoomButtons(state);
        setScale(state);
      }
      state.time = time;
      setMessage(container, null);
      if (built && spec.time != null) { time = spec.time; }
      if (built) {
        markPending(state);
        // when this spec reached the browser, deck.gl was ready, its layers were built
        state.timing = {spec: asked, deck: loaded, built: performance.now()};
      }
      state.deck.setProps({layers: layersAt(state, time)});
      return {ok: true, layers: state.base.length, error: null, spec: true};
    }).catch(function (err) {
      setMessage(container, userMessage(err));
      console.error('trailscope deckmap:', err);
      return {ok: false, layers: 0, error: String(err.message || err), spec: !!spec};
    });
  }

  function findContainer(id, tries) {
    var el = document.getElementById(stringifyId(id));
    if (el || tries <= 0) { return Promise.resolve(el); }
    return new Promise(function (resolve) {
      window.requestAnimationFrame(function () { resolve(findContainer(id, tries - 1)); });
    });
  }

  // Start loading deck.gl as soon as a map container is on the page, while the page's
  // callbacks are still computing the map (the bundle is large to parse).
  function preloadWhenMapAppears() {
    if (typeof MutationObserver === 'undefined' || !document.documentElement) { return; }
    // maps drawn on a canvas (DeckMap(..., renderer="canvas")) never need deck.gl
    var seen = function () {
      return document.querySelector('.trailscope-deckmap:not([data-renderer="canvas"])');
    };
    if (seen()) { loadDeck().catch(function () { return null; }); return; }
    var observer = new MutationObserver(function () {
      if (seen()) {
        observer.disconnect();
        loadDeck().catch(function () { return null; });
      }
    });
    observer.observe(document.documentElement, {childList: true, subtree: true});
  }
  preloadWhenMapAppears();

  window.trailscopeDeck = {render: render, loadDeck: loadDeck, maps: maps, scaleFor: scaleFor};

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.trailscope = {
      renderDeck: function (spec, time, canvasId) {
        return findContainer(canvasId, 30).then(function (el) {
          if (!el) { return {ok: false, layers: 0, error: 'map container not found'}; }
          return render(el, spec, time);
        });
      },
      renderTime: function (time, canvasId) {
        return findContainer(canvasId, 30).then(function (el) {
          var state = el ? maps[el.id || '__standalone'] : null;
          if (!state || !state.base) { return window.dash_clientside.no_update; }
          return render(el, state.spec, time);
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
