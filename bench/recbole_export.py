"""Write OUR leave-last split as RecBole benchmark atomic files, so both see identical data.

RecBole's ``benchmark_filename: [train, valid, test]`` reads ``<name>.<part>.inter``; for
sequential models each row carries the pre-built history (``item_id_list:token_seq``, the
most recent ``max_list_len`` items, oldest first) and the target (``item_id:token``). Train
rows are every transition of each user's training prefix (what RecBole's own augmentation
makes); valid/test rows are exactly our validation/test examples with their full inputs
before the target (the test history therefore includes the validation item, as ours does).
No value is missing (RecBole's NaN filling is a no-op under pandas 3).

Seen items: where our evaluator masks every item of the user's whole history
(``ds.exclude_seen``, e.g. MovieLens, where nobody rates a film twice), ``<name>.seen.json``
lists those items per user for the validation and the test targets, and bench/recbole_peer.py
masks the same items in RecBole's full ranking, so both sides follow one rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from trailscope.models.data.dataset import SeqDataset
from trailscope.models.data.splits import Examples

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def _rows(ds: SeqDataset, ex: Examples, max_list_len: int) -> list[str]:
    item_ids = np.asarray(ds.meta.item_ids, dtype=object)
    user_ids = np.asarray(ds.meta.extra["user_ids"], dtype=object)
    items = ds.events.item
    out = []
    for u, pos, start in zip(ex.user.tolist(), ex.pos.tolist(), ex.start.tolist(), strict=True):
        hist = items[max(start, pos - max_list_len):pos]
        if len(hist) == 0:
            continue
        out.append(f"{user_ids[u - 1]}\t{' '.join(item_ids[hist - 1])}\t"
                   f"{item_ids[items[pos] - 1]}\n")
    return out


def training_transitions(ds: SeqDataset) -> Examples:
    """One example per training transition (every position after a user's first)."""
    ev = ds.events
    users = np.nonzero(ds.train_len >= 2)[0]
    m = ds.train_len[users]
    rep = np.repeat(users, m - 1)
    first = np.repeat(np.cumsum(m - 1) - (m - 1), m - 1)
    offset = np.arange(int((m - 1).sum())) - first + 1       # 1 .. m-1 within each user
    start = ev.user_start[rep]
    return Examples(rep.astype(np.int64), (start + offset).astype(np.int64),
                    start.astype(np.int64))


def export(ds: SeqDataset, folder: Path, name: str, max_list_len: int = 20) -> dict[str, int]:
    """Write ``folder/name/name.{train,valid,test}.inter``; returns the row counts."""
    if ds.split_report.split != "leave-last":
        raise ValueError(f"RecBole peers run on the leave-last split; got "
                         f"{ds.split_report.split!r}")
    for ids in (ds.meta.item_ids, ds.meta.extra["user_ids"]):
        if any((" " in s) or ("\t" in s) for s in ids):
            raise ValueError("ids with spaces or tabs cannot be written as RecBole tokens")
    out_dir = Path(folder) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    parts = {"train": training_transitions(ds), "valid": ds.parts["valid"],
             "test": ds.parts["test"]}
    for part, ex in parts.items():
        rows = _rows(ds, ex, max_list_len)
        (out_dir / f"{name}.{part}.inter").write_text(HEADER + "".join(rows))
        counts[part] = len(rows)
    seen_file = out_dir / f"{name}.seen.json"
    seen_file.unlink(missing_ok=True)
    if ds.exclude_seen:
        seen_file.write_text(json.dumps({part: seen_items(ds, ds.parts[part])
                                         for part in ("valid", "test")}))
    return counts


def seen_items(ds: SeqDataset, ex: Examples) -> dict[str, list[str]]:
    """User id -> ids of every item in the history before the example's target (the items
    our evaluator masks when ``ds.exclude_seen``)."""
    item_ids = np.asarray(ds.meta.item_ids, dtype=object)
    user_ids = np.asarray(ds.meta.extra["user_ids"], dtype=object)
    rows, items = ds.history_items(ex)
    out: dict[str, list[str]] = {}
    for r, i in zip(rows.tolist(), items.tolist(), strict=True):
        out.setdefault(user_ids[ex.user[r] - 1], []).append(item_ids[i - 1])
    return out
