"""Pre-training and text fusion on the model bench: what each gives the st-transformer.

    python -m bench.pretrain_bench --dataset nyc --epochs 10 --pretrain-epochs 2
    python -m bench.pretrain_bench --dataset ml100k --epochs 20 --variants base,text
    python -m bench.pretrain_bench --transfer nyc-odd:nyc-even --source-epochs 2 [--text]

Variants (``--variants``): ``base`` (the defaults: no pre-training, no text),
``pretrain`` (``--pretrain-epochs`` epochs of masked-event modelling first),
``text`` (item-text embeddings fused into the item embeddings) and ``pretrain+text``. Every
variant trains with the same seed, split (leave-last), epochs and settings through
``models.training.loop.train``; only those switches differ. The text is each item's category
name on NYC and Taobao (as bench.ablation builds it) and "Title (year) - Genre, Genre" from
u.item on ML-100K. Prints test NDCG@10, MRR, Recall@10 (= HR@10: one target per user), the
validation NDCG@10, training seconds and the change against ``base``.

``--transfer A:B``: masked-event pre-training of a fresh st-transformer on A for
``--source-epochs`` epochs, then training on B starting from A's item-independent weights
(``init_from``; models.training.transfer keeps the tensors whose names and shapes match and
starts B's item, category and behaviour rows fresh; ``transfer+ids`` also copies the rows of
items and categories B shares with A by external id). Variants: ``base``, ``transfer``,
``transfer+ids``, and with ``--text`` the same with text on both sides (the text projection
transfers too, so items reach B through their text). Dataset names: nyc, ml100k, taobao and
nyc-odd / nyc-even (NYC users alternately by id: disjoint users, the same venues).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ablation import _text_file  # private there; the one category-text builder
from bench.datasets import FILES, MOVIELENS

VARIANTS: dict[str, dict[str, bool]] = {
    "base": {},
    "pretrain": {"pretrain": True},
    "text": {"text": True},
    "pretrain+text": {"pretrain": True, "text": True},
}
TRANSFER_VARIANTS = ("base", "transfer", "transfer+ids")
#: datasets made from another one's users: name -> (source, user parity)
HALVES = {"nyc-odd": ("nyc", 1), "nyc-even": ("nyc", 0)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[*FILES, *HALVES], default="nyc")
    p.add_argument("--source", default=None,
                   help="the file to import for --dataset (default: bench.datasets)")
    p.add_argument("--users", type=int, default=0, help="keep only the first N users by id")
    p.add_argument("--variants", default=None,
                   help=f"comma list (default: {','.join(VARIANTS)}; with --transfer: "
                        f"{','.join(TRANSFER_VARIANTS)})")
    p.add_argument("--transfer", default=None, metavar="A:B",
                   help="pre-train on A, fine-tune on B (replaces --dataset)")
    p.add_argument("--text", action="store_true", help="--transfer: text on both sides")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--source-epochs", type=int, default=2,
                   help="--transfer: masked-event pre-training epochs on A")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.transfer and args.transfer.count(":") != 1:
        p.error("--transfer takes A:B, e.g. nyc-odd:nyc-even")
    args.variants = (args.variants or ",".join(TRANSFER_VARIANTS if args.transfer
                                               else VARIANTS)).split(",")
    allowed = TRANSFER_VARIANTS if args.transfer else tuple(VARIANTS)
    bad = [v for v in args.variants if v not in allowed]
    if bad:
        p.error(f"unknown variant(s) {bad}; choose from {', '.join(allowed)}")
    return args


def import_dataset(store: Any, name: str, source: str | None = None, users: int = 0) -> Any:
    """Import ``name`` (a half of a dataset: every other user of it by id) into ``store``."""
    from trailscope.analytics import schema
    from trailscope.analytics.ingest.pipeline import import_file

    base, parity = HALVES.get(name, (name, None))
    raw = f"{base}_raw"
    if not store.exists(raw):
        import_file(store, source or FILES[base], name=raw, replace=True)
    table, u = store.table(raw), schema.USER
    ranked = f"SELECT {u}, row_number() OVER (ORDER BY {u}) AS k FROM (SELECT DISTINCT {u} " \
             f"FROM {table})"
    cond = []
    if users:
        cond.append(f"k <= {int(users)}")
    if parity is not None:
        cond.append(f"k % 2 = {parity}")
    where = f"WHERE {u} IN (SELECT {u} FROM ({ranked}) WHERE {' AND '.join(cond)})" if cond \
        else ""
    return store.save_dataset(name, f"SELECT * FROM {table} {where}", source=str(source or ""),
                              fmt="slice", report={}, replace=True)


def movielens_texts(u_item: Path, u_genre: Path) -> dict[str, str]:
    """MovieLens 100K movie id -> "Title (year) - Genre, Genre" (u.item flags, u.genre names)."""
    names = [line.split("|")[0] for line in u_genre.read_text(encoding="latin-1").splitlines()
             if "|" in line]
    out: dict[str, str] = {}
    with open(u_item, encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) < 5 + len(names):
                continue
            genres = [g for g, flag in zip(names, parts[5:5 + len(names)], strict=True)
                      if flag == "1" and g.lower() != "unknown"]
            out[parts[0]] = parts[1] + (" - " + ", ".join(genres) if genres else "")
    return out


def text_file(store: Any, name: str, max_len: int, folder: Path) -> str:
    """The (n_items + 1, 384) item-text matrix of ``name`` saved as .npy; its path."""
    if HALVES.get(name, (name,))[0] != "ml100k":
        return _text_file(store, name, max_len, folder)
    import numpy as np
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.data.text import item_text_matrix

    ds = build_dataset(store, name, "leave-last", max_len)
    texts = movielens_texts(MOVIELENS.parent / "u.item", MOVIELENS.parent / "u.genre")
    path = folder / f"{name}-title-text.npy"
    np.save(path, item_text_matrix(ds.meta, texts))
    return str(path)


_DATASETS: dict[str, Any] = {}   # name -> the leave-last SeqDataset (encoder-alone scoring)


def encoder_alone(store: Any, name: str, path: Path, max_len: int) -> float:
    """Test NDCG@10 of a trained st-transformer's encoder part alone (blend weight 1 on it,
    0 on the count parts): what pre-training and text change, which the blend can hide."""
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.training.checkpoint import load
    from trailscope.models.training.evaluate import evaluate_model

    if name not in _DATASETS:
        _DATASETS[name] = build_dataset(store, name, "leave-last", max_len)
    net = load(path, store).model
    net.blend_weights.zero_()
    net.blend_weights[0] = 1.0
    return evaluate_model(net, _DATASETS[name], "test", with_slices=False)["ndcg@10"]


def run(store: Any, name: str, label: str, args: argparse.Namespace,
        **overrides: Any) -> dict[str, Any]:
    """Train the st-transformer on ``name``; its test/valid metrics, blend and seconds."""
    from trailscope.models.training.loop import train

    t0 = time.perf_counter()
    res = train(store, name, model="st-transformer", epochs=args.epochs,
                pretrain_epochs=args.pretrain_epochs, max_len=args.max_len, seed=args.seed,
                resume=False, log=lambda _m: None, **overrides)
    seconds = time.perf_counter() - t0
    test, valid = res.metrics["test"], res.metrics["valid"]
    blend = (res.metrics.get("chosen") or {}).get("blend") or {}
    row = {"variant": label, "ndcg": test["ndcg@10"], "mrr": test["mrr"],
           "recall": test["hr@10"], "valid": valid["ndcg@10"], "epochs": len(res.history),
           "seconds": seconds, "encoder": encoder_alone(store, name, res.path, args.max_len),
           "blend": " / ".join(f"{n} {w:.3g}" for n, w in blend.items()) or "-"}
    print(f"  {label}: test ndcg@10 {row['ndcg']:.4f} mrr {row['mrr']:.4f} recall@10 "
          f"{row['recall']:.4f}, encoder alone {row['encoder']:.4f}, blend {row['blend']} "
          f"({row['epochs']} epochs, {seconds:.0f} s)", flush=True)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    base = next((r for r in rows if r["variant"].startswith("base")), None)
    print("\n| variant | test NDCG@10 | MRR | Recall@10 | valid NDCG@10 | encoder alone "
          "NDCG@10 | blend weights | epochs | train s | NDCG@10 vs base | MRR vs base "
          "| encoder vs base |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        diffs = ["" if base is None else f"{r[k] - base[k]:+.4f}"
                 for k in ("ndcg", "mrr", "encoder")]
        print(f"| {r['variant']} | {r['ndcg']:.4f} | {r['mrr']:.4f} | {r['recall']:.4f} "
              f"| {r['valid']:.4f} | {r['encoder']:.4f} | {r['blend']} | {r['epochs']} "
              f"| {r['seconds']:.0f} | {' | '.join(diffs)} |", flush=True)


def pretrain_source(store: Any, name: str, args: argparse.Namespace, text: str | None,
                    out: Path) -> Path:
    """Masked-event pre-training only of a fresh st-transformer on ``name``; the weights
    and DataMeta saved as a checkpoint-like file (``state_dict``, ``meta``)."""
    import torch
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.recommenders.st_transformer import STTransformer
    from trailscope.models.training.checkpoint import meta_to_dict

    # private helpers of the loop: one pass of a loss over the training windows, the seeding
    from trailscope.models.training.loop import _epoch_loop, seed_everything
    from trailscope.models.training.settings import Phase, TrainSettings

    s = TrainSettings()
    ds = build_dataset(store, name, "leave-last", args.max_len)
    seed_everything(args.seed)
    net = STTransformer(ds.meta, STTransformer.Config(pretrain=True, text_embeddings=text))
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    for ep in range(1, args.source_epochs + 1):
        t = time.perf_counter()
        loss = _epoch_loop(net, ds, opt, phase=Phase.PRETRAIN, epoch=ep, batch_size=s.batch_size,
                           seed=args.seed + 7, dev=torch.device("cpu"),
                           loss_fn=net.pretrain_loss, progress=None, cancel=None)
        print(f"  pre-training on {name}: epoch {ep} loss {loss:.4f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    torch.save({"state_dict": net.state_dict(), "meta": meta_to_dict(ds.meta)}, out)
    return out


def transfer(store: Any, args: argparse.Namespace, home: Path) -> list[dict[str, Any]]:
    a, b = args.transfer.split(":")
    # --source names the file of a dataset whose two halves are transferred between
    one_base = len({HALVES.get(n, (n, None))[0] for n in (a, b)}) == 1
    for name in dict.fromkeys((a, b)):
        info = import_dataset(store, name, args.source if one_base else None, users=args.users)
        print(f"imported {name}: {info.rows} events, {info.users} users, {info.items} items",
              flush=True)
    text_a = text_file(store, a, args.max_len, home) if args.text else None
    text_b = text_file(store, b, args.max_len, home) if args.text else None
    src = pretrain_source(store, a, args, text_a, home / f"pretrained-{a}.pt")
    common = {"text_embeddings": text_b} if args.text else {}
    suffix = "+text" if args.text else ""
    inits = {"base": {}, "transfer": {"init_from": str(src)},
             "transfer+ids": {"init_from": str(src), "init_ids": True}}
    return [run(store, b, v + suffix, args, **common, **inits[v]) for v in args.variants]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from trailscope.analytics.store import Store

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="trailscope-pretrain-bench-"))
    os.environ["TRAILSCOPE_HOME"] = str(home)
    store = Store()
    what = f"transfer {args.transfer} ({args.source_epochs} pre-training epochs on the source)" \
        if args.transfer else f"{args.dataset} (pretrain epochs {args.pretrain_epochs})"
    print(f"# pretrain bench: st-transformer, {what}, leave-last, {args.epochs} epochs max "
          f"(patience 3), max_len {args.max_len}, seed {args.seed}, {args.threads} torch "
          f"thread(s), {os.cpu_count()} CPUs, users {args.users or 'all'}", flush=True)
    t0 = time.perf_counter()
    try:
        if args.transfer:
            rows = transfer(store, args, home)
        else:
            info = import_dataset(store, args.dataset, args.source, args.users)
            print(f"imported {args.dataset}: {info.rows} events, {info.users} users, "
                  f"{info.items} items", flush=True)
            text = None
            rows = []
            for v in args.variants:
                sw = VARIANTS[v]
                if sw.get("text") and text is None:
                    text = text_file(store, args.dataset, args.max_len, home)
                rows.append(run(store, args.dataset, v, args, pretrain=bool(sw.get("pretrain")),
                                text_embeddings=text if sw.get("text") else None))
        print_table(rows)
        print(f"\n{time.perf_counter() - t0:.0f} s in all")
    finally:
        store.close()


if __name__ == "__main__":
    main()
