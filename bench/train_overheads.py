"""Where a training run's time goes besides the training steps (issue #13, "Training overheads").

    .venv/bin/python -m bench.train_overheads [--datasets nyc24k sample100k] [--epochs 3]
        [--baseline REV] [--code-only]

Trains the st-transformer with the Models page's settings (leave-last split, max_len 50,
patience 3, the model's default Config) for ``--epochs`` epochs on the CPU, on

* ``nyc24k``: the first users of the committed Foursquare NYC slice (tests/data) up to about
  24,000 check-ins;
* ``sample100k``: the built-in sample city with 550 users (about 100,000 check-ins),

and prints, from the run's progress events and timestamps taken around the loop's own steps:
data preparation (``build_dataset``), statistics (``fit_counts``, the batches it reads
included), pre-training, training steps, per-epoch validation, calibrate, the final evaluation
(valid + test + slices), the checkpoint save and the total; then the overhead share
``(preparation + statistics + validation + calibrate + final evaluation) / total`` against the
goal of 20%, and the test NDCG@10 and the settings chosen on validation (same seed: the code
before and after must agree). Each figure is given on two clocks: wall time and the process's
CPU time; on a shared, loaded machine the CPU time is the steadier measure of the work, the
wall time also counts the waits for a core. ``--threads`` (default 1) sets torch's threads.

Each measurement runs in its own process. ``--after REV`` measures git revision ``REV``
instead of the working tree. ``--baseline REV`` (default: the commit before the
issue's changes) also measures the code of git revision ``REV``, extracted with ``git archive``
into a temporary folder that is imported in place of this checkout, in the same run and on the
same data, so the two are compared on the same machine at the same load. The load average is
printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NYC_SLICE = ROOT / "tests" / "data" / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
#: the code before issue #13's training-overhead changes
BASELINE_REV = "f9cb606"
DATASETS = ("nyc24k", "sample100k")
GOAL = 0.20
TARGET_NYC_EVENTS = 24_000
SAMPLE_USERS = 550


def load_text() -> str:
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f}"


# -- one measurement (child process) ---------------------------------------------------------
def make_dataset(store: Any, which: str) -> str:
    from trailscope.analytics import schema
    from trailscope.analytics.ingest.pipeline import import_file

    if which == "nyc24k":
        import_file(store, NYC_SLICE, name="nycall")
        table, cols = store.table("nycall"), ", ".join(schema.COLUMNS)
        # whole users, in id order, until about TARGET_NYC_EVENTS check-ins
        sql = (f"WITH c AS (SELECT {schema.USER} AS u, count(*) AS n FROM {table} GROUP BY 1), "
               f"k AS (SELECT u FROM (SELECT u, sum(n) OVER (ORDER BY u) AS cum FROM c) "
               f"WHERE cum <= {TARGET_NYC_EVENTS}) "
               f"SELECT {cols} FROM {table} WHERE {schema.USER} IN (SELECT u FROM k)")
        store.save_dataset("nyc24k", sql, source="nycall", fmt="slice", report={},
                           replace=True)
        return "nyc24k"
    from trailscope.analytics.sample.generate import import_sample

    import_sample(store, name="sample100k", users=SAMPLE_USERS, seed=7)
    return "sample100k"


def now() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the CPU time is the
    steadier measure of the work done (the wall time also counts waiting for a core)."""
    return time.perf_counter(), time.process_time()


