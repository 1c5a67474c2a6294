"""Next-item model benchmark: every registered model on real data and a planted-signal set.

    .venv/bin/python -m bench.model_bench [--datasets nyc ml100k taobao planted]
        [--models all|pop,repeat,...] [--epochs N] [--peers] [--quick] [--threads 1]

Imports the shared datasets (``trailscope.analytics.ingest.pipeline.import_file``) and a
planted-signal draw (bench.planted, via Store.save_dataset) into a throw-away workspace, then
trains each model of models.recommenders.registry with models.training.loop.train on the leave-
last split (NYC also on ``trajectory``, the published next-POI protocol), each run in its own
process (bench.model_bench_run) so its peak RSS is its own. Prints every metric, seconds per
epoch (training only), time to the best validation epoch, top-10 latency and peak RSS per model;
the planted generator's own ceiling; with ``--peers`` RecBole 1.2.1 SASRec/GRU4Rec on the very
same split (bench.recbole_export -> bench/recbole_peer.py in bench/.recbole-venv); and the
issue's goals with PASS/MISS measured in this run (bench.model_bench_report).

With ``--peers`` the script makes RecBole's own virtual environment (gitignored) when it is
missing, the way ../shared/PEERS.md says RecBole installs here:
    python3.11 -m venv bench/.recbole-venv
    bench/.recbole-venv/bin/pip install torch==2.13.0 && \
        bench/.recbole-venv/bin/pip install recbole==1.2.1
``--quick``: 1 epoch on small slices, for checking the script end to end.

``--device cuda``: every run trains, is scored and timed on the GPU (bf16 autocast, as
training picks there), RecBole's peers too (``--peer-python``: a Python that already has
RecBole, e.g. the GPU machine's own, instead of the venv above). ``--compare-devices CPU.json
GPU.json`` prints the same runs' metrics of a CPU and a GPU result file (``--out``) side by
side. bench/gpu_check.sh runs all of the GPU checks in one go on a machine with a GPU.
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

from bench.datasets import FILES

ROOT = Path(__file__).resolve().parents[1]
RECBOLE_PY = ROOT / "bench" / ".recbole-venv" / "bin" / "python"
OUT = ROOT / "bench" / "out"
QUICK_USERS = 120
#: planted draws by name (bench.planted.PlantedConfig fields; the seed is --seed)
PLANTED_SHAPES: dict[str, dict[str, Any]] = {
    "default": {},
    "issue17": {"n_users": 1500, "events_per_user": 40, "n_items": 1000, "n_successors": 7,
                "follow_prob": 0.6},
}
PEER_MODELS = ("SASRec", "GRU4Rec")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["nyc", "ml100k", "taobao", "planted"],
                   choices=[*FILES, "planted"])
    p.add_argument("--models", default="all", help="'all' or a comma list of registry names")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pretrain-epochs", type=int, default=0)
    p.add_argument("--peers", action="store_true", help="also run RecBole SASRec/GRU4Rec")
    p.add_argument("--peer-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--peer-datasets", nargs="+", default=None,
                   help="datasets the peers run on (default: all of --datasets)")
    p.add_argument("--peer-models", nargs="+", default=list(PEER_MODELS), choices=PEER_MODELS)
    p.add_argument("--peer-python", default=None,
                   help="the Python that runs RecBole (default: bench/.recbole-venv, made "
                        "when missing); e.g. a GPU machine's own python3 with RecBole on "
                        "its path (bench/gpu_check.sh)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where every run trains, is scored and timed, RecBole's peers too")
    p.add_argument("--no-trajectory", action="store_true", help="skip NYC trajectory runs")
    p.add_argument("--splits", nargs="+", default=["leave-last", "trajectory"],
                   choices=["leave-last", "temporal", "trajectory"],
                   help="splits to run (trajectory only on nyc, temporal not on planted)")
    p.add_argument("--quick", action="store_true", help="1 epoch on small slices")
    p.add_argument("--threads", type=int, default=1, help="torch threads (and OMP) per run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0,
                   help="training seed; also draws the planted set afresh (seed 0: the "
                        "draw of earlier runs)")
    p.add_argument("--planted-shape", choices=sorted(PLANTED_SHAPES), default="default",
                   help="planted draw: 'default' (2,000 users x 50 events, 3,000 items, 5 "
                        "successors, p 0.7) or 'issue17' (1,500 x 40, 1,000 items, 7, p 0.6)")
    p.add_argument("--latency-calls", type=int, default=200)
    p.add_argument("--home", default=None, help="workspace folder (default: a temp folder)")
    p.add_argument("--out", default=None,
                   help="results JSON (default: bench/out/model_bench-<time>.json)")
    p.add_argument("--summarize", nargs="+", metavar="JSON", default=None,
                   help="print the tables and goals of earlier result files (bench/out/"
                        "model_bench-*.json) merged, e.g. of parts run in parallel; runs nothing")
    p.add_argument("--compare-devices", nargs=2, metavar="JSON", default=None,
                   help="print the same runs of two result files made on different "
                        "devices (e.g. --device cpu and --device cuda) side by side: the "
                        "network's last validation NDCG@10 and the test metrics, PASS where "
                        "equal within noise; runs nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.pretrain_epochs = 1, 1
        args.latency_calls = min(args.latency_calls, 20)
    args.peer_epochs = args.peer_epochs or args.epochs
    return args


def device_line(device: str) -> str:
    """The device the runs use, in words (the GPU's name and torch's CUDA version)."""
    import torch

    if device != "cuda":
        return f"cpu (torch {torch.__version__})"
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: this machine's torch sees no CUDA GPU "
                         f"(torch {torch.__version__})")
    return (f"cuda: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, {torch.cuda.device_count()} GPU(s))")


def model_names(spec: str) -> list[str]:
    from trailscope.models.recommenders.registry import MODELS

    if spec == "all":
        return list(MODELS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; registered: {', '.join(MODELS)}")
    return names


def import_datasets(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Import what --datasets asks for; returns the planted draw (or None)."""
    from trailscope.analytics import schema
    from trailscope.analytics.ingest.pipeline import import_file

    from bench import planted as pl

    draw = None
    for name in args.datasets:
        t = time.perf_counter()
        if name == "planted":
            cfg = (pl.PlantedConfig(n_users=300, n_items=500, seed=args.seed) if args.quick
                   else pl.PlantedConfig(**PLANTED_SHAPES[args.planted_shape], seed=args.seed))
            draw = pl.generate(cfg)
            info = pl.save(store, name, draw, replace=True)
        else:
            src = name + "_full" if args.quick else name
            import_file(store, FILES[name], name=src, replace=True)
            if args.quick:  # a slice: the first users by id
                table = store.table(src)
                info = store.save_dataset(
                    name, f"SELECT * FROM {table} WHERE {schema.USER} IN (SELECT DISTINCT "
                    f"{schema.USER} FROM {table} ORDER BY {schema.USER} LIMIT {QUICK_USERS})",
                    source=str(FILES[name]), fmt="slice", report={}, replace=True)
            else:
                info = store.info(name)
        print(f"imported {name}: {info.rows} events, {info.users} users, {info.items} items "
              f"({time.perf_counter() - t:.1f}s)", flush=True)
    return {"planted": draw}


