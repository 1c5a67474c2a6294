"""Web imports as background jobs (kind ``import``, app/services/jobs.py).

The Data page hands over an uploaded file; the job imports it into the workspace and builds its
dashboard summary tables (``workspace.import_uploaded``), while the page polls
:func:`import_state` for progress and finally the import report. Errors a user can fix (a bad
file, mapping or name) come back as their own message; anything else as ``unexpected`` (the
server log has the traceback).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from . import jobs, upload
from . import workspace as services
from .workspace import ServiceError


def _expected() -> tuple[type[BaseException], ...]:
    """Errors of an import whose message tells the user what to change."""
    from ...analytics.ingest.pipeline import IngestError
    from ...analytics.store import StoreError

    return (IngestError, ServiceError, StoreError)


def prefit(name: str) -> float | None:
    """Fit the Overview's forecast and periodicity right after an import (kept as files by
    ``cache``), so the first view of the page does not wait for them; the seconds taken, or
    None when the dataset is too small or odd for them (the page then says why)."""
    from . import analytics

    try:
        return analytics.prefit_overview(name)
    except ServiceError:
        return None


def start_import(path: str | Path, name: str, fmt: str = "auto",
                 mapping: dict[str, str] | None = None, replace: bool = False,
                 keep_duplicates: bool = False) -> str:
    """Queue the import of ``path`` as dataset ``name``; returns the job id at once."""
    path = Path(path)

    def target(progress: jobs.Progress, cancel: threading.Event, log: Any) -> dict[str, Any]:
        if cancel.is_set():
            raise jobs.Cancelled("before the import")
        progress({"phase": "import", "fraction": 0.05,
                  "message": f"Importing {path.name} and building its summaries…"})
        try:
            report = services.import_uploaded(path, name, fmt, mapping, replace=replace,
                                              keep_duplicates=keep_duplicates)
            progress({"phase": "import", "fraction": 0.9, "message": "Fitting the forecast…"})
            return {**report, "prefit_s": prefit(name)}
        finally:  # an upload is imported once, success or failure: its disk space goes back
            upload.discard_after_import(path)

    job = jobs.Job(target, label=f"import {path.name} as {name}", kind="import",
                   meta={"dataset": name, "file": path.name}, summarize=lambda report: report,
                   expected=_expected())
    try:
        return jobs.start(job)
    except jobs.QueueFull as exc:
        raise ServiceError(str(exc)) from exc


def start_sample(name: str, users: int = 500, seed: int = 7, replace: bool = False) -> str:
    """Queue generating the sample city's events as dataset ``name`` (and its summaries), as
    an import job; returns the job id. Its summary is the report ``trailscope sample`` prints."""
    from ...analytics.sample.generate import import_sample

    def target(progress: jobs.Progress, cancel: threading.Event, log: Any) -> dict[str, Any]:
        if cancel.is_set():
            raise jobs.Cancelled("before the sample")
        progress({"phase": "import", "fraction": 0.05,
                  "message": f"Generating {users:,} residents' events…"})
        info = import_sample(services.get_store(), name=name, users=users, seed=seed,
                             replace=replace)
        progress({"phase": "import", "fraction": 0.8, "message": "Building the summaries…"})
        summaries_s = services.build_summaries(name)
        progress({"phase": "import", "fraction": 0.9, "message": "Fitting the forecast…"})
        return {**info.report, "summaries_s": summaries_s, "prefit_s": prefit(name)}

    job = jobs.Job(target, label=f"generate sample {name}", kind="import",
                   meta={"dataset": name, "sample": True}, summarize=lambda report: report,
                   expected=_expected())
    try:
        return jobs.start(job)
    except jobs.QueueFull as exc:
        raise ServiceError(str(exc)) from exc


def import_state(job_id: str) -> dict[str, Any]:
    """``{"status": "running" | "done" | "error", "message", "fraction", "report", "error",
    "unexpected"}``: ``report`` is the import report (a dict) once done; ``unexpected`` marks
    an error that is a bug rather than a problem of the file."""
    try:
        snap = jobs.snapshot(job_id)
    except jobs.JobNotFound:
        raise ServiceError(f"no import job {job_id!r}: the server restarted; import the file "
                           "again") from None
    status = {jobs.QUEUED: "running", jobs.RUNNING: "running", jobs.DONE: "done"}.get(
        snap["status"], "error")
    message = snap["progress"].get("message") or "Waiting for another import to finish…"
    error = snap["error"] or ("cancelled" if snap["status"] == jobs.CANCELLED else None)
    return {"status": status, "message": message, "fraction": snap["fraction"],
            "report": snap["summary"] if status == "done" else None, "error": error,
            "unexpected": snap["unexpected"]}


def cancel_import(job_id: str) -> bool:
    """Cancel an import that waits for another one; True if it was still queued. A running
    import is not interrupted: the store publishes a dataset in one step."""
    try:
        return jobs.snapshot(job_id)["status"] == jobs.QUEUED and jobs.cancel(job_id)
    except jobs.JobNotFound:
        return False
