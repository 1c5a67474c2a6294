"""Online updates: continue a trained model on the events that arrived since it was trained.

``update(store, "nyc", "st-transformer")`` loads the model's latest checkpoint (the parent, or
``from_id``), rebuilds the dataset with the parent's split and data settings on the events
stored now, and warm-starts a model on it:

* **vocabularies**: the dataset's vocabularies stay sorted (``models.data.history`` looks ids
  up by binary search), so an id's index may move when new ids arrive; every table whose
  first dimension follows the item, category or behaviour vocabulary (found by building the
  model twice on small probe vocabularies, :func:`vocab_tables`) gets its rows carried over
  by id (:class:`VocabMap`), and the rows of new ids keep the model's own initialisation;
  other learned weights are copied as they are;
* **statistics** (count models, the ST-Transformer's count parts, popularity, coordinates)
  are refitted on the whole training part as now stored (cheap), then ``calibrate`` re-chooses
  the settings they choose on validation;
* **training**: a few epochs (``ONLINE_EPOCHS`` unless ``epochs`` is given) on the training
  windows whose targets are at or after ``since`` (default: ``trained_until``, the time of
  the dataset's last event when the parent was trained, models.training.checkpoint
  .data_extent), the loss counting only those targets, keeping the best epoch by validation
  NDCG@10 (learning rate, batch size and seed: the parent's unless given);
* **the keep rule**: the parent is scored on the same new validation part through the new
  index (:class:`ParentView`: events it does not know dropped from the input, items it does
  not know ranked last), and the new weights are saved only if their validation NDCG@10 is
  not below the parent's; otherwise nothing is written and the result says so.

A saved update is an ordinary checkpoint (listed, loaded and explained like any other) whose
sidecar adds ``parent``, ``since``, ``valid_parent`` and ``valid_new``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...analytics.store import Store
from ..base import Batch, DataMeta, Recommender
from ..data.dataset import SeqDataset, build_dataset
from ..data.history import to_seconds
from ..recommenders.registry import get_class, make_config
from . import checkpoint as ckpt
from .evaluate import evaluate_model, next_window_metrics
from .loop import Progress, TrainResult, _epoch_loop, calibrate, resolve_device, seed_everything
from .settings import Phase, TrainEvent, resolve

#: epochs of an update when ``epochs`` is not given: the parent already learnt the rest
ONLINE_EPOCHS = 2
VOCABS = ("item", "category", "behavior")
# probe vocabulary sizes and how much each grows: distinct growths tell the vocabularies apart
_PROBE = {"item": (11, 1), "category": (13, 2), "behavior": (17, 4)}


@dataclass(frozen=True)
class VocabMap:
    """For each vocabulary, the parent's index of every new index (0: new id or padding)."""

    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray
    old_sizes: dict[str, int]
    new_sizes: dict[str, int]

    def new_ids(self, vocab: str) -> int:
        """How many ids of ``vocab`` the parent did not know."""
        return int((getattr(self, vocab)[1:] == 0).sum())


def _vocab(meta: DataMeta, vocab: str) -> tuple[str, ...]:
    if vocab == "item":
        return tuple(meta.item_ids)
    return tuple(meta.extra.get(f"{vocab}_names", ()))


def vocab_map(old: DataMeta, new: DataMeta) -> VocabMap:
    """The parent's index of every index of ``new`` (both vocabularies as the datasets built
    them: index k is the k-th id, 1-based)."""
    maps, old_n, new_n = {}, {}, {}
    for vocab in VOCABS:
        before = {v: i + 1 for i, v in enumerate(_vocab(old, vocab))}
        after = _vocab(new, vocab)
        maps[vocab] = np.array([0] + [before.get(v, 0) for v in after], dtype=np.int64)
        old_n[vocab], new_n[vocab] = len(before), len(after)
    return VocabMap(maps["item"], maps["category"], maps["behavior"], old_n, new_n)


