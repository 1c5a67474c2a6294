"""Epoch cost of our next-item models vs a RecBole-style SASRec epoch, on the same data.

    .venv/bin/python -m bench.neural_epoch_cost --data nyc --steps 4

RecBole trains SASRec on every prefix of every training sequence (one target per sequence,
the last position), so an epoch runs the transformer over as many sequences as there are
training events. Our models train every position of each window at once (``target_seq``),
so an epoch is one pass over ~events / L windows. Both costs are measured here with the same
SASRec implementation and model size (hidden 64, 2 layers, 2 heads, L = max_len), timing a few
steps of each and scaling to a full epoch; RecBole's own SASRec (unfused attention) is slower
than this stand-in, so the printed ratio is conservative. Interleaved runs share the load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="nyc", choices=["nyc", "ml100k"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--models", default="sasrec,st-transformer,gru,graph")
    args = p.parse_args()
    torch.set_num_threads(2)
    os.environ.setdefault("TRAILSCOPE_HOME", tempfile.mkdtemp(prefix="trailscope-bench-"))
    from trailscope.analytics.store import Store
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.recommenders.registry import build_model

    from tests import conftest
    from tests.models.realdata import load

    store = Store()
    if not store.exists(args.data):
        load(store, conftest.NYC if args.data == "nyc" else conftest.MOVIELENS, args.data)
    ds = build_dataset(store, args.data, "leave-last", args.max_len)
    windows = len(ds.parts["train"])
    prefixes = int(ds.split_report.train_events) - int((ds.train_len > 0).sum())
    batches = list(ds.batches("train", args.batch_size, shuffle=True))[: args.steps]

    def recbole_batch(b: dict) -> dict:
        # one target per sequence: the last position, as in RecBole's prefix augmentation
        out = dict(b)
        ts = torch.zeros_like(b["target_seq"])
        ts[:, -1] = b["target_seq"][:, -1]
        out["target_seq"] = ts
        return out

    def per_sequence(model, bs) -> float:
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        model.train()
        loss = model.loss(bs[0])  # warm-up
        loss.backward()
        t = time.perf_counter()
        n = 0
        for b in bs:
            loss = model.loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += b["item_seq"].shape[0]
        return (time.perf_counter() - t) / n

    rb = build_model("sasrec", ds.meta)
    rb_seq = [per_sequence(rb, [recbole_batch(b) for b in batches])]
    print(f"{args.data}: {windows} training windows (ours) vs {prefixes} prefix sequences "
          f"(RecBole), L={args.max_len}, batch {args.batch_size}")
    for name in args.models.split(","):
        model = build_model(name, ds.meta)
        if hasattr(model, "fit_counts") and name == "graph":
            model.fit_counts(batches)
        ours = per_sequence(model, batches)
        rb_seq.append(per_sequence(rb, [recbole_batch(b) for b in batches]))
        rb_epoch = float(np.median(rb_seq)) * prefixes
        ep = ours * windows
        print(f"{name:15s} epoch {ep:7.1f}s  RecBole-style SASRec epoch {rb_epoch:8.1f}s  "
              f"ratio {ep / rb_epoch:.3f}", flush=True)


if __name__ == "__main__":
    main()
