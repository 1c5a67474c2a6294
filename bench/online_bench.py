"""Online updates on a temporal split of NYC: frozen vs updated each week vs full retrain.

    python -m bench.online_bench --model st-transformer --initial-weeks 30 --weeks 4 --epochs 3

The complete Foursquare NYC check-ins ($TRAILSCOPE_DATA, bench/datasets.py) are cut into
weeks from the first check-in. A model is trained on the first ``--initial-weeks`` weeks
(``--epochs`` epochs, leave-last validation as ``trailscope train``). Then, for each of the
``--weeks`` following weeks, that week's events are appended to the dataset and three models
are scored on the check-ins of the week after it:

* **frozen**: the model of the first weeks, never changed;
* **online**: the previous week's online model continued on the new week
  (``trailscope.models.api.update``: ``--update-epochs`` epochs on the new targets, kept only
  if validation NDCG@10 does not drop);
* **full**: a model trained from scratch on everything so far (``--epochs`` epochs).

Every model is scored on the same targets with the same candidates: all items of the data up
to the end of the scored week (each target's input is the user's whole history before it),
through ``models.training.online.ParentView``, so items a model has not seen rank last for
it. Metrics: NDCG@10, Acc@1 (HR@1) and HR@10; seconds: the training of that step. The table
and the mean over the weeks go to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import NYC

WEEK = 7 * 86400.0
METRICS = (("ndcg@10", "NDCG@10"), ("hr@1", "Acc@1"), ("hr@10", "HR@10"))
KINDS = ("frozen", "online", "full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="st-transformer")
    p.add_argument("--source", default=str(NYC), help="the NYC check-ins file")
    p.add_argument("--initial-weeks", type=int, default=30,
                   help="weeks the first model is trained on")
    p.add_argument("--weeks", type=int, default=4, help="weeks of updates scored")
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs of the first model and of each full retrain")
    p.add_argument("--update-epochs", type=int, default=None,
                   help="epochs of each online update (default: models.training.online's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model setting for every run, e.g. --set hidden=32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    if args.initial_weeks < 1 or args.weeks < 1:
        p.error("--initial-weeks and --weeks must be >= 1")
    return args


def _settings(pairs: list[str]) -> dict[str, Any]:
    from trailscope.app.cli.main import parse_settings

    return parse_settings(pairs)


def _save_until(store: Any, name: str, source: str, until: float, replace: bool = True) -> int:
    """Dataset ``name``: the events of ``source`` before ``until`` (unix seconds)."""
    from trailscope.analytics import schema

    cols = ", ".join(schema.COLUMNS)
    store.save_dataset(name, f"SELECT {cols} FROM {store.table(source)} WHERE "
                       f"epoch_us({schema.TS}) < {int(until * 1e6)}", source=source,
                       fmt="slice", report={}, replace=replace)
    return int(store.info(name).rows)


def _append_week(store: Any, name: str, source: str, start: float, end: float) -> int:
    """Append the events of ``source`` in [start, end) to dataset ``name`` (through
    analytics.append when it exists, else an INSERT: what an append does to the events)."""
    from trailscope.analytics import schema

    cols = ", ".join(schema.COLUMNS)
    where = (f"epoch_us({schema.TS}) >= {int(start * 1e6)} AND "
             f"epoch_us({schema.TS}) < {int(end * 1e6)}")
    try:
        from trailscope.analytics.append import append
    except ImportError:
        cur = store.cursor()
        try:
            cur.execute(f"INSERT INTO {store.table(name)} SELECT {cols} FROM "
                        f"{store.table(source)} WHERE {where}")
        finally:
            cur.close()
    else:
        append(store, name, store.query_df(f"SELECT {cols} FROM {store.table(source)} "
                                           f"WHERE {where}"))
    return int(store.query_df(f"SELECT count(*) AS n FROM {store.table(source)} "
                              f"WHERE {where}")["n"].iloc[0])


def week_targets(ds: Any, start: float, end: float) -> Any:
    """Examples whose target is in [start, end) and whose user has history before it."""
    from trailscope.models.data.splits import Examples

    ev = ds.events
    pos = np.nonzero((ev.ts >= start) & (ev.ts < end))[0]
    user = ev.user[pos]
    first = ev.user_start[user]
    keep = pos > first
    return Examples(user[keep].astype(np.int64), pos[keep].astype(np.int64),
                    first[keep].astype(np.int64))


def score(loaded: Any, ds: Any) -> dict[str, float]:
    """``loaded``'s metrics on ``ds``'s ``next`` part, through the data's own index."""
    from trailscope.models.training import online
    from trailscope.models.training.evaluate import evaluate_model

    view = online.ParentView(loaded.model, online.vocab_map(loaded.meta, ds.meta), ds.meta)
    m = evaluate_model(view, ds, "next", with_slices=False)
    return {k: float(m[k]) for k, _ in METRICS} | {"n": int(m["n"])}