def _probe_meta(sizes: dict[str, int], max_len: int) -> DataMeta:
    n = sizes["item"]
    return DataMeta(
        n_items=n, n_users=3, n_categories=sizes["category"], n_behaviors=sizes["behavior"],
        max_len=max_len, item_ids=tuple(f"i{k:03d}" for k in range(n)),
        item_lat=tuple(40.70 + 0.003 * k for k in range(n)),
        item_lon=tuple(-74.00 + 0.002 * k for k in range(n)),
        item_category=tuple(1 + k % sizes["category"] for k in range(n)),
        item_popularity=(1,) * n, has_coordinates=True,
        extra={"user_ids": ("u1", "u2", "u3"),
               "category_names": tuple(f"c{k:03d}" for k in range(sizes["category"])),
               "behavior_names": tuple(f"b{k:03d}" for k in range(sizes["behavior"]))})


def vocab_tables(cls: type[Recommender], config: Any, max_len: int) -> dict[str, tuple[str, int]]:
    """``{state-dict name: (vocabulary, rows after its last id)}`` for every tensor of a
    ``cls`` model whose first dimension follows a vocabulary (``item_emb.weight`` has the
    padding row, one per item and a mask row: ``("item", 1)``). Found by building the model
    on two small probe vocabularies, the second grown by a different amount per vocabulary,
    so no layer is looked up by name."""
    small = {v: n for v, (n, _) in _PROBE.items()}
    grown = {v: n + d for v, (n, d) in _PROBE.items()}
    by_growth = {d: v for v, (_, d) in _PROBE.items()}
    a = cls(_probe_meta(small, max_len), config).state_dict()
    b = cls(_probe_meta(grown, max_len), config).state_dict()
    out: dict[str, tuple[str, int]] = {}
    for name, t in a.items():
        u = b.get(name)
        if u is None or u.shape == t.shape or t.dim() == 0 or u.shape[1:] != t.shape[1:]:
            continue
        vocab = by_growth.get(int(u.shape[0] - t.shape[0]))
        if vocab is not None:
            out[name] = (vocab, int(t.shape[0]) - 1 - small[vocab])
    return out


def _carry_rows(old: torch.Tensor, fresh: torch.Tensor, index: np.ndarray, n_old: int,
                n_new: int, extra: int) -> torch.Tensor:
    """``fresh`` with the rows of ids the parent knew (and padding and the extra rows after
    the last id) taken from ``old``; rows of new ids keep their fresh values."""
    out = fresh.clone()
    known = np.nonzero(index)[0]
    out[torch.from_numpy(known)] = old[torch.from_numpy(index[known])].to(out.dtype)
    out[0] = old[0].to(out.dtype)
    if extra > 0:
        out[n_new + 1:n_new + 1 + extra] = old[n_old + 1:n_old + 1 + extra].to(out.dtype)
    return out


def warm_start(parent: Recommender, fresh: Recommender, vmap: VocabMap) -> list[str]:
    """Load ``parent``'s weights into ``fresh`` (built on the new data, same class and
    config), rows carried by id where a vocabulary grew or moved; returns what was done.

    Learned weights are all carried; a buffer only where ``fresh`` left it at zero (the
    statistics ``fit_counts`` refits anyway, text embeddings restored from a checkpoint): the
    buffers a model derives from the data (coordinates, popularity) stay as built now."""
    tables = vocab_tables(type(fresh), fresh.config, fresh.meta.max_len)
    old_sd = parent.state_dict()
    learned = {name for name, _ in fresh.named_parameters()}
    new_sd = fresh.state_dict()
    carried, kept = 0, []
    for name, t in new_sd.items():
        o = old_sd.get(name)
        if o is None:
            kept.append(name)
            continue
        if name not in learned and bool(t.count_nonzero()):
            continue  # derived from the data as stored now
        if name in tables:
            vocab, extra = tables[name]
            new_sd[name] = _carry_rows(o, t, getattr(vmap, vocab), vmap.old_sizes[vocab],
                                       vmap.new_sizes[vocab], extra)
        elif o.shape == t.shape:
            new_sd[name] = o.clone()
        elif name in learned:
            raise ckpt.CheckpointError(
                f"cannot continue {parent.name}: its weight {name!r} has shape "
                f"{tuple(o.shape)} but {tuple(t.shape)} on the data stored now, and it does not "
                "follow a vocabulary; train the model from scratch instead")
        else:
            continue
        carried += 1
    fresh.load_state_dict(new_sd)
    grown = ", ".join(f"{vmap.new_ids(v)} new {v} ids" for v in VOCABS if vmap.new_ids(v))
    return [f"warm start from the parent: {carried} weights and statistics carried over"
            + (f"; {grown} start from the model's initialisation" if grown else "")]