def phases(clock: int, marks: dict[str, tuple[float, float]],
           events: list[tuple[tuple[float, float], dict[str, Any]]]) -> dict[str, Any]:
    """The phase durations on one clock (0 wall, 1 CPU) from the marks and progress events:
    per epoch, training steps from the epoch's start to its last step and validation from
    there to the epoch's VALID result."""
    m = {k: v[clock] for k, v in marks.items()}
    epoch_train, epoch_valid, pretrain = [], [], 0.0
    boundary = m.get("stats_end", m["data_end"])
    last_step: float | None = None
    for t2, d in events:
        t = t2[clock]
        if d["phase"] == "pretrain":
            pretrain = t - boundary
        elif d["phase"] == "train" and d.get("steps") and d.get("step") == d["steps"]:
            last_step = t
        elif d["phase"] == "valid" and d.get("loss") is not None and last_step is not None:
            epoch_train.append(last_step - boundary - (pretrain if not epoch_train else 0))
            epoch_valid.append(t - last_step)
            boundary, last_step = t, None
    out = {
        "prep": m["data_end"] - m["start"],
        "stats": m["stats_end"] - m["data_end"] if "stats_end" in m else 0.0,
        "pretrain": pretrain, "train_epochs": epoch_train, "valid_epochs": epoch_valid,
        "calibrate": m["calibrate_end"] - m["calibrate_start"],
        "final_eval": m["save_start"] - m["calibrate_end"],
        "save": m["save_end"] - m["save_start"],
        "total": m["end"] - m["start"],
    }
    out["overhead"] = (out["prep"] + out["stats"] + sum(epoch_valid) + out["calibrate"]
                       + out["final_eval"])
    out["share"] = out["overhead"] / out["total"]
    return out


def measure(which: str, epochs: int, threads: int) -> dict[str, Any]:
    """Train once and return the phase timings (seconds) and metrics."""
    import torch
    from trailscope.analytics.store import Store
    from trailscope.models.recommenders.registry import get_class
    from trailscope.models.training import checkpoint, loop
    from trailscope.models.training.settings import TrainSettings

    torch.set_num_threads(threads)
    folder = Path(tempfile.mkdtemp(prefix="train-overheads-"))
    store = Store(folder / "trailscope.duckdb")
    name = make_dataset(store, which)
    n_events = store.info(name).rows
    marks: dict[str, tuple[float, float]] = {}
    events: list[tuple[tuple[float, float], dict[str, Any]]] = []

    def timed(key: str, fn):
        def wrapper(*a, **k):
            marks.setdefault(f"{key}_start", now())
            out = fn(*a, **k)
            marks[f"{key}_end"] = now()
            return out
        return wrapper

    cls = get_class("st-transformer")
    loop.build_dataset = timed("data", loop.build_dataset)
    cls.fit_counts = timed("stats", cls.fit_counts)
    loop.calibrate = timed("calibrate", loop.calibrate)
    checkpoint.save = timed("save", checkpoint.save)

    def progress(ev: Any) -> None:
        events.append((now(), ev.to_dict()))

    settings = TrainSettings(epochs=epochs, patience=3, device="cpu", max_len=50)
    load_before = load_text()
    marks["start"] = now()
    res = loop.train(store, name, "st-transformer", settings, progress=progress,
                     log=lambda _line: None)
    marks["end"] = now()
    return {
        "dataset": which, "events": n_events, "threads": threads,
        "load_before": load_before, "load_after": load_text(),
        "wall": phases(0, marks, events), "cpu": phases(1, marks, events),
        "test_ndcg10": res.metrics["test"]["ndcg@10"],
        "valid_ndcg10": res.metrics["valid"]["ndcg@10"],
        "chosen": res.metrics.get("chosen"),
        "history_valid": [h["valid ndcg@10"] for h in res.history],
        "progress_events": {ph: sum(1 for _, d in events if d["phase"] == ph)
                            for ph in ("data", "pretrain", "train", "valid", "evaluate",
                                       "done")},
        "details": sorted({d["detail"] for _, d in events if d.get("detail")})[:40],
    }


# -- the driver --------------------------------------------------------------------------------
def extract(rev: str) -> Path:
    """Revision ``rev`` of this repository as an importable ``trailscope`` package."""
    shim = Path(tempfile.mkdtemp(prefix="train-overheads-code-"))
    tree = shim / "trailscope"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return shim


