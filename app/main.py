"""The TrailScope dashboard: ``create_app`` builds the Dash app; ``main`` serves it.

Run it with ``python -m trailscope.app.main [--host H] [--port P] [--dataset NAME]`` or
``trailscope serve`` (both serve with waitress, see :func:`server_settings`; one process: the
DuckDB workspace file admits a single writing process; threads share it safely). The default
dataset comes from the ``dataset`` argument, else ``$TRAILSCOPE_DEFAULT_DATASET``, else the
newest import.

Dash keeps page callbacks (``@callback`` in app/pages) in process-wide lists that the first
app to serve a request takes over, so create one app per process: ``app`` below.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import dash
import flask
import waitress
from flask import Response, redirect, request
from waitress.server import BaseWSGIServer, MultiSocketServer

from ..analytics import engine
from ..analytics.store import StoreError
from . import ASSETS, layout, security
from .api import handoff
from .api import routes as api
from .deckgl.deckmap import register_deckmap
from .plotlyjs import register_plotlyjs
from .services import jobs, upload, writer
from .services import models as model_services
from .services import workspace as services
from .services.messages import public_message

PAGES = Path(__file__).resolve().parent / "pages"

#: Modules that plotly's JSON encoder (every callback answer) takes from ``sys.modules``
#: without importing them: one request thread importing Pillow (torch and captum do, on the
#: Explain page) left ``PIL.Image`` half-initialised for a moment, and a page answer encoded in
#: that moment failed with "partially initialized module 'PIL.Image'" (a 500: the page stayed
#: blank). Imported here, before any request thread starts.
_PLOTLY_OPTIONAL = ("numpy", "pandas", "PIL.Image")
for _module in _PLOTLY_OPTIONAL:
    importlib.import_module(_module)

_INDEX = """<!DOCTYPE html>
<html lang="en">
  <head>
    {%metas%}
    <title>{%title%}</title>
    <link rel="icon" type="image/svg+xml" href="/assets/logo.svg">
    {%css%}
  </head>
  <body>
    {%app_entry%}
    <footer>{%config%}{%scripts%}{%renderer%}</footer>
  </body>