def run(args: argparse.Namespace, home: Path) -> list[dict[str, Any]]:
    import torch
    from trailscope.analytics import schema
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store
    from trailscope.models import api
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.training import checkpoint as ckpt

    torch.set_num_threads(args.threads)
    extra = _settings(args.set)
    quiet = lambda msg: None  # noqa: E731 - the bench prints its own table
    store = Store(home / "trailscope.duckdb")
    t = time.time()
    import_file(store, Path(args.source), name="source")
    first = float(store.query_df(f"SELECT epoch_us(min({schema.TS})) / 1e6 AS t "
                                 f"FROM {store.table('source')}")["t"].iloc[0])
    print(f"imported {store.info('source').rows} events in {time.time() - t:.1f}s; weeks from "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(first))} UTC", flush=True)
    now = first + args.initial_weeks * WEEK
    rows = _save_until(store, "live", "source", now)
    t = time.time()
    base = api.train(store, "live", args.model, epochs=args.epochs, seed=args.seed, log=quiet,
                     **extra)
    print(f"first model {base.model_id}: {rows} events, trained in {time.time() - t:.1f}s "
          f"(valid ndcg@10 {base.metrics['valid']['ndcg@10']:.4f})", flush=True)
    header()
    models = {k: base.path for k in KINDS}
    upd = {"epochs": args.update_epochs} if args.update_epochs else {}
    out = []
    for week in range(1, args.weeks + 1):
        start, now = now, now + WEEK
        added = _append_week(store, "live", "source", start, now)
        seconds = {"frozen": 0.0}
        t = time.time()
        res = api.update(store, "live", args.model, from_id=Path(models["online"]).stem,
                         seed=args.seed, log=quiet, **upd)
        seconds["online"] = time.time() - t
        models["online"] = res.path
        _save_until(store, "full", "source", now)
        t = time.time()
        full = api.train(store, "full", args.model, epochs=args.epochs, seed=args.seed,
                         log=quiet, **extra)
        seconds["full"] = time.time() - t
        models["full"] = full.path
        if not store.query_df(f"SELECT count(*) AS n FROM {store.table('source')} WHERE "
                              f"epoch_us({schema.TS}) >= {int(now * 1e6)}")["n"].iloc[0]:
            print(f"week {week}: no events after it to score; stopping", flush=True)
            break
        _save_until(store, "scored", "source", now + WEEK)
        ds = build_dataset(store, "scored")
        ds = dataclasses.replace(ds, parts={**ds.parts, "next": week_targets(ds, now, now + WEEK)})
        row: dict[str, Any] = {"week": week, "from": time.strftime("%Y-%m-%d", time.gmtime(now)),
                               "added": added, "kept": res.kept_new,
                               "valid": (res.valid_parent, res.valid_new)}
        blends = {}
        for kind in KINDS:
            loaded = ckpt.load(models[kind], store, check_fingerprint=False)
            row[kind] = score(loaded, ds) | {"seconds": seconds[kind]}
            blends[kind] = ((loaded.info.get("metrics") or {}).get("chosen") or {}).get("blend")
        row["n"] = row["frozen"]["n"]
        out.append(row)
        print_row(row)
        if any(blends.values()):  # the score parts each model weighs (chosen on validation)
            print("  blend weights: " + "; ".join(
                f"{k} " + " + ".join(f"{w:g} {p}" for p, w in (b or {}).items())
                for k, b in blends.items()), flush=True)
    store.close()
    return out


def header() -> None:
    cols = " | ".join(f"{k} {label}" for k in KINDS for _, label in METRICS)
    print(f"| week | scored week from | events added | targets | {cols} | "
          "online s | full s | update kept (valid parent -> new) |")
    print("|" + "---|" * (7 + len(KINDS) * len(METRICS)))


def print_row(row: dict[str, Any]) -> None:
    vals = " | ".join(f"{row[k][m]:.4f}" for k in KINDS for m, _ in METRICS)
    vp, vn = row["valid"]
    print(f"| {row['week']} | {row['from']} | {row['added']} | {row['n']} | {vals} | "
          f"{row['online']['seconds']:.1f} | {row['full']['seconds']:.1f} | "
          f"{'yes' if row['kept'] else 'no'} ({vp:.4f} -> {vn:.4f}) |", flush=True)


def print_mean(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no week was scored")
        return
    vals = " | ".join(f"{np.mean([r[k][m] for r in rows]):.4f}" for k in KINDS
                      for m, _ in METRICS)
    secs = {k: np.mean([r[k]["seconds"] for r in rows]) for k in ("online", "full")}
    n = sum(r["n"] for r in rows)
    print(f"| mean | {len(rows)} weeks | {sum(r['added'] for r in rows)} | {n} | {vals} | "
          f"{secs['online']:.1f} | {secs['full']:.1f} | "
          f"{sum(r['kept'] for r in rows)} of {len(rows)} kept |")
    for m, label in METRICS:
        mean = {k: np.mean([r[k][m] for r in rows]) for k in KINDS}
        print(f"mean {label}: online {mean['online']:.4f} vs frozen {mean['frozen']:.4f} "
              f"({mean['online'] - mean['frozen']:+.4f}) vs full retrain {mean['full']:.4f} "
              f"({mean['online'] - mean['full']:+.4f})")
    print(f"mean training seconds per week: online {secs['online']:.1f}, full retrain "
          f"{secs['full']:.1f} ({secs['full'] / max(secs['online'], 1e-9):.1f}x)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"python -m bench.online_bench {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}; model {args.model}, first {args.initial_weeks} weeks, "
          f"{args.weeks} weeks scored, {args.epochs} epochs (first and full), update epochs "
          f"{args.update_epochs or 'default'}, seed {args.seed}, settings {args.set or 'none'}",
          flush=True)
    home = Path(tempfile.mkdtemp(prefix="online-bench-"))
    t = time.time()
    try:
        rows = run(args, home)
        print_mean(rows)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"total {time.time() - t:.0f}s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
