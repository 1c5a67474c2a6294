/*
 * TrailScope's light map renderer: draws a map spec (app/deckgl/deckmap.py deck_spec with
 * renderer="canvas") on a 2D canvas instead of deck.gl.
 *
 * Why: in a browser without a GPU (headless, many VMs) deck.gl draws with software WebGL;
 * parsing its 4 MB bundle and compiling its shaders costs 2-4 s of CPU per page before the
 * first frame. A small map of one user's trips and places (the Users and Models pages) draws
 * in milliseconds on a canvas. assets/deckmap.js hands such specs here; the state it keeps
 * per map has the same shape as a deck.gl map's (``base`` layers with ``id`` and
 * ``props.data``, ``deck.getViewports()[0].project``), so the pages' tools and tests read
 * both alike.
 *
 * Layers: ScatterplotLayer, PathLayer, TripsLayer (replayed: segments up to the current time,
 * faded over the trail length, as deck.gl's fadeTrail) and TextLayer. Web Mercator with
 * deck.gl's 512 px world at zoom 0; drag pans, the wheel and the +/- buttons zoom; tile
 * basemaps are drawn as 256 px raster tiles, falling back to the blank map when they fail.
 * Tooltips are plain text (innerText) in a `.deck-tooltip` box, like deck.gl's.
 */
