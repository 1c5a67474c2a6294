"""Short real trainings of the neural next-item models against the count baselines.

    .venv/bin/python -m bench.neural_nextitem --data nyc --models markov,sasrec --epochs 5

Imports the shared dataset into a throw-away workspace (TRAILSCOPE_HOME, default a temp
folder), trains each model through models.train.train and prints test NDCG@10 / HR@10,
seconds per epoch and the validation curve. Extra ``key=value`` pairs go to every neural
model's Config (e.g. ``use_text=false``); ``model.key=value`` to one model only.
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
import time
from pathlib import Path

import torch

DATASETS = {"nyc": "NYC", "ml100k": "MOVIELENS", "taobao": "TAOBAO"}
COUNT_MODELS = {"pop", "repeat", "markov"}


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="nyc", choices=sorted(DATASETS))
    p.add_argument("--models", default="repeat,markov,gru,sasrec,graph,st-transformer")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--split", default="leave-last")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("settings", nargs="*", help="key=value or model.key=value Config overrides")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRAILSCOPE_HOME", tempfile.mkdtemp(prefix="trailscope-bench-"))

    from trailscope.analytics.store import Store
    from trailscope.models.training.loop import train

    from tests import conftest
    from tests.models.realdata import load

    store = Store()
    path: Path = getattr(conftest, DATASETS[args.data])
    if not store.exists(args.data):
        t = time.time()
        load(store, path, args.data)
        print(f"imported {path.name} in {time.time() - t:.1f}s")
    common, per_model = {}, {}
    for s in args.settings:
        key, _, val = s.partition("=")
        if "." in key:
            m, _, k = key.partition(".")
            per_model.setdefault(m, {})[k] = _value(val)
        else:
            common[key] = _value(val)
    rows = []
    for name in args.models.split(","):
        overrides = {} if name in COUNT_MODELS else {**common, **per_model.get(name, {})}
        t = time.time()
        res = train(store, args.data, model=name, split=args.split, epochs=args.epochs,
                    device="cpu", batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    max_len=args.max_len, resume=False, pretrain_epochs=args.pretrain_epochs,
                    log=lambda m: print("   ", m), **overrides)
        test = res.metrics["test"]
        per_epoch = [round(h["seconds"], 1) for h in res.history]
        curve = [round(h["valid ndcg@10"], 4) for h in res.history]
        rows.append((name, test["ndcg@10"], test["hr@10"], time.time() - t, per_epoch, curve,
                     overrides))
        print(f"{name}: test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f} "
              f"({time.time() - t:.0f}s; epoch s {per_epoch}; valid {curve}) {overrides}",
              flush=True)
    print(f"\n{args.data} {args.split} L={args.max_len} epochs<={args.epochs}")
    print(f"{'model':16s} {'ndcg@10':>8s} {'hr@10':>8s} {'total s':>8s}")
    for name, nd, hr, sec, _, _, ov in rows:
        print(f"{name:16s} {nd:8.4f} {hr:8.4f} {sec:8.0f}  {ov or ''}")


if __name__ == "__main__":
    main()
