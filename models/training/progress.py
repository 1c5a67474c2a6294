"""Progress from steps nested inside a training run's own steps, for users to read.

``calibrate`` is each model's own method; it hands the work to ``tuning.tune_on_validation``
and ``blend.choose_weights``, which report each setting or weighting they try through
:func:`report`. The training loop routes those reports to its progress events while it
calibrates (``with reporting(hook): net.calibrate(...)``); with no hook set (a model
calibrated outside a run) :func:`report` does nothing. The hook is a context variable, so
concurrent runs in several threads each see only their own.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

#: (done, total, what is under way) -> None
Report = Callable[[int, int, str], None]

_HOOK: contextvars.ContextVar[Report | None] = contextvars.ContextVar("train_report",
                                                                     default=None)


@contextlib.contextmanager
def reporting(hook: Report | None) -> Iterator[None]:
    """Route :func:`report` calls made inside the block to ``hook``."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


def report(done: int, total: int, detail: str) -> None:
    """``done`` of ``total`` units of the work ``detail`` describes (user-facing text)."""
    hook = _HOOK.get()
    if hook is not None:
        hook(done, total, detail)
