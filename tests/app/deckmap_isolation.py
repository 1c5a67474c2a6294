"""Keep the deckmap tests' throw-away Dash apps from taking the process-wide page callbacks.

Dash hands callbacks registered with ``dash.callback`` (app/pages) to the first app that serves a
request. A test app serving requests in the same pytest process as the real
``trailscope.app.main`` would
take them, so these helpers park the global lists while a test app lives and put them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def isolated_dash_callbacks() -> Iterator[None]:
    from dash import _callback  # private, but it is where Dash keeps the global lists

    saved = (list(_callback.GLOBAL_CALLBACK_LIST), dict(_callback.GLOBAL_CALLBACK_MAP),
             list(_callback.GLOBAL_INLINE_SCRIPTS))
    _callback.GLOBAL_CALLBACK_LIST.clear()
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_INLINE_SCRIPTS.clear()
    try:
        yield
    finally:
        _callback.GLOBAL_CALLBACK_LIST[:] = saved[0]
        _callback.GLOBAL_CALLBACK_MAP.clear()
        _callback.GLOBAL_CALLBACK_MAP.update(saved[1])
        _callback.GLOBAL_INLINE_SCRIPTS[:] = saved[2]