def planted_ceiling(store: Any, draw: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The generator's metrics on exactly the test targets the models are scored on."""
    import numpy as np
    from trailscope.models.data.dataset import build_dataset

    from bench import planted as pl

    ds = build_dataset(store, "planted", "leave-last", args.max_len)
    ex, ev = ds.parts["test"], ds.events
    to_gen = pl.item_index(np.asarray(ds.meta.item_ids))          # item index - 1 -> draw item
    prev, target = to_gen[ev.item[ex.pos - 1] - 1], to_gen[ev.item[ex.pos] - 1]
    masked = None
    if ds.exclude_seen:
        rows, items = ds.history_items(ex)
        masked = np.zeros((len(ex), draw.config.n_items), dtype=bool)
        masked[rows, to_gen[items - 1]] = True
        masked[np.arange(len(ex)), target] = False   # never happens: the target is unseen
    seq = draw.sequences()  # training transitions: all but each user's last two targets
    bound = pl.learnable_bound(draw, seq[:, :-3].ravel(), seq[:, 1:-2].ravel(), prev, target,
                               candidates=to_gen)
    out = {"dataset": pl.ceiling(draw, prev, target, candidates=to_gen, masked=masked),
           "learnable": bound,
           "raw_draw": pl.leave_last_ceiling(draw), "exclude_seen": bool(ds.exclude_seen),
           "messages": ds.messages}
    return out


def ensure_recbole_venv() -> None:
    """Create bench/.recbole-venv with RecBole 1.2.1 (CPU torch first) unless it exists."""
    if RECBOLE_PY.exists():
        return
    venv = RECBOLE_PY.parents[1]
    print(f"creating RecBole's virtual environment in {venv} (once)", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(RECBOLE_PY), "-m", "pip", "install", "--quiet", "torch==2.13.0"],
             [str(RECBOLE_PY), "-m", "pip", "install", "--quiet", "recbole==1.2.1"]]
    for cmd in steps:
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"could not set up RecBole ({' '.join(cmd)} failed); remove "
                             f"{venv} and retry, or run without --peers")