def run_child(which: str, epochs: int, threads: int, code: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:  # the extracted revision shadows this checkout's editable install
        env["PYTHONPATH"] = str(code)
        env["TRAILSCOPE_BENCH_CODE"] = str(code / "trailscope")
    cmd = [sys.executable, "-m", "bench.train_overheads", "--child", which,
           "--epochs", str(epochs), "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {which} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


ROWS = (("data preparation", "prep"), ("statistics", "stats"), ("pre-training", "pretrain"),
        ("training steps", "train_epochs"), ("validation", "valid_epochs"),
        ("calibrate", "calibrate"), ("final evaluation", "final_eval"),
        ("checkpoint save", "save"), ("total", "total"))


def show(label: str, m: dict[str, Any]) -> list[str]:
    rows = [f"  [{label}] {m['dataset']}: {m['events']} events, {m['threads']} torch "
            f"thread(s); {m['load_before']} before, {m['load_after']} after",
            f"    {'':22s} {'wall s':>8s} {'CPU s':>8s}   per epoch (wall)"]
    for name, key in ROWS:
        w, c = m["wall"][key], m["cpu"][key]
        per = ", ".join(f"{x:.1f}" for x in w) if isinstance(w, list) else ""
        w, c = (sum(w), sum(c)) if isinstance(w, list) else (w, c)
        rows.append(f"    {name:22s} {w:8.1f} {c:8.1f}   {per}")
    for clock in ("wall", "cpu"):
        share = m[clock]["share"]
        rows.append(f"    overhead share ({clock:4s}) {share:7.1%}  (goal < {GOAL:.0%}: "
                    f"{'met' if share < GOAL else 'NOT met'})")
    rows += [f"    test NDCG@10 {m['test_ndcg10']!r}  valid NDCG@10 {m['valid_ndcg10']!r}  "
             f"per epoch {m['history_valid']}",
             f"    chosen on validation {m['chosen']}",
             f"    progress events {m['progress_events']}"]
    if m["details"]:
        rows.append(f"    progress texts seen ({len(m['details'])} shown): "
                    + " | ".join(m["details"]))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: steadier figures on a shared machine)")
    p.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with")
    p.add_argument("--after", default=None,
                   help="git revision to measure instead of the working tree (which may hold "
                        "others' uncommitted changes), or a folder holding a trailscope tree")
    p.add_argument("--code-only", action="store_true", help="skip the baseline revision")
    p.add_argument("--baseline-only", action="store_true", help="measure only the baseline")
    p.add_argument("--child", choices=DATASETS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.epochs, args.threads)))
        return
    print(f"training overheads, st-transformer, {args.epochs} epochs, CPU, "
          f"{os.cpu_count()} cores; {load_text()}")
    base = None if args.code_only else extract(args.baseline)
    after = label = None
    if args.after and Path(args.after, "trailscope").is_dir():  # a tree prepared by hand
        after, label = Path(args.after), f"tree {args.after}"
    elif args.after:
        after, label = extract(args.after), f"revision {args.after}"
    label = label or "working tree"
    for which in args.datasets:
        pair = {}
        if base is not None:
            pair["baseline " + args.baseline] = run_child(which, args.epochs, args.threads, base)
        if not args.baseline_only:
            pair[label] = run_child(which, args.epochs, args.threads, after)
        for label, m in pair.items():
            print("\n".join(show(label, m)), flush=True)
        if len(pair) == 2:
            b, n = pair.values()
            gap = abs(b["test_ndcg10"] - n["test_ndcg10"])
            for clock in ("wall", "cpu"):
                x, y = b[clock], n[clock]
                print(f"  {which} ({clock}): total {x['total']:.1f} s -> {y['total']:.1f} s "
                      f"({x['total'] / y['total']:.2f}x); overhead {x['overhead']:.1f} s -> "
                      f"{y['overhead']:.1f} s ({x['overhead'] / max(y['overhead'], 1e-9):.2f}x);"
                      f" share {x['share']:.1%} -> {y['share']:.1%}", flush=True)
            print(f"  {which}: test NDCG@10 "
                  f"{'identical' if gap == 0 else f'differs by {gap:.2e}'}; chosen settings "
                  f"{'identical' if b['chosen'] == n['chosen'] else 'differ'}", flush=True)


if __name__ == "__main__":
    main()