(function () {
  'use strict';

  var LAYERS = {ScatterplotLayer: 1, PathLayer: 1, TripsLayer: 1, TextLayer: 1};
  var tiles = {}; // url -> {img, ok}: every map's tiles, loaded once

  function supports(spec) {
    return !!spec && (spec.layers || []).every(function (l) { return LAYERS[l['@@type']]; });
  }

  // -- Web Mercator (world: 512 * 2^zoom px) ---------------------------------------------
  function worldXY(lon, lat) {
    var la = Math.max(Math.min(lat, 85.051129), -85.051129) * Math.PI / 180;
    return [(lon + 180) / 360 * 512,
      (1 - Math.log(Math.tan(Math.PI / 4 + la / 2)) / Math.PI) / 2 * 512];
  }

  function lonLat(wx, wy) {
    var lon = wx / 512 * 360 - 180;
    var n = Math.PI * (1 - 2 * wy / 512);
    return [lon, 180 / Math.PI * Math.atan(Math.sinh(n))];
  }

  function Viewport(vs, width, height) {
    var scale = Math.pow(2, vs.zoom);
    var c = worldXY(vs.longitude, vs.latitude);
    this.width = width;
    this.height = height;
    this.zoom = vs.zoom;
    this.latitude = vs.latitude;
    this.longitude = vs.longitude;
    this.project = function (p) {
      var w = worldXY(p[0], p[1]);
      return [(w[0] - c[0]) * scale + width / 2, (w[1] - c[1]) * scale + height / 2];
    };
    this.unproject = function (xy) {
      return lonLat((xy[0] - width / 2) / scale + c[0], (xy[1] - height / 2) / scale + c[1]);
    };
  }

  function fitView(vs, container) {
    var out = Object.assign({}, vs);
    delete out.fit;
    var f = vs.fit;
    var w = container.clientWidth;
    var h = container.clientHeight;
    if (!f || !f.bounds || !(w > 0 && h > 0)) { return out; }
    var a = worldXY(f.bounds[0][0], f.bounds[0][1]);
    var b = worldXY(f.bounds[1][0], f.bounds[1][1]);
    var pad = Math.round((f.padding || 0) * Math.min(w, h));
    var dx = Math.abs(b[0] - a[0]);
    var dy = Math.abs(b[1] - a[1]);
    var zx = dx > 0 ? Math.log2(Math.max(w - 2 * pad, 1) / dx) : Infinity;
    var zy = dy > 0 ? Math.log2(Math.max(h - 2 * pad, 1) / dy) : Infinity;
    var zoom = Math.min(zx, zy, f.maxZoom || 20);
    if (!isFinite(zoom)) { return out; } // one point: keep the centre and zoom from Python
    var mid = lonLat((a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
    out.longitude = mid[0];
    out.latitude = mid[1];
    out.zoom = Math.max(zoom, f.minZoom || 0);
    return out;
  }

  // -- accessors ("@@=field" reads the record, anything else is a constant) -----------------
  function accessor(value, fallback) {
    if (typeof value === 'string' && value.indexOf('@@=') === 0) {
      var field = value.slice(3);
      return function (d) { return d[field]; };
    }
    var v = value === undefined ? fallback : value;
    return function () { return v; };
  }

  function rgba(c, alpha) {
    if (!c) { return 'rgba(0,0,0,1)'; }
    var a = (c.length > 3 ? c[3] : 255) / 255 * (alpha === undefined ? 1 : alpha);
    return 'rgba(' + c[0] + ',' + c[1] + ',' + c[2] + ',' + a.toFixed(3) + ')';
  }

  // -- layers ------------------------------------------------------------------------------
  function makeLayer(desc) {
    var props = {};
    Object.keys(desc).forEach(function (k) {
      if (k.charAt(0) !== '_' && k !== '@@type') { props[k] = desc[k]; }
    });
    props.data = desc.data || [];
    return {id: desc.id, type: desc['@@type'], props: props, isLoaded: true};
  }

  function pathWidth(p) {
    var w = typeof p.getWidth === 'number' && p.widthUnits === 'pixels' ? p.getWidth : 0;
    return Math.max(w, p.widthMinPixels || 0, 1);
  }

  function drawPath(ctx, vp, layer) {
    var p = layer.props;
    var path = accessor(p.getPath, null);
    var color = accessor(p.getColor, [0, 0, 0, 255]);
    ctx.lineWidth = pathWidth(p);
    p.data.forEach(function (d) {
      var pts = path(d) || [];
      if (pts.length < 2) { return; }
      ctx.strokeStyle = rgba(color(d));
      ctx.beginPath();
      pts.forEach(function (q, i) {
        var xy = vp.project(q);
        if (i) { ctx.lineTo(xy[0], xy[1]); } else { ctx.moveTo(xy[0], xy[1]); }
      });
      ctx.stroke();
    });
  }

  // deck.gl's TripsLayer: a vertex at time t shows when t <= now and t >= now - trail, with
  // alpha 1 - (now - t) / trail; each segment is drawn with its end's alpha.
  function drawTrips(ctx, vp, layer, now) {
    var p = layer.props;
    var path = accessor(p.getPath, null);
    var stamps = accessor(p.getTimestamps, null);
    var color = accessor(p.getColor, [0, 0, 0, 255]);
    var t = now === null || now === undefined ? p.currentTime : now;
    var trail = p.trailLength || 1;
    ctx.lineWidth = pathWidth(p);
    p.data.forEach(function (d) {
      var pts = path(d) || [];
      var ts = stamps(d) || [];
      var c = color(d);
      var prev = null;
      for (var i = 0; i < pts.length; i++) {
        var xy = vp.project(pts[i]);
        var age = t - ts[i];
        if (prev && ts[i] <= t && age <= trail) {
          ctx.strokeStyle = rgba(c, Math.max(1 - age / trail, 0));
          ctx.beginPath();
          ctx.moveTo(prev[0], prev[1]);
          ctx.lineTo(xy[0], xy[1]);
          ctx.stroke();
        }
        prev = xy;
      }
    });
  }

  function pointRadius(p) {
    var r = typeof p.getRadius === 'number' ? p.getRadius : 1;
    return Math.max(p.radiusUnits === 'pixels' ? r : 1, p.radiusMinPixels || 0);
  }

  function drawPoints(ctx, vp, layer) {
    var p = layer.props;
    var pos = accessor(p.getPosition, null);
    var fill = accessor(p.getFillColor, [0, 0, 0, 255]);
    var line = accessor(p.getLineColor, [0, 0, 0, 255]);
    var r = pointRadius(p);
    var lw = p.stroked ? Math.max(p.lineWidthMinPixels || 0, 1) : 0;
    p.data.forEach(function (d) {
      var xy = vp.project(pos(d));
      ctx.beginPath();
      ctx.arc(xy[0], xy[1], r, 0, 2 * Math.PI);
      ctx.fillStyle = rgba(fill(d));
      ctx.fill();
      if (lw) {
        ctx.lineWidth = lw;
        ctx.strokeStyle = rgba(line(d));
        ctx.beginPath();
        ctx.arc(xy[0], xy[1], Math.max(r - lw / 2, 0.5), 0, 2 * Math.PI);
        ctx.stroke();
      }
    });
  }

  function drawText(ctx, vp, layer) {
    var p = layer.props;
    var pos = accessor(p.getPosition, null);
    var text = accessor(p.getText, '');
    var color = accessor(p.getColor, [30, 30, 30, 255]);
    var size = typeof p.getSize === 'number' ? p.getSize : 12;
    ctx.font = size + 'px sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 3;
    ctx.strokeStyle = 'rgba(255,255,255,0.85)';
    p.data.forEach(function (d) {
      var xy = vp.project(pos(d));
      var s = String(text(d));
      ctx.strokeText(s, xy[0], xy[1]);
      ctx.fillStyle = rgba(color(d));
      ctx.fillText(s, xy[0], xy[1]);
    });
  }

  // -- tiles -------------------------------------------------------------------------------
  function tileUrl(template, z, x, y) {
    return template.replace('{z}', z).replace('{x}', x).replace('{y}', y);
  }

  function drawTiles(state, ctx, vp) {
    var bm = state.basemap;
    if (!bm) { return; }
    var z = Math.max(0, Math.min(19, Math.round(vp.zoom + 1))); // 512 px world = 256 px tiles
    var n = Math.pow(2, z);
    var size = 512 * Math.pow(2, vp.zoom) / n; // one tile on screen, px
    var tl = vp.unproject([0, 0]);
    var br = vp.unproject([vp.width, vp.height]);
    var a = worldXY(tl[0], tl[1]);
    var b = worldXY(br[0], br[1]);
    var x0 = Math.floor(a[0] / 512 * n);
    var x1 = Math.floor(b[0] / 512 * n);
    var y0 = Math.max(Math.floor(a[1] / 512 * n), 0);
    var y1 = Math.min(Math.floor(b[1] / 512 * n), n - 1);
    for (var x = x0; x <= x1; x++) {
      for (var y = y0; y <= y1; y++) {
        var url = tileUrl(bm.url, z, ((x % n) + n) % n, y);
        var tile = tiles[url] || loadTile(state, url);
        if (!tile.ok) { continue; }
        var corner = vp.project(lonLat(x / n * 512, y / n * 512));
        ctx.drawImage(tile.img, corner[0], corner[1], size + 0.5, size + 0.5);
      }
    }
  }

  function loadTile(state, url) {
    var tile = tiles[url] = {img: new Image(), ok: false};
    tile.img.onload = function () {
      tile.ok = true;
      state.tilesLoaded = (state.tilesLoaded || 0) + 1;
      schedule(state);
    };
    tile.img.onerror = function () {
      delete tiles[url]; // asked again when next drawn
      state.hooks.tilesFailed(state); // offline: the blank map, and a note saying so
    };
    tile.img.src = url;
    return tile;
  }

  // -- drawing -----------------------------------------------------------------------------
  function viewport(state) {
    return new Viewport(state.viewState, state.container.clientWidth,
      state.container.clientHeight);
  }

  function draw(state) {
    state.frame = null;
    var c = state.canvas;
    var w = state.container.clientWidth;
    var h = state.container.clientHeight;
    var ratio = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
      c.style.width = w + 'px';
      c.style.height = h + 'px';
    }
    var ctx = c.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    var vp = viewport(state);
    drawTiles(state, ctx, vp);
    state.base.forEach(function (layer) {
      if (layer.type === 'PathLayer') { drawPath(ctx, vp, layer); }
      if (layer.type === 'TripsLayer') { drawTrips(ctx, vp, layer, state.time); }
      if (layer.type === 'ScatterplotLayer') { drawPoints(ctx, vp, layer); }
      if (layer.type === 'TextLayer') { drawText(ctx, vp, layer); }
    });
    state.hooks.drawn(state);
  }

  function schedule(state) {
    if (state.frame) { return; }
    state.frame = window.requestAnimationFrame(function () { draw(state); });
  }

  // -- picking and tooltips ----------------------------------------------------------------
  function segmentDistance(p, a, b) {
    var dx = b[0] - a[0];
    var dy = b[1] - a[1];
    var len = dx * dx + dy * dy;
    var t = len ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
    var x = a[0] + t * dx - p[0];
    var y = a[1] + t * dy - p[1];
    return Math.sqrt(x * x + y * y);
  }

  // The topmost pickable object under the pointer (last layer first, as drawn).
  function pick(state, xy) {
    var vp = viewport(state);
    for (var li = state.base.length - 1; li >= 0; li--) {
      var layer = state.base[li];
      var p = layer.props;
      if (!p.pickable) { continue; }
      var data = p.data;
      if (layer.type === 'ScatterplotLayer') {
        var pos = accessor(p.getPosition, null);
        var r = pointRadius(p) + 1;
        for (var i = data.length - 1; i >= 0; i--) {
          var q = vp.project(pos(data[i]));
          if (Math.abs(q[0] - xy[0]) <= r && Math.abs(q[1] - xy[1]) <= r &&
              Math.hypot(q[0] - xy[0], q[1] - xy[1]) <= r) {
            return {layer: layer, object: data[i]};
          }
        }
      } else if (layer.type === 'PathLayer' || layer.type === 'TripsLayer') {
        var path = accessor(p.getPath, null);
        var tol = pathWidth(p) / 2 + 2;
        for (var j = data.length - 1; j >= 0; j--) {
          var pts = path(data[j]) || [];
          var prev = null;
          for (var k = 0; k < pts.length; k++) {
            var s = vp.project(pts[k]);
            if (prev && segmentDistance(xy, prev, s) <= tol) {
              return {layer: layer, object: data[j]};
            }
            prev = s;
          }
        }
      }
    }
    return null;
  }

  function tooltipBox(state) {
    if (!state.tip) {
      var tip = document.createElement('div');
      tip.className = 'deck-tooltip';
      tip.style.cssText = 'position:absolute;z-index:3;pointer-events:none;display:none;';
      Object.assign(tip.style, state.hooks.tipStyle);
      state.container.appendChild(tip);
      state.tip = tip;
    }
    return state.tip;
  }

  function hover(state, xy) {
    var hit = pick(state, xy);
    var text = hit ? state.hooks.tooltipText(state, hit.layer.id, hit.object) : null;
    var tip = tooltipBox(state);
    state.container.style.cursor = hit ? 'pointer' : 'grab';
    if (!text) { tip.style.display = 'none'; return; }
    tip.innerText = text;
    tip.style.display = 'block';
    tip.style.left = (xy[0] + 10) + 'px';
    tip.style.top = (xy[1] + 10) + 'px';
  }

  // -- interaction -------------------------------------------------------------------------
  // ``vs.zoom`` is within the view's limits (the deck map's clampZoom).
  function setView(state, vs) {
    state.viewState = Object.assign({}, state.viewState, vs);
    state.hooks.viewChanged(state);
    schedule(state);
  }

  function zoomAround(state, xy, step) {
    var vp = viewport(state);
    var at = vp.unproject(xy);
    var zoom = state.hooks.clampZoom(state.viewState, state.viewState.zoom + step);
    // keep the point under the pointer where it is
    var next = new Viewport({longitude: at[0], latitude: at[1], zoom: zoom}, vp.width,
      vp.height);
    var centre = next.unproject([vp.width - xy[0], vp.height - xy[1]]);
    setView(state, {longitude: centre[0], latitude: centre[1], zoom: zoom});
  }

  function listen(state) {
    var el = state.canvas;
    var drag = null;
    function local(e) {
      var r = el.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    }
    el.addEventListener('pointerdown', function (e) {
      drag = {xy: local(e), vs: state.viewState};
      el.setPointerCapture(e.pointerId);
    });
    el.addEventListener('pointermove', function (e) {
      var xy = local(e);
      if (!drag) { hover(state, xy); return; }
      var vp = new Viewport(drag.vs, el.clientWidth, el.clientHeight);
      var c = vp.unproject([vp.width / 2 - (xy[0] - drag.xy[0]),
        vp.height / 2 - (xy[1] - drag.xy[1])]);
      setView(state, {longitude: c[0], latitude: c[1], zoom: drag.vs.zoom});
    });
    el.addEventListener('pointerup', function () { drag = null; });
    el.addEventListener('pointerleave', function () {
      if (state.tip) { state.tip.style.display = 'none'; }
    });
    el.addEventListener('wheel', function (e) {
      e.preventDefault();
      zoomAround(state, local(e), -e.deltaY / 300);
    }, {passive: false});
    el.addEventListener('dblclick', function (e) { zoomAround(state, local(e), 1); });
  }

  // -- the map -----------------------------------------------------------------------------
  // A deck.gl-like handle, so code written for deck maps (zoom buttons, tests) works here;
  // its layers are the state's.
  function handle(state) {
    return {
      props: {get layers() { return state.base; }},
      getViewports: function () { return [viewport(state)]; },
      setProps: function (p) {
        if (p.initialViewState) { setView(state, p.initialViewState); }
      },
      redraw: function () { schedule(state); },
      finalize: function () {
        if (state.frame) { window.cancelAnimationFrame(state.frame); }
        state.canvas.remove();
        if (state.resize) { state.resize.disconnect(); }
        if (state.tip) { state.tip.remove(); }
      }
    };
  }

  /* Draw ``spec`` in ``container``; ``state`` is the map's earlier state (or null) and
   * ``hooks`` the deck map's shared helpers. Returns the (new) state. */
  function render(container, spec, time, state, hooks) {
    if (!state) {
      var canvas = document.createElement('canvas');
      canvas.className = 'trailscope-canvasmap';
      canvas.style.cssText = 'position:absolute;left:0;top:0;touch-action:none;cursor:grab;';
      container.appendChild(canvas);
      state = {container: container, canvas: canvas, lite: true, hooks: hooks, viewKey: null,
        base: [], meta: {}};
      state.deck = handle(state);
      listen(state);
      if (typeof ResizeObserver !== 'undefined') { // the card's width follows the window
        state.resize = new ResizeObserver(function () {
          if (state.unfitted && container.clientWidth > 0) {
            state.unfitted = false;
            state.viewState = fitView(state.spec.initialViewState, container);
            state.hooks.viewChanged(state);
          }
          schedule(state);
        });
        state.resize.observe(container);
      }
    }
    if (state.spec !== spec) {
      state.builds = (state.builds || 0) + 1;
      state.spec = spec;
      state.base = (spec.layers || []).map(makeLayer);
      state.meta = {}; // what the deck map's tooltipText reads
      (spec.layers || []).forEach(function (l) {
        state.meta[l.id] = {tooltip: l._tooltip || null};
      });
      var tilesOn = spec.basemap && spec.basemap.url && !state.offline;
      state.basemap = tilesOn ? spec.basemap : null;
      hooks.setAttribution(container, tilesOn ? spec.basemap.attribution : '');
      var viewKey = JSON.stringify(spec.initialViewState);
      if (viewKey !== state.viewKey) {
        state.viewKey = viewKey;
        state.viewState = fitView(spec.initialViewState, container);
        state.unfitted = !(container.clientWidth > 0 && container.clientHeight > 0);
      }
      state.time = spec.time != null ? spec.time : time;
      hooks.pending(state);
    } else {
      state.time = time;
    }
    draw(state); // synchronous: a small map draws in milliseconds
    return state;
  }

  window.trailscopeCanvasMap = {supports: supports, render: render, Viewport: Viewport};
}());
