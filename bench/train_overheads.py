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
goal of 20%, and the test NDCG@10 (same seed: the code before and after must agree).

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


def measure(which: str, epochs: int) -> dict[str, Any]:
    """Train once and return the phase timings (seconds) and metrics."""
    import torch
    from trailscope.analytics.store import Store
    from trailscope.models.recommenders.registry import get_class
    from trailscope.models.training import checkpoint, loop
    from trailscope.models.training.settings import TrainSettings

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    folder = Path(tempfile.mkdtemp(prefix="train-overheads-"))
    store = Store(folder / "trailscope.duckdb")
    name = make_dataset(store, which)
    n_events = store.info(name).rows
    marks: dict[str, float] = {}
    events: list[tuple[float, dict[str, Any]]] = []

    def timed(key: str, fn):
        def wrapper(*a, **k):
            marks.setdefault(f"{key}_start", time.perf_counter())
            out = fn(*a, **k)
            marks[f"{key}_end"] = time.perf_counter()
            return out
        return wrapper

    cls = get_class("st-transformer")
    loop.build_dataset = timed("data", loop.build_dataset)
    cls.fit_counts = timed("stats", cls.fit_counts)
    loop.calibrate = timed("calibrate", loop.calibrate)
    checkpoint.save = timed("save", checkpoint.save)

    def progress(ev: Any) -> None:
        events.append((time.perf_counter(), ev.to_dict()))

    settings = TrainSettings(epochs=epochs, patience=3, device="cpu", max_len=50)
    load_before = load_text()
    t0 = time.perf_counter()
    res = loop.train(store, name, "st-transformer", settings, progress=progress,
                     log=lambda _line: None)
    t_end = time.perf_counter()

    # per epoch: training steps from the epoch's start to its last step, validation from
    # there to the epoch's VALID event
    epoch_train, epoch_valid, pretrain = [], [], 0.0
    boundary = marks["stats_end"] if "stats_end" in marks else marks["data_end"]
    last_step: float | None = None
    for t, d in events:
        if d["phase"] == "pretrain":
            pretrain = t - boundary
        elif d["phase"] == "train" and d.get("steps") and d.get("step"):
            if d["step"] == d["steps"]:
                last_step = t
        elif d["phase"] == "valid" and d.get("loss") is not None and last_step is not None:
            epoch_train.append(last_step - boundary - (pretrain if not epoch_train else 0))
            epoch_valid.append(t - last_step)
            boundary, last_step = t, None
    final_start = marks["calibrate_end"]
    out = {
        "dataset": which, "events": n_events, "load_before": load_before,
        "load_after": load_text(),
        "prep": marks["data_end"] - t0,
        "stats": marks["stats_end"] - marks["data_end"] if "stats_end" in marks else 0.0,
        "pretrain": pretrain, "train_epochs": epoch_train, "valid_epochs": epoch_valid,
        "calibrate": marks["calibrate_end"] - marks["calibrate_start"],
        "final_eval": marks["save_start"] - final_start,
        "save": marks["save_end"] - marks["save_start"],
        "total": t_end - t0,
        "test_ndcg10": res.metrics["test"]["ndcg@10"],
        "valid_ndcg10": res.metrics["valid"]["ndcg@10"],
        "history_valid": [h["valid ndcg@10"] for h in res.history],
        "progress_events": {ph: sum(1 for _, d in events if d["phase"] == ph)
                            for ph in ("data", "pretrain", "train", "valid", "done")},
        "details": sorted({d["detail"] for _, d in events if d.get("detail")})[:40],
    }
    out["overhead"] = (out["prep"] + out["stats"] + sum(epoch_valid) + out["calibrate"]
                       + out["final_eval"])
    out["share"] = out["overhead"] / out["total"]
    return out


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


def run_child(which: str, epochs: int, code: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:  # the extracted revision shadows this checkout's editable install
        env["PYTHONPATH"] = str(code)
        env["TRAILSCOPE_BENCH_CODE"] = str(code / "trailscope")
    cmd = [sys.executable, "-m", "bench.train_overheads", "--child", which,
           "--epochs", str(epochs)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {which} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(label: str, m: dict[str, Any]) -> list[str]:
    ev, va = m["train_epochs"], m["valid_epochs"]
    rows = [
        f"  [{label}] {m['dataset']}: {m['events']} events; {m['load_before']} before, "
        f"{m['load_after']} after",
        f"    data preparation     {m['prep']:8.1f} s",
        f"    statistics           {m['stats']:8.1f} s",
        f"    pre-training         {m['pretrain']:8.1f} s",
        f"    training steps       {sum(ev):8.1f} s  ({', '.join(f'{x:.1f}' for x in ev)})",
        f"    validation           {sum(va):8.1f} s  ({', '.join(f'{x:.1f}' for x in va)})",
        f"    calibrate            {m['calibrate']:8.1f} s",
        f"    final evaluation     {m['final_eval']:8.1f} s",
        f"    checkpoint save      {m['save']:8.1f} s",
        f"    total                {m['total']:8.1f} s",
        f"    overhead share       {m['share']:8.1%}  (goal < {GOAL:.0%}: "
        f"{'met' if m['share'] < GOAL else 'NOT met'})",
        f"    test NDCG@10 {m['test_ndcg10']!r}  valid NDCG@10 {m['valid_ndcg10']!r}  "
        f"per epoch {m['history_valid']}",
        f"    progress events {m['progress_events']}",
    ]
    if m["details"]:
        rows.append(f"    progress texts seen ({len(m['details'])} shown): "
                    + " | ".join(m["details"]))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with")
    p.add_argument("--after", default=None,
                   help="git revision to measure instead of the working tree (which may hold "
                        "others' uncommitted changes)")
    p.add_argument("--code-only", action="store_true", help="skip the baseline revision")
    p.add_argument("--baseline-only", action="store_true", help="measure only the baseline")
    p.add_argument("--child", choices=DATASETS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.epochs)))
        return
    print(f"training overheads, st-transformer, {args.epochs} epochs, CPU, "
          f"{os.cpu_count()} cores; {load_text()}")
    base = None if args.code_only else extract(args.baseline)
    after = extract(args.after) if args.after else None
    label = f"revision {args.after}" if args.after else "working tree"
    for which in args.datasets:
        pair = {}
        if base is not None:
            pair["baseline " + args.baseline] = run_child(which, args.epochs, base)
        if not args.baseline_only:
            pair[label] = run_child(which, args.epochs, after)
        for label, m in pair.items():
            print("\n".join(show(label, m)), flush=True)
        if len(pair) == 2:
            b, n = pair.values()
            ratio = b["total"] / n["total"]
            gap = abs(b["test_ndcg10"] - n["test_ndcg10"])
            print(f"  {which}: total {b['total']:.1f} s -> {n['total']:.1f} s ({ratio:.2f}x); "
                  f"overhead {b['overhead']:.1f} s -> {n['overhead']:.1f} s "
                  f"({b['overhead'] / max(n['overhead'], 1e-9):.2f}x); share "
                  f"{b['share']:.1%} -> {n['share']:.1%}; test NDCG@10 "
                  f"{'identical' if gap == 0 else f'differs by {gap:.2e}'}", flush=True)


if __name__ == "__main__":
    main()