def export_peers(store: Any, args: argparse.Namespace, folder: Path) -> list[str]:
    from trailscope.models.data.dataset import build_dataset

    from bench.recbole_export import export

    names = [d for d in (args.peer_datasets or args.datasets) if d in args.datasets]
    for name in names:
        ds = build_dataset(store, name, "leave-last", args.max_len)
        counts = export(ds, folder, name)
        note = ("; seen items masked on both sides (exclude_seen; <name>.seen.json)"
                if ds.exclude_seen else "")
        print(f"exported {name} for RecBole: {counts}{note}", flush=True)
    return names


def run_model(job: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    tag = f"{job['dataset']}-{job['split']}-{job['model']}"
    job = {**job, "out": str(work / f"{tag}.json")}
    (work / f"{tag}.job.json").write_text(json.dumps(job))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.model_bench_run",
                           str(work / f"{tag}.job.json")], cwd=ROOT, env=env)
    if proc.returncode != 0 or not Path(job["out"]).exists():
        print(f"  !! {tag} failed (exit {proc.returncode}); see the log above", flush=True)
        return {"job": job, "error": f"exit code {proc.returncode}"}
    res = json.loads(Path(job["out"]).read_text())
    res["wall_seconds"] = time.perf_counter() - t
    return res


def run_peer(name: str, model: str, args: argparse.Namespace, folder: Path,
             env: dict[str, str]) -> dict[str, Any]:
    out = folder / f"{name}-{model}.json"
    cmd = [args.peer_python or str(RECBOLE_PY), str(ROOT / "bench" / "recbole_peer.py"),
           "--data-path", str(folder), "--dataset", name, "--model", model, "--epochs",
           str(args.peer_epochs), "--threads", str(args.threads), "--device", args.device,
           "--out", str(out)]
    print(f"  RecBole {model} on {name} ({args.peer_epochs} epochs max, {args.device})",
          flush=True)
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        print(f"  !! RecBole {model} on {name} failed (exit {proc.returncode}):\n{tail}",
              flush=True)
        return {"model": model, "dataset": name, "error": f"exit code {proc.returncode}"}
    return json.loads(out.read_text())