</html>"""


def create_app(default_dataset: str | None = None) -> dash.Dash:
    """The multi-page TrailScope app; pages come from app/pages, assets from ./assets."""
    services.set_default_dataset(default_dataset)
    # Flask would look for an instance folder by walking the `trailscope` namespace package, which
    # an editable install does not expose as a folder; the app keeps no instance files anyway.
    server = flask.Flask("trailscope.app", instance_path=str(PAGES.parent / "instance"))
    app = dash.Dash(
        "trailscope.app",  # a package name: Dash then imports pages as trailscope.app.pages.*
        server=server,
        use_pages=True,
        pages_folder=str(PAGES),
        assets_folder=str(ASSETS),
        serve_locally=True,  # the browser may have no internet: no CDN
        title="TrailScope",
        update_title=None,
        index_string=_INDEX,
        suppress_callback_exceptions=True,  # page components exist only while shown
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.layout = layout.shell_layout
    layout.register_shell_callbacks(app)
    register_deckmap(app)  # offline deck.gl bundle route + clientside map rendering
    register_plotlyjs(app)  # the plotly.js bundle the pages' graphs load
    server.register_blueprint(upload.blueprint)
    server.register_blueprint(api.blueprint)  # the HTTP API under /api/v1
    security.install(app)  # hosts, login, CSRF, headers: before every other request hook

    @server.before_request
    def _root_to_overview() -> Response | None:
        if request.path == "/" and request.method == "GET":
            query = request.query_string.decode("ascii", "replace")
            return redirect("/overview" + (f"?{query}" if query else ""), code=302)
        return None

    return app


if __name__ == "__main__":  # `python -m`: let `import trailscope.app.main` find this module
    sys.modules.setdefault("trailscope.app.main", sys.modules[__name__])

app = create_app(os.environ.get("TRAILSCOPE_DEFAULT_DATASET") or None)
server = app.server


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return max(int(raw), 1) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number such as {default}") from None


def server_settings() -> dict[str, int | bool]:
    """waitress settings of the production server (each overridable by its variable).

    waitress reads every request, body included, in its one I/O thread and hands a worker
    thread only a complete request, so a client that sends a chunk body byte by byte holds a
    socket, never a worker: slow uploads cannot starve the pages. A connection silent for
    ``channel_timeout`` seconds is closed (the request-body read timeout); a body larger than
    the biggest upload chunk is refused before it is read; past ``connection_limit`` open
    connections new ones wait in the listen queue. Bodies over 512 KB are buffered in a temp
    file, so held connections cost little memory.

    Torch computes in ``TRAILSCOPE_TORCH_THREADS`` threads (default 1, set here): the request
    threads already run side by side, and intra-op threads of concurrent requests on a busy
    machine wait on each other (a recommendation under ingest on 2 cores took about 110 ms
    with torch's default of 2 threads, 10-20 ms with 1).
    """
    import torch

    torch.set_num_threads(_env_int("TRAILSCOPE_TORCH_THREADS", 1))
    return {
        "threads": _env_int("TRAILSCOPE_THREADS", 32),  # API posters wait on the writer
        "channel_timeout": _env_int("TRAILSCOPE_CHANNEL_TIMEOUT_S", 30),
        "cleanup_interval": 5,  # how often idle connections are looked for (seconds)
        "connection_limit": _env_int("TRAILSCOPE_CONNECTION_LIMIT", 200),
        # the biggest upload chunk or API body (TRAILSCOPE_API_MAX_BODY_MB), whichever is larger
        "max_request_body_size": max(upload.MAX_CHUNK_SIZE, api.max_body_bytes()) + 1024 * 1024,
        "asyncore_use_poll": True,  # poll(): no 1024-descriptor limit of select()
    }


def _client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host``."""
    name = security.normalize_host(host) if host.strip() else ""
    if name in security.WILDCARD_BINDS:
        name = "127.0.0.1" if name != "::" else "::1"
    return f"http://[{name}]:{port}" if name and ":" in name else f"http://{name}:{port}"


def _announce(db_path: Path, url: str) -> None:
    """Write ``server.json`` for the CLI; a workspace folder that refuses it only costs the
    hand-off (the CLI then says the workspace is held), so the server still starts."""
    try:
        handoff.write(db_path, url)
    except OSError as exc:
        print(f"trailscope: cannot write {handoff.FILENAME} beside the workspace "
              f"({public_message(exc)}): the CLI will not hand its work to this server",
              file=sys.stderr, flush=True)


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a supervisor) ends the server like Ctrl-C, so the ``finally`` of
    :func:`main` removes the hand-off file and winds the server down (:func:`_wind_down`)."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test serving in a thread)
        pass


class _EveryMinute(logging.Filter):
    """Lets one record through a minute: waitress warns "Task queue depth is N" on every
    request that finds all its threads busy, which under a stream of posts (more connections
    than threads, each waiting for its commit) wrote a line per request, under waitress's
    queue lock, for 4% of the server's Python time."""

    def __init__(self) -> None:
        super().__init__()
        self._next, self._held = 0.0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return False
        if self._held:
            record.msg = f"{record.msg} ({self._held} more such warnings in the last minute)"
        self._next, self._held = now + 60.0, 0
        return True


def _quiet_queue_warnings() -> None:
    """At most one waitress queue-depth warning a minute (:class:`_EveryMinute`)."""
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, _EveryMinute) for f in queue_log.filters):
        queue_log.addFilter(_EveryMinute())


#: Set once the server serves (threads may then be inside native calls; see :func:`serve`).
_serving = threading.Event()

#: How long a stopping server waits for the requests being served (waitress's threads), and
#: then for the writer's queued commits and summary folds.
STOP_REQUESTS_S = 5.0
STOP_WRITES_S = 10.0


