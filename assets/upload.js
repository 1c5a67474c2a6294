/* TrailScope chunked uploader for the Data page.
 *
 * dcc.Upload reads a whole file into the page as base64 and crashes the tab on big files, so
 * this script puts a plain <input type="file"> into the page's upload slot, slices the chosen
 * File into 8 MB chunks and POSTs them to the Flask routes of app/upload.py:
 *   POST /api/upload/new  ->  POST /api/upload/<id>/chunk?index=i (xN)  ->  POST .../finish
 * Progress goes to the page through dash_clientside.set_props; at the end the upload's id is
 * set on the dcc.Store "data-upload-store", which the page's Python callbacks react to.
 * Element ids must match app/ids.py.
 */
(function () {
  "use strict";

  var IDS = {
    zone: "data-upload-zone",
    slot: "data-upload-slot",
    input: "data-upload-input",
    progress: "data-upload-progress",
    bar: "data-upload-progress-bar",
    status: "data-upload-status",
    cancel: "data-upload-cancel",
    store: "data-upload-store"
  };
  var CHUNK_SIZE = 8 * 1024 * 1024;
  var RETRIES = 3;
  var HEADER = { "X-TrailScope-Upload": "1" };
  var busy = false;
  var cancelled = false;

  function setProps(id, props) {
    try {
      // Only while the Data page is shown (dcc.Store has no DOM node, so test the page's slot).
      if (document.getElementById(IDS.slot) && window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props(id, props);
      }
    } catch (err) {
      // The page was left mid-upload: its components are gone, nothing to update.
    }
  }

  function status(text, kind) {
    setProps(IDS.status, { children: text, className: "upload-status" + (kind ? " upload-" + kind : "") });
  }

  function progress(fraction) {
    setProps(IDS.progress, { style: { display: "block" } });
    setProps(IDS.bar, { style: { width: (100 * fraction).toFixed(1) + "%" } });
  }

  function fmtBytes(n) {
    var units = ["bytes", "KB", "MB", "GB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  // The server's CSRF check (app/security.py): repeat its cookie as a header, the same
  // double submit dash-renderer does for callbacks.
  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_csrf_token=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function headers(extra) {
    var h = { "X-CSRFToken": csrfToken() };
    Object.keys(HEADER).forEach(function (k) { h[k] = HEADER[k]; });
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }

  async function request(url, options) {
    var response = await fetch(url, options);
    var body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      var message = body && body.error ? body.error : "the server answered " + response.status;
      var error = new Error(message);
      error.retryable = response.status >= 500 && response.status !== 507;
      throw error;
    }
    return body;
  }

  async function withRetry(fn) {
    for (var attempt = 1; ; attempt += 1) {
      try {
        return await fn();
      } catch (err) {
        var network = err instanceof TypeError;  // fetch() failed: connection dropped
        if (attempt >= RETRIES || !(network || err.retryable)) { throw err; }
        await new Promise(function (r) { setTimeout(r, 500 * attempt); });
      }
    }
  }

  async function upload(file) {
    if (busy) { status("An upload is already running; wait for it to finish.", "error"); return; }
    busy = true;
    cancelled = false;
    var id = null;
    setProps(IDS.store, { data: null });
    setProps(IDS.cancel, { style: { display: "inline-flex" } });
    progress(0);
    status("Starting the upload of " + file.name + " (" + fmtBytes(file.size) + ")…");
    try {
      var start = await request("/api/upload/new", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify({ filename: file.name, size: file.size, chunk_size: CHUNK_SIZE })
      });
      id = start.upload_id;
      var chunk = start.chunk_size;
      for (var i = 0; i < start.chunks; i += 1) {
        if (cancelled) { throw new Error("cancelled"); }
        var blob = file.slice(i * chunk, Math.min(file.size, (i + 1) * chunk));
        var url = "/api/upload/" + id + "/chunk?index=" + i;
        await withRetry(function () {
          return request(url, {
            method: "POST",
            headers: headers({ "Content-Type": "application/octet-stream" }),
            body: blob
          });
        });
        var sent = Math.min(file.size, (i + 1) * chunk);
        progress(sent / file.size);
        status("Uploading " + file.name + ": " + Math.floor(100 * sent / file.size) + "% (" +
               fmtBytes(sent) + " of " + fmtBytes(file.size) + ")");
      }
      var done = await request("/api/upload/" + id + "/finish", { method: "POST", headers: headers() });
      progress(1);
      status("Uploaded " + done.filename + " (" + fmtBytes(done.size) + ").", "ok");
      setProps(IDS.store, { data: { upload_id: done.upload_id, filename: done.filename,
                                    size: done.size, at: Date.now() } });
    } catch (err) {
      if (cancelled) {
        progress(0);
        status("Upload cancelled.");
        if (id) { fetch("/api/upload/" + id, { method: "DELETE", headers: headers() }); }
      } else {
        status("Upload failed: " + err.message, "error");
      }
    } finally {
      busy = false;
      setProps(IDS.cancel, { style: { display: "none" } });
    }
  }

  function installInput() {
    var slot = document.getElementById(IDS.slot);
    if (!slot || slot.querySelector("input[type=file]")) { return; }
    var input = document.createElement("input");
    input.type = "file";
    input.id = IDS.input;
    input.className = "upload-input";
    input.setAttribute("aria-label", "Choose an event log file to import");
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (file) { upload(file).finally(function () { input.value = ""; }); }
    });
    input.addEventListener("dragenter", function () { slot.classList.add("dragover"); });
    input.addEventListener("dragleave", function () { slot.classList.remove("dragover"); });
    input.addEventListener("drop", function () { slot.classList.remove("dragover"); });
    slot.appendChild(input);
  }

  document.addEventListener("click", function (event) {
    if (busy && event.target && event.target.id === IDS.cancel) { cancelled = true; }
  });

  // Dash renders pages after this script runs and re-renders them on navigation: watch the DOM
  // and (re)install the file input whenever an empty upload slot appears.
  new MutationObserver(installInput).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", installInput);
})();