def merge(paths: list[str]) -> dict[str, Any]:
    """Result files merged: runs (first of each dataset/split/model), peers, the ceiling."""
    merged: dict[str, Any] = {"runs": [], "peers": [], "ceiling": None, "seconds": 0.0,
                              "merged": True}
    seen: set[tuple[str, str, str, int]] = set()
    for path in paths:
        res = json.loads(Path(path).read_text())
        if "job" in res:   # one run's own file (bench.model_bench_run output)
            res = {"args": None, "runs": [res]}
        elif "epoch_seconds" in res and "runs" not in res:   # one peer's own --out file
            res = {"args": None, "runs": [], "peers": [res]}
        if res["args"] is not None:
            merged.setdefault("args", res["args"])
        for r in res["runs"]:
            key = (r["job"]["dataset"], r["job"]["split"], r["job"]["model"],
                   int(r["job"].get("seed", 0)))
            if key not in seen:
                seen.add(key)
                merged["runs"].append(r)
        merged["peers"] += res.get("peers") or []
        if res.get("ceiling"):   # the planted draw of each seed has its own ceiling
            seed = int((res.get("args") or {}).get("seed", 0))
            merged.setdefault("ceilings", {})[str(seed)] = res["ceiling"]
        merged["ceiling"] = merged["ceiling"] or res.get("ceiling")
        merged["seconds"] += res.get("seconds", 0.0)
    done = {(p["dataset"], p["model"]) for p in merged["peers"] if "error" not in p}
    merged["peers"] = [p for p in merged["peers"]     # a failed/stopped try that was rerun
                       if "error" not in p or (p["dataset"], p["model"]) not in done]
    return merged


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.compare_devices:
        from bench import model_bench_report as rep

        first, second = (json.loads(Path(f).read_text()) for f in args.compare_devices)
        rep.compare_devices(first, second)
        return
    if args.summarize:
        from bench import model_bench_report as rep

        print(f"merged results of: {' '.join(args.summarize)}")
        rep.print_summary(merge(args.summarize))
        return
    home = Path(args.home or tempfile.mkdtemp(prefix="trailscope-model-bench-"))
    os.environ["TRAILSCOPE_HOME"] = str(home)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "TRAILSCOPE_HOME": str(home)}
    from trailscope.analytics.store import Store

    from bench import model_bench_report as rep

    t_all = time.perf_counter()
    print(f"model bench: {' '.join(sys.argv)}\nworkspace {home}; torch threads per run "
          f"{args.threads} (torch.set_num_threads + OMP_NUM_THREADS); epochs <= {args.epochs}, "
          f"pretrain epochs {args.pretrain_epochs}, batch {args.batch_size}, max_len "
          f"{args.max_len}, lr {args.lr}, seed {args.seed}; device {device_line(args.device)}",
          flush=True)
    models = model_names(args.models)
    peer_dir = OUT / "recbole" / ("quick" if args.quick else "full")
    store = Store()
    try:
        extra = import_datasets(store, args)
        ceiling = (planted_ceiling(store, extra["planted"], args)
                   if extra["planted"] is not None else None)
        if args.peers and not args.peer_python:
            ensure_recbole_venv()
        peer_sets = export_peers(store, args, peer_dir) if args.peers else []
    finally:
        store.close()     # the runs open the workspace read-only in their own processes
    runs: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="runs-", dir=home))
    for name in args.datasets:
        splits = [s for s in args.splits
                  if s == "leave-last" or (s == "temporal" and name != "planted")
                  or (s == "trajectory" and name == "nyc" and not args.no_trajectory)]
        for split in splits:
            print(f"\n== {name} / {split} ==", flush=True)
            for m in models:
                print(f"  -- {m}", flush=True)
                job = {"dataset": name, "split": split, "model": m, "epochs": args.epochs,
                       "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                       "max_len": args.max_len, "pretrain_epochs": args.pretrain_epochs,
                       "threads": args.threads, "device": args.device,
                       "latency_calls": args.latency_calls if split == "leave-last" else 0}
                runs.append(run_model(job, work, env))
                rep.print_run(runs[-1])
    peers = [run_peer(n, m, args, peer_dir, env) for n in peer_sets for m in args.peer_models]
    results = {"args": vars(args), "runs": runs, "peers": peers, "ceiling": ceiling,
               "ceilings": {str(args.seed): ceiling} if ceiling else {},
               "seconds": time.perf_counter() - t_all}
    rep.print_summary(results)
    OUT.mkdir(parents=True, exist_ok=True)
    dump = (Path(args.out) if args.out
            else OUT / f"model_bench-{time.strftime('%Y%m%dT%H%M%S')}.json")
    dump.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nresults written to {dump} ({results['seconds']:.0f}s in all)")


if __name__ == "__main__":
    main()