def _drop_events(batch: Batch, keep: torch.Tensor) -> Batch:
    """``batch`` with the events where ``keep`` is False removed from every sequence (the
    rest shifted right, left padding kept), as ``models.data.history`` skips unknown items."""
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # dropped first, in order
    kept = torch.gather(keep, 1, order)
    out = batch.copy()
    for name in Batch.SEQ_FIELDS:
        seq = torch.gather(getattr(batch, name), 1, order)
        setattr(out, name, torch.where(kept, seq, torch.zeros_like(seq)))
    out.len = kept.sum(1)
    return out


class ParentView(Recommender):
    """The parent model scoring batches of the new dataset: inputs mapped to its own
    indices (events of ids it does not know dropped), scores mapped back; the items it does
    not know get -inf (it cannot recommend them). Used for the keep rule and by the bench's
    frozen model."""

    name = "parent"
    trainable = False

    def __init__(self, parent: Recommender, vmap: VocabMap, meta: DataMeta) -> None:
        super().__init__(meta, parent.config)
        self.parent = parent
        for vocab in VOCABS:
            self.register_buffer(f"to_{vocab}", torch.from_numpy(getattr(vmap, vocab)))

    @torch.no_grad()
    def score(self, batch: Batch) -> torch.Tensor:
        b = batch.copy()
        b.item_seq = self.to_item[batch.item_seq]
        b.target_seq = self.to_item[batch.target_seq]
        b.target = self.to_item[batch.target]
        b.cat_seq = self.to_category[batch.cat_seq]
        b.beh_seq = self.to_behavior[batch.beh_seq]
        old = self.parent.score(_drop_events(b, b.item_seq > 0)).float()   # (B, n_old + 1)
        out = torch.full((old.shape[0], self.meta.n_items + 1), float("-inf"),
                         device=old.device)                                 # (B, n_new + 1)
        known = torch.nonzero(self.to_item).squeeze(1)
        out[:, known] = old[:, self.to_item[known]]
        return out


def parent_checkpoint(store: Store, name: str, model: str, from_id: str | None = None
                      ) -> tuple[str, Path]:
    """The checkpoint to continue, as (model id, path): ``from_id``, else the newest finished
    one of ``model``."""
    if from_id:
        return from_id, ckpt.find(store, name, from_id)
    found = [i for i in ckpt.list_checkpoints(store, name)
             if i.get("model") == model and not i.get("cancelled")]
    if not found:
        raise ckpt.CheckpointError(
            f"no trained {model} model of dataset {name!r} to continue; train one first "
            f"(`trailscope train {name} --model {model}`)")
    return found[0]["model_id"], Path(found[0]["path"])


def parse_since(since: Any) -> float:
    """Unix seconds of ``since`` (ISO 8601 text, naive = UTC, a datetime or seconds)."""
    try:
        return to_seconds(since)
    except (ValueError, TypeError):
        raise ValueError(f"--since {since!r} is not a time: give ISO 8601 such as "
                         "2012-11-01 or 2012-11-01T08:00 (UTC), or unix seconds") from None


def new_targets(ds: SeqDataset, since: float) -> np.ndarray:
    """Indices of the training windows whose last target is at or after ``since`` (events
    are time-sorted within a user, so these are the windows holding such targets)."""
    return np.nonzero(ds.events.ts[ds.parts["train"].pos] >= since)[0]


