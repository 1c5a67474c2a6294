"""RecBole 1.2.1 SASRec / GRU4Rec as peers, on atomic files exported from OUR split.

Runs in its own virtualenv (bench/.recbole-venv; see bench/model_bench.py for how to make
it), never in the project's: bench.model_bench calls

    bench/.recbole-venv/bin/python bench/recbole_peer.py --data-path DIR --dataset NAME \
        --model SASRec --epochs 5 --threads 1 [--device cuda] --out result.json

(on a GPU machine, that machine's own Python with RecBole on its path: bench/gpu_check.sh).

The facts of /work/shared/PEERS.md are applied here: recbole.quick_start is never imported
(ray breaks on numpy 2); numpy-2 aliases are defined before RecBole is imported;
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (its checkpoints hold a Config object); anomaly
detection, which importing recbole.model switches on, is switched off again. The data
comes as benchmark files (``benchmark_filename``) written by bench.recbole_export, so both
sides train and test on identical examples; the evaluation is full ranking.

Seen items: when the export wrote ``<name>.seen.json`` (our evaluator masks the user's whole
history, ``exclude_seen``), the same items are masked here before RecBole ranks (its
sequential full ranking masks nothing by itself), validation and test alike: one rule for
both sides.

Printed/written: test Hit@K / NDCG@K for K in 1, 5, 10, 20, MRR (MRR@n_items = the full-
ranking MRR), training seconds of each epoch (the epoch loop only, evaluation excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402

for _alias, _value in (("float_", np.float64), ("complex_", np.complex128),
                       ("unicode_", np.str_), ("float", float), ("int", int),
                       ("bool8", np.bool_), ("object", object)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _value)

import torch  # noqa: E402

MODEL_SETTINGS = {
    "SASRec": {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
               "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2,
               "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02},
    "GRU4Rec": {"embedding_size": 64, "hidden_size": 64, "num_layers": 1,
                "dropout_prob": 0.2},
}


def _lengths(column: object) -> np.ndarray:
    """Per-row lengths of a column of arrays."""
    return np.fromiter((len(v) for v in column.to_numpy()), dtype=np.int64)


def _remap(self, remap_list) -> None:  # noqa: ANN001 - RecBole's own signature
    """RecBole's Dataset._remap with per-row sequence lengths that survive pandas 3.

    Under pandas 3, ``Series.agg(len)`` is the length of the whole Series (a scalar), not
    one length per row, so RecBole split every token_seq column into one piece and failed;
    per-row lengths are what it meant.
    """
    import pandas as pd
    from recbole.utils import FeatureType

    if len(remap_list) == 0:
        return
    tokens, split_point = self._concat_remaped_tokens(remap_list)
    new_ids_list, mp = pd.factorize(tokens)
    new_ids_list = np.split(new_ids_list + 1, split_point)
    mp = np.array(["[PAD]"] + list(mp))
    token_id = {t: i for i, t in enumerate(mp)}
    for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list, strict=True):
        if field not in self.field2id_token:
            self.field2id_token[field] = mp
            self.field2token_id[field] = token_id
        if ftype == FeatureType.TOKEN:
            feat[field] = new_ids
        elif ftype == FeatureType.TOKEN_SEQ:
            points = np.cumsum(_lengths(feat[field]))[:-1]
            col = np.empty(len(feat), dtype=object)   # one array per row, never 2-D
            for i, arr in enumerate(np.split(new_ids, points)):
                col[i] = arr
            feat[field] = pd.Series(col, index=feat.index)


def _benchmark_presets(self) -> None:
    """SequentialDataset._benchmark_presets with per-row list lengths (pandas 3, as above)."""
    from recbole.utils import FeatureSource, FeatureType

    list_suffix = self.config["LIST_SUFFIX"]
    for field in self.inter_feat:
        if field + list_suffix in self.inter_feat:
            setattr(self, f"{field}_list_field", field + list_suffix)
    self.set_field_property(self.item_list_length_field, FeatureType.TOKEN,
                            FeatureSource.INTERACTION, 1)
    self.inter_feat[self.item_list_length_field] = _lengths(
        self.inter_feat[self.item_id_list_field])


def count_items(data_path: str, dataset: str) -> int:
    items: set[str] = set()
    for part in ("train", "valid", "test"):
        with open(os.path.join(data_path, dataset, f"{dataset}.{part}.inter")) as fh:
            next(fh)
            for line in fh:
                _, hist, target = line.rstrip("\n").split("\t")
                items.update(hist.split(" "))
                items.add(target)
    return len(items)


def mask_seen(model, dataset, data_path: str, name: str) -> dict:  # noqa: ANN001 - RecBole's
    """Mask each user's seen items (``<name>.seen.json``) in ``model.full_sort_predict``.

    Returns the switch the caller flips from validation to test (``phase["part"]``) and
    whether anything is masked (``phase["masked"]``).
    """
    phase = {"part": "valid", "masked": False}
    path = os.path.join(data_path, name, f"{name}.seen.json")
    if not os.path.exists(path):
        return phase
    with open(path) as fh:
        raw = json.load(fh)
    users = dataset.field2token_id[dataset.uid_field]
    items = dataset.field2token_id[dataset.iid_field]
    dev = next(model.parameters()).device
    seen = {part: {users[u]: torch.tensor([items[i] for i in its if i in items], device=dev)
                   for u, its in per_user.items() if u in users}
            for part, per_user in raw.items()}
    inner = model.full_sort_predict

    def masked(interaction):  # noqa: ANN001, ANN202 - RecBole's own signature
        scores = inner(interaction).view(len(interaction), -1).clone()
        table = seen[phase["part"]]
        for r, u in enumerate(interaction[dataset.uid_field].tolist()):
            idx = table.get(u)
            if idx is not None and len(idx):
                scores[r, idx] = float("-inf")
        return scores

    model.full_sort_predict = masked
    phase["masked"] = True
    return phase


def main() -> None:
    p = argparse.ArgumentParser(description="RecBole peer run on exported benchmark files")
    p.add_argument("--data-path", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", choices=sorted(MODEL_SETTINGS), required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--stopping-step", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the first GPU (RecBole picks CUDA whenever gpu_id names one)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.dataset import Dataset, SequentialDataset
    from recbole.model.sequential_recommender import GRU4Rec, SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.autograd.set_detect_anomaly(False)   # recbole.model switched it on
    Dataset._remap = _remap
    SequentialDataset._benchmark_presets = _benchmark_presets
    n_items = count_items(args.data_path, args.dataset)
    cfg = {
        "data_path": os.path.abspath(args.data_path), "benchmark_filename":
        ["train", "valid", "test"], "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": None, "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": args.max_len,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                      "group_by": "user"},
        "train_neg_sample_args": None, "loss_type": "CE",
        # RecBole 1.2.1 sets its device from gpu_id alone (CUDA whenever one is visible)
        "gpu_id": "0" if args.device == "cuda" else "",
        "epochs": args.epochs, "stopping_step": args.stopping_step,
        "train_batch_size": args.batch_size, "eval_batch_size": 256,
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [1, 5, 10, 20, n_items],
        "valid_metric": "NDCG@10", "seed": args.seed, "reproducibility": True,
        "checkpoint_dir": os.path.abspath(os.path.join(os.path.dirname(args.out), "saved")),
        "show_progress": False, "log_wandb": False, "worker": 0,
        **MODEL_SETTINGS[args.model],
    }
    model_cls = {"SASRec": SASRec, "GRU4Rec": GRU4Rec}[args.model]
    config = Config(model=model_cls, dataset=args.dataset, config_dict=cfg)
    if str(config["device"]) != args.device:
        raise SystemExit(f"RecBole chose device {config['device']}, not {args.device}")
    torch.set_num_threads(args.threads)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = model_cls(config, train_data.dataset).to(config["device"])
    torch.autograd.set_detect_anomaly(False)
    trainer = Trainer(config, model)
    epoch_seconds: list[float] = []
    inner = trainer._train_epoch

    def timed_epoch(*a, **kw):  # noqa: ANN002, ANN003, ANN202 - RecBole's own signature
        t = time.perf_counter()
        out = inner(*a, **kw)
        epoch_seconds.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed_epoch
    phase = mask_seen(model, dataset, args.data_path, args.dataset)
    t0 = time.perf_counter()
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds = time.perf_counter() - t0
    phase["part"] = "test"
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test = {k: float(v) for k, v in test.items()}
    result = {
        "model": args.model, "dataset": args.dataset, "n_items": n_items,
        "train_rows": len(train_data.dataset), "test_rows": len(test_data.dataset),
        "epochs_run": len(epoch_seconds), "epoch_seconds": epoch_seconds,
        "fit_seconds": fit_seconds, "best_valid_ndcg@10": float(best_valid),
        "hr@1": test["hit@1"], "hr@5": test["hit@5"], "hr@10": test["hit@10"],
        "hr@20": test["hit@20"], "ndcg@5": test["ndcg@5"], "ndcg@10": test["ndcg@10"],
        "ndcg@20": test["ndcg@20"], "mrr": test[f"mrr@{n_items}"], "mrr@20": test["mrr@20"],
        "threads": args.threads, "torch": torch.__version__,
        "device": str(config["device"]), "gpu": (torch.cuda.get_device_name(0)
                                                  if args.device == "cuda" else None),
        "exclude_seen": phase["masked"],
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh)
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
