"""The service layer's one caching policy: bounded in-memory memos under versioned keys.

Every memoised result of the dashboard lives in a :class:`Memo` defined here:

* ``ANALYTICS``: results of the analyses (services ``@memoize_dataset``), 256 entries;
* ``EXPLANATIONS``: finished explanations (app/services/explain.py), 64 entries;
* ``MODELS``: trained models rebuilt from their checkpoints (app/services/models.py), 4 entries
  (a model can hold tens of MB of weights);
* ``CHECKPOINT_USERS``: the user ids a checkpoint knows (the Models page's picker), 8 entries.

One key rule makes explicit invalidation unnecessary: a key holds the version of what the value
was computed from -- :func:`dataset_stamp` (the dataset's import time and size, new on every
re-import) and, for anything read from a checkpoint file, :func:`file_stamp` (its path and
modification time). A re-imported dataset or a retrained model simply misses; the stale entries
age out of the bounded memo (least recently used first).

``ANALYTICS`` stores its values pickled and hands every caller a fresh copy, so a page that
changes a returned frame cannot change what the next request sees. Models and explanations are
large or read-only and are shared as they are.

:class:`FileMemo` keeps the results of slow pure functions (``FORECASTS``: the Overview's
SARIMA fits; ``PERIODS``: its periodicity search over shuffled series) as files in the
workspace folder, under a digest of everything they were computed from: they survive a
restart and :func:`clear_all`, and cannot go stale (other inputs, other file).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from ...analytics.store import DatasetNotFound, Store

T = TypeVar("T")
_MISSING = object()


class Memo:
    """A thread-safe, bounded least-recently-used memo (``size`` entries at most).

    ``isolate``: store values pickled, so every ``get`` returns an independent copy.
    """

    def __init__(self, name: str, size: int, *, isolate: bool = False) -> None:
        if size < 1:
            raise ValueError(f"memo {name!r} needs room for at least one entry, got {size}")
        self.name, self.size, self.isolate = name, size, isolate
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        _MEMOS.append(self)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value under ``key`` (and mark it recently used), else ``default``."""
        with self._lock:
            hit = self._data.get(key, _MISSING)
            if hit is _MISSING:
                return default
            self._data.move_to_end(key)
        return pickle.loads(hit) if self.isolate else hit

    def put(self, key: Hashable, value: Any) -> None:
        """Remember ``value``; the least recently used entries leave beyond ``size``."""
        stored = pickle.dumps(value, pickle.HIGHEST_PROTOCOL) if self.isolate else value
        with self._lock:
            self._data[key] = stored
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value under ``key``, computing and remembering it on a miss.

        Two requests missing the same key at once both compute it (no lock is held while
        computing, so one slow analysis never blocks the others)."""
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        value = compute()
        self.put(key, value)
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) if self.isolate \
            else value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_MEMOS: list[Memo] = []

ANALYTICS = Memo("analytics", 256, isolate=True)
EXPLANATIONS = Memo("explanations", 64)
MODELS = Memo("models", 4)
CHECKPOINT_USERS = Memo("checkpoint-users", 8)
#: The model id an API request names, by (dataset, its import, the model asked for, the state
#: of its checkpoint folder): a new, deleted or rewritten checkpoint or a re-import is a new key.
MODEL_IDS = Memo("model-ids", 256)


class FileMemo:
    """Pickled results of a slow pure function, one file per digest of its inputs, in a
    folder (``kind`` under the workspace's ``cache`` folder); at most ``size`` files, the
    least recently written leave. A folder that cannot be written (a read-only workspace)
    only means no file is kept."""

    def __init__(self, kind: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"file memo {kind!r} needs room for at least one file, got {size}")
        self.kind, self.size = kind, size

    def get_or_compute(self, home: Path, key: str, compute: Callable[[], T]) -> T:
        """The value stored under ``key`` in workspace folder ``home``, else ``compute()``
        (then stored). ``key`` must name every input of the computation and its version."""
        folder = Path(home) / "cache" / self.kind
        path = folder / f"{hashlib.sha256(key.encode()).hexdigest()}.pkl"
        try:
            return pickle.loads(path.read_bytes())
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            pass  # no file yet, or one from another version of the code: compute again
        value = compute()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                pickle.dump(value, f, pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)  # readers see the whole file or none
            others = sorted((f for f in folder.glob("*.pkl") if f != path),
                            key=lambda f: f.stat().st_mtime_ns)
            for old in others[:max(0, len(others) + 1 - self.size)]:
                old.unlink(missing_ok=True)
        except OSError:
            pass
        return value


FORECASTS = FileMemo("forecasts", 64)
PERIODS = FileMemo("periods", 64)


def clear_all() -> None:
    """Forget every memoised value (the workspace closed; tests)."""
    for memo in _MEMOS:
        memo.clear()


# -- the key rule --------------------------------------------------------------------------
def dataset_stamp(store: Store, name: str) -> str:
    """The version of a dataset: its import time and row count (new on every re-import).

    Raises DatasetNotFound with a message saying what to do."""
    cur = store.cursor()
    try:
        row = cur.execute("SELECT imported_at, rows FROM datasets WHERE name = ?",
                          [name]).fetchone()
    finally:
        cur.close()
    if row is None:
        raise DatasetNotFound(
            f"no dataset named {name!r}; pick one from the selector or import it on the Data page")
    return f"{row[0]}|{row[1]}"


def import_stamp(store: Store, name: str, imported_at: Any = None) -> str:
    """The version of a dataset's import alone (its import time): new on a re-import, the same
    across appended events. For what depends on the imported data only: a trained model,
    whose fingerprint is fixed at import, stays valid while events are appended (its
    recommendations read the user's events at each call). ``imported_at``: the registry's
    import time when the caller has just read it (``DatasetInfo.imported_at``), which saves
    the query. Raises DatasetNotFound."""
    if imported_at is not None:
        return str(imported_at)
    return dataset_stamp(store, name).split("|", 1)[0]


def file_stamp(path: str | Path) -> tuple[str, int]:
    """The version of a file (a checkpoint): its path and modification time in ns."""
    path = Path(path)
    return str(path), path.stat().st_mtime_ns
