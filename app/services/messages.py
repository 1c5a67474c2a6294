"""The one place that makes an error's text fit to show: no absolute server path in it.

Messages come from every layer (the importer, DuckDB, the workspace, checkpoints, uploads) and
some name files by their full path: the workspace folder, an upload's folder, a temporary
folder of the importer. Shown in a browser or printed by the CLI, such a path tells a visitor
how the server is laid out and helps nobody fix their input, so every message a user sees
goes through :func:`public_message`, which replaces each absolute path by its file name
(``/srv/ts/uploads/3f…/visits.csv`` -> ``visits.csv``). It is applied where messages leave
the code: ``ServiceError`` (app/services/workspace.py), job errors (app/services/jobs.py),
error boxes and error figures (app/views) and the CLI's one-line errors (app/cli/main.py).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

#: An absolute path of at least two parts (``/a/b``, ``C:\\a\\b``), not inside a URL, a date
#: or a relative path (``events/day``): one part alone (``/C``) is left as it is.
_POSIX = re.compile(r"(?<![\w.:/~\\-])(?:/[^\s/'\"`:;,()\[\]{}<>|]+){2,}/?")
_WINDOWS = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\s\\'\"`:;,()\[\]{}<>|]+\\?)+")


def _file_name(match: re.Match[str], windows: bool = False) -> str:
    path = match.group(0)
    stripped = path.rstrip("./\\")
    tail = path[len(stripped):].lstrip("/\\")     # a sentence's full stop after the path
    name = (PureWindowsPath if windows else PurePosixPath)(stripped).name
    return (name or "the folder") + tail


def public_message(text: object) -> str:
    """``text`` with every absolute path replaced by its file name."""
    out = _POSIX.sub(_file_name, str(text))
    return _WINDOWS.sub(lambda m: _file_name(m, windows=True), out)