def since_only(loss: Callable[[Batch], torch.Tensor], since: float
               ) -> Callable[[Batch], torch.Tensor]:
    """``loss`` counting only the targets at or after ``since`` (others set to padding)."""
    def wrapped(batch: Batch) -> torch.Tensor:
        next_t = torch.cat([batch.time_seq[:, 1:], batch.target_time[:, None]], dim=1)  # (B, L)
        b = batch.copy()
        b.target_seq = torch.where(next_t >= since, batch.target_seq,
                                   torch.zeros_like(batch.target_seq))
        return loss(b)
    return wrapped


@dataclass
class UpdateResult(TrainResult):
    """A :class:`TrainResult` plus the update's lineage and the keep rule's figures.
    ``model_id`` is the new checkpoint when ``kept_new``, else the parent's."""

    parent: str = ""
    since: float = 0.0
    valid_parent: float = float("nan")
    valid_new: float = float("nan")
    kept_new: bool = False
    train_targets: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "parent": self.parent, "since": self.since,
                "valid_parent": self.valid_parent, "valid_new": self.valid_new,
                "kept_new": self.kept_new, "train_targets": self.train_targets}


def update(store: Store, name: str, model: str = "st-transformer", *,
           from_id: str | None = None, since: Any = None,
           progress: Progress | None = None, cancel: Any = None,
           log: Callable[[str], None] = print, **overrides: Any) -> UpdateResult:
    """Continue ``model`` on dataset ``name`` with the events since its training (module
    docstring). ``overrides`` are training settings (``epochs``, ``lr``, ``device``, ...)
    over the parent's; the split, data settings and model config are the parent's."""
    t0 = time.time()
    parent_id, path = parent_checkpoint(store, name, model, from_id)
    loaded = ckpt.load(path, store, check_fingerprint=False)  # ids are mapped: appends are fine
    info, parent = loaded.info, loaded.model
    model = info["model"]
    cls = get_class(model)
    if info.get("fingerprint") != store.fingerprint(name):
        log(f"dataset {name!r} changed since {parent_id} was trained; its ids are mapped "
            "onto the events stored now")
    p = info.get("data_params", {})
    base = {"split": info["split"], "lr": info.get("lr", 3e-3),
            "batch_size": info.get("batch_size", 128), "seed": info.get("seed", 0),
            "epochs": ONLINE_EPOCHS, **{k: v for k, v in p.items()}}
    settings, asked = resolve(model, {**base, **overrides})
    fixed = {"split", *p}  # the data the parent's index and windows were built on
    changed = [k for k in overrides
               if (k in fixed and overrides[k] != base[k]) or (k not in base and hasattr(asked, k))]
    if changed:
        raise ValueError(f"setting{'s' if len(changed) > 1 else ''} "
                         f"{', '.join(map(repr, changed))} cannot change in an update: it "
                         f"continues {parent_id} as it is; train a new model to change them")
    if since is None:
        since = info.get("trained_until")
        if since is None:
            raise ckpt.CheckpointError(
                f"model {parent_id} does not record when its training data ended (it was "
                "trained before online updates); give --since TIME")
    since_s = parse_since(since)
    dev = resolve_device(settings.device)
    seed_everything(settings.seed)
    extent = ckpt.data_extent(store, name)  # before reading: later appends are the next update's
    ds = build_dataset(store, name, settings.split, settings.max_len, settings.min_user,
                       settings.min_item, settings.exclude_seen)
    for m in ds.messages:
        log(m)
    if progress is not None:
        progress(TrainEvent(Phase.DATA, messages=tuple(ds.messages)))
    vmap = vocab_map(loaded.meta, ds.meta)
    config = make_config(cls, info["config"])
    try:
        net = cls(ds.meta, config)
    except (ValueError, FileNotFoundError) as exc:
        raise ckpt.CheckpointError(f"cannot continue {parent_id} on the data stored now: "
                                   f"{exc}") from None
    messages = list(ds.messages) + warm_start(parent, net, vmap)
    net.to(dev)
    view = ParentView(parent, vmap, ds.meta).to(dev)
    valid_parent = float(evaluate_model(view, ds, "valid", device=dev,
                                        with_slices=False)["ndcg@10"])
    if type(net).fit_counts is not Recommender.fit_counts:  # statistics on the data up to now
        net.fit_counts(list(ds.batches("train", settings.batch_size)))
        net.to(dev)
    rows = new_targets(ds, since_s)
    history: list[dict[str, Any]] = []
    cancelled = False
    if cls.trainable and len(rows):
        part = dataclasses.replace(ds, parts={**ds.parts,
                                              "train": ds.parts["train"].subset(rows)})
        opt = torch.optim.AdamW(net.parameters(), lr=settings.lr,
                                weight_decay=settings.weight_decay)
        best, best_state = -1.0, None
        for epoch in range(1, settings.epochs + 1):
            te = time.time()
            loss = _epoch_loop(net, part, opt, phase=Phase.TRAIN, epoch=epoch,
                               batch_size=settings.batch_size, seed=settings.seed, dev=dev,
                               loss_fn=since_only(net.loss, since_s), progress=progress,
                               cancel=cancel)
            if loss is None:
                cancelled = True
                break
            valid = float(evaluate_model(net, ds, "valid", device=dev,
                                         with_slices=False)["ndcg@10"])
            history.append({"epoch": epoch, "loss": loss, "valid ndcg@10": valid,
                            "seconds": time.time() - te})
            log(f"update epoch {epoch}: loss {loss:.4f} valid ndcg@10 {valid:.4f}")
            if progress is not None:
                progress(TrainEvent(Phase.VALID, epoch, loss=loss, valid=valid))
            if valid > best:
                best = valid
                best_state = copy.deepcopy({k: v.detach().cpu()
                                            for k, v in net.state_dict().items()})
        if best_state is not None:
            net.load_state_dict(best_state)
    elif cls.trainable:
        messages.append(f"no training targets at or after {_when(since_s)}: the weights are "
                        "the parent's, the statistics refitted")
    noted = len(ds.messages)
    calibrate(net, ds, dev, log)
    messages += ds.messages[noted:]
    valid = evaluate_model(net, ds, "valid", device=dev, with_slices=False)
    valid_new = float(valid["ndcg@10"])
    common = {"parent": parent_id, "since": since_s, "valid_parent": valid_parent,
              "valid_new": valid_new, "train_targets": int(len(rows))}
    if cancelled or valid_new < valid_parent:
        why = ("cancelled" if cancelled else
               f"validation NDCG@10 {valid_new:.4f} < the parent's {valid_parent:.4f} on the "
               "same validation targets")
        line = f"kept the parent {parent_id}: the update was not saved ({why})"
        log(line)
        messages.append(line)
        return UpdateResult(parent_id, path, {"valid": valid}, history, time.time() - t0,
                            cancelled, 0, messages, kept_new=False, **common)
    test = evaluate_model(net, ds, "test", device=dev)
    metrics: dict[str, Any] = {"valid": valid, "test": test}
    if net.chosen_settings():
        metrics["chosen"] = net.chosen_settings()
    if settings.split == "temporal":
        metrics["next_window"] = next_window_metrics(net, ds, device=dev)
    seconds = time.time() - t0
    out = ckpt.save(store, name, net, split=settings.split, data_params=settings.data_params(),
                    metrics=metrics, history=history, train_seconds=seconds,
                    extra={"seed": settings.seed, "lr": settings.lr,
                           "batch_size": settings.batch_size, "cancelled": False,
                           "device": str(dev), **extent, **common})
    line = (f"saved {out.stem}, updated from {parent_id}: validation NDCG@10 {valid_new:.4f} "
            f">= the parent's {valid_parent:.4f}; test ndcg@10 {test['ndcg@10']:.4f}")
    log(line)
    messages.append(line)
    if progress is not None:
        progress(TrainEvent(Phase.DONE, len(history), valid=valid_new, model_id=out.stem))
    return UpdateResult(out.stem, out, metrics, history, seconds, False, 0, messages,
                        kept_new=True, **common)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