def _wind_down(httpd: BaseWSGIServer | MultiSocketServer) -> None:
    """Stop serving in order: no new connections, the requests being served finish (their
    events are committed), the writer's queue and summary folds finish, and the workspace
    is closed (DuckDB checkpoints its log) unless a job (training, a rebuild) still runs.
    A post that got its 200 is stored; one cut off without an answer may be or not (its
    sender resends it; the event id keeps it once)."""
    model_services.stop_updates()  # no online update starts from here on
    httpd.close()
    httpd.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_REQUESTS_S)
    idle = writer.wait_idle(STOP_WRITES_S)
    running = jobs.jobs(active_only=True)
    if idle and not running:
        try:
            services.close_store()
        except Exception as exc:  # noqa: BLE001 - DuckDB refuses while a thread still queries
            print(f"TrailScope stopped; the workspace was still in use ({public_message(exc)}): "
                  "its log is replayed at the next start, every committed write is kept",
                  file=sys.stderr, flush=True)
            return
        print("TrailScope stopped: every write is committed and the workspace closed",
              file=sys.stderr, flush=True)
    else:
        what = (f"{len(running)} job(s) still running ({running[0]['label']})" if running
                else "writes still queued")
        print(f"TrailScope: stopping with {what}: they end with the server, nothing half-written "
              "is kept", file=sys.stderr, flush=True)


def main(host: str = "127.0.0.1", port: int = 8050, dataset: str | None = None,
         debug: bool = False) -> None:
    """Serve the dashboard at http://host:port (blocking): the waitress production server
    (:func:`server_settings`), or Flask's development server with Dash dev tools if ``debug``.
    Unfinished uploads of an earlier run are removed first. An unsafe bind (another address
    without a credential, see :func:`security.check_bind`) stops it with a one-line message,
    and so does a workspace another process holds. While it serves, ``server.json`` beside
    the workspace file tells the CLI where it is (app/api/handoff.py); it goes at exit, and
    the server winds down (:func:`_wind_down`). A process that serves ends with
    :func:`serve`, which also ends the process."""
    try:
        security.check_bind(host, app.server)
    except security.AccessError as exc:
        raise SystemExit(f"trailscope: {exc}") from None
    if dataset:
        services.set_default_dataset(dataset)
    try:
        store = services.get_store()  # now: a workspace held elsewhere stops the start
    except StoreError as exc:
        raise SystemExit(f"trailscope: {public_message(exc)}") from None
    upload.clean_at_start()
    _stop_on_sigterm()
    if debug:
        _announce(store.path, _client_url(host, port))
        try:
            app.run(host=host, port=port, debug=True, use_reloader=False)
        finally:
            handoff.remove(store.path)
        return
    settings = server_settings()
    engine.load_duckdb_backend()  # not on the first page view
    _quiet_queue_warnings()
    httpd = waitress.create_server(server, host=host, port=port, **settings)
    _announce(store.path, _client_url(host, int(getattr(httpd, "effective_port", port))))
    print(f"TrailScope serving http://{host}:{port} (waitress, {settings['threads']} threads)",
          file=sys.stderr, flush=True)
    _serving.set()
    try:
        httpd.run()
    finally:
        handoff.remove(store.path)
        _wind_down(httpd)


def serve(host: str = "127.0.0.1", port: int = 8050, dataset: str | None = None,
          debug: bool = False) -> NoReturn:
    """:func:`main`, then the end of the process: SIGTERM and Ctrl-C exit 0 (waitress's
    loop ends on either), a refused start 1 with its message. The process ends with
    ``os._exit`` once :func:`main` has wound the server down, without the interpreter's
    shutdown: that ends daemon threads still in a native call (a request's DuckDB query, a
    summary fold, torch) by unwinding their thread, which DuckDB's C++ frames turn into
    ``FATAL: exception not rethrown`` and an abort (SIGABRT): under a stream of posts, two
    stops in two (tests/app/test_server_stop.py)."""
    code: int = 0
    try:
        main(host=host, port=port, dataset=dataset, debug=debug)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = int(exc.code or 0)
    except KeyboardInterrupt:  # outside waitress's loop, which itself ends on Ctrl-C
        code = 130
    except Exception:
        if not _serving.is_set():
            raise  # a start that failed (a port in use): the CLI says it in one line
        traceback.print_exc()  # said, then the process still ends without the unwinding
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trailscope.app.main",
                                description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--dataset", default=None, help="dataset shown when the URL names none")
    p.add_argument("--debug", action="store_true", help="Dash dev tools and tracebacks")
    return p.parse_args(argv)


if __name__ == "__main__":
    _args = _parse(sys.argv[1:])
    serve(host=_args.host, port=_args.port, dataset=_args.dataset, debug=_args.debug)
