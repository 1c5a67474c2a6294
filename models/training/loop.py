"""The training loop: seeded, early-stopped on validation NDCG@10, cancellable, resumable.

``train(store, "nyc", "sasrec", TrainSettings(epochs=5))`` builds the dataset (reports
printed through ``log``), fits count baselines in one pass or trains neural models with
AdamW (optionally after the model's own ``pretrain_loss`` phase), keeps the best epoch by
validation NDCG@10, evaluates it on the test part and saves a checkpoint
(models.training.checkpoint). Progress goes to ``progress`` as ``TrainEvent``s
(models.training.settings).

Resume: after every epoch the run state (weights, optimiser, best weights, history, RNG) is
written to ``_resume-<key>.pt`` in the dataset's model folder, ``key`` hashing everything
that defines the run (model, settings, split, seed, dataset fingerprint). A later call with
the same arguments and ``resume=True`` continues from there; a finished run deletes it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...analytics.store import Store
from ..base import Recommender
from ..data.dataset import SeqDataset, build_dataset
from ..recommenders.registry import get_class, make_config
from . import checkpoint as ckpt
from .evaluate import autocast, evaluate_model, next_window_metrics
from .settings import Phase, TrainEvent, TrainSettings, resolve
from .transfer import load_matching

Progress = Callable[[TrainEvent], None]


@dataclass
class TrainResult:
    model_id: str | None          # None when cancelled before the first epoch finished
    path: Path | None
    metrics: dict[str, Any]       # {"valid": {...}, "test": {..., "slices": {...}}}
    history: list[dict[str, Any]]
    seconds: float
    cancelled: bool = False
    resumed_from_epoch: int = 0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON summary (CLI): flat test metrics, no slices."""
        def flat(d: dict) -> dict:
            return {k: v for k, v in d.items() if k != "slices"}
        return {"model_id": self.model_id, "path": str(self.path) if self.path else None,
                "metrics": flat(self.metrics.get("test", {})),
                "valid": flat(self.metrics.get("valid", {})), "history": self.history,
                "seconds": self.seconds, "cancelled": self.cancelled,
                "resumed_from_epoch": self.resumed_from_epoch, "messages": self.messages}


@dataclass
class RunState:
    """What an interrupted run needs to go on (besides weights, optimiser and RNG).

    Saved as a plain dict (``to_dict``) so the resume file loads with ``weights_only=True``.
    """

    epoch: int = 0                       # the last finished epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    best: float = -1.0                   # best validation NDCG@10 so far
    best_state: dict[str, torch.Tensor] | None = None  # the weights that reached it (CPU)
    bad: int = 0                         # epochs since the last gain (early stopping)
    pretrained: bool = False             # the pre-training phase is done

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: it would deep-copy the best weights on every epoch
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        return cls(**d)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; "
                         "use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run_key(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _epoch_loop(net: Recommender, ds: SeqDataset, opt: torch.optim.Optimizer, *, phase: Phase,
                epoch: int, batch_size: int, seed: int, dev: torch.device,
                loss_fn: Callable, progress: Progress | None,
                cancel: threading.Event | None) -> float | None:
    """One pass over the training windows; returns the mean loss, None if cancelled."""
    net.train()
    steps = -(-len(ds.parts["train"]) // batch_size)
    total, n = 0.0, 0
    for step, batch in enumerate(ds.batches("train", batch_size, shuffle=True,
                                            seed=seed * 100_003 + epoch)):
        if cancel is not None and cancel.is_set():
            return None
        batch = batch.to(dev, non_blocking=True)
        with autocast(dev):
            loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{phase} loss became {loss.item()} at epoch {epoch} step "
                                     f"{step}; lower the learning rate (lr) and retrain")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        total += float(loss.detach())
        n += 1
        if progress is not None:
            progress(TrainEvent(phase, epoch, step + 1, steps, float(loss.detach())))
    return total / max(n, 1)


def calibrate(net: Recommender, ds: SeqDataset, dev: torch.device,
              log: Callable[[str], None]) -> None:
    """``net.calibrate`` on the validation part; each line of its note is logged and kept
    in the run's messages."""
    note = net.calibrate(ds, dev)
    for line in (note or "").splitlines():
        log(line)
        ds.messages.append(line)


def train(store: Store, name: str, model: str = "st-transformer",
          settings: TrainSettings | None = None, config: Any = None, *,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          log: Callable[[str], None] = print, **overrides: Any) -> TrainResult:
    """Train ``model`` on dataset ``name`` with ``settings``; see the module docstring.

    ``config`` is the model's ``Config`` (default: its defaults). ``overrides`` are named
    training settings or model settings, as ``--set`` gives them (``epochs=1, hidden=16``),
    applied over ``settings`` and ``config`` by :func:`models.training.settings.resolve`,
    which rejects unknown names. A model whose ``wants_pretraining`` is true first gets
    ``settings.pretrain_epochs`` epochs of its ``pretrain_loss``.
    """
    t0 = time.time()
    cls = get_class(model)
    if config is None or overrides:
        base = asdict(config) if config is not None else {}
        settings, config = resolve(model, {**base, **overrides}, settings)
    elif not isinstance(config, cls.Config):
        config = make_config(cls, dict(config))
    s = settings or TrainSettings()
    split, seed, lr, batch_size = s.split, s.seed, s.lr, s.batch_size
    dev = resolve_device(s.device)
    seed_everything(seed)
    ds = build_dataset(store, name, split, s.max_len, s.min_user, s.min_item, s.exclude_seen)
    for m in ds.messages:
        log(m)
    log(f"training {model} on {name} ({split}) on {dev}")
    net = cls(ds.meta, config).to(dev)
    if s.init_from:  # transfer: the matching item-independent weights of another run
        log(load_matching(net, s.init_from, map_ids=s.init_ids).summary())
    data_params = s.data_params()
    if progress is not None:
        progress(TrainEvent(Phase.DATA, messages=tuple(ds.messages)))

    def finish(history: list[dict], cancelled: bool, resumed: int) -> TrainResult:
        valid = evaluate_model(net, ds, "valid", device=dev, with_slices=False)
        test = evaluate_model(net, ds, "test", device=dev)
        metrics = {"valid": valid, "test": test}
        if net.chosen_settings():  # what calibrate chose on validation
            metrics["chosen"] = net.chosen_settings()
        if split == "temporal":  # set metrics on the items of each user's next 7 days
            metrics["next_window"] = next_window_metrics(net, ds, device=dev)
        seconds = time.time() - t0
        path = ckpt.save(store, name, net, split=split, data_params=data_params,
                         metrics=metrics, history=history, train_seconds=seconds,
                         extra={"seed": seed, "lr": lr, "batch_size": batch_size,
                                "cancelled": cancelled, "device": str(dev)})
        log(f"saved {path.stem}: test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f}")
        if progress is not None:
            progress(TrainEvent(Phase.DONE, len(history), valid=valid["ndcg@10"],
                                model_id=path.stem))
        return TrainResult(path.stem, path, metrics, history, seconds, cancelled, resumed,
                           list(ds.messages))

    if not cls.trainable or type(net).fit_counts is not Recommender.fit_counts:
        # count baselines, and neural models with data statistics (the graph's edges, the
        # st-transformer's transition prior)
        tc = time.time()
        net.fit_counts(list(ds.batches("train", batch_size)))
        net.to(dev)
        if cls.trainable:
            line = f"training statistics fitted in {time.time() - tc:.2f}s"
            log(line)
            ds.messages.append(line)
    if not cls.trainable:
        calibrate(net, ds, dev, log)  # the count models' settings, chosen on validation
        return finish([], False, 0)

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=s.weight_decay)
    # the same keys as before TrainSettings existed: interrupted runs still resume
    key = _run_key({"model": model, "config": asdict(config), "split": split,
                    "pretrain_epochs": s.pretrain_epochs,
                    **({"init": [s.init_from, s.init_ids]} if s.init_from else {}),
                    "seed": seed, "lr": lr, "batch_size": batch_size, "epochs": s.epochs,
                    "weight_decay": s.weight_decay, "data": data_params,
                    "fingerprint": store.fingerprint(name)})
    partial = ckpt.models_dir(store, name) / f"_resume-{model}-{key}.pt"
    state = RunState()
    resumed = 0
    if s.resume and partial.exists():
        saved = torch.load(partial, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = RunState.from_dict(saved["state"])
        resumed = state.epoch
        log(f"resuming {model} from epoch {resumed} ({partial.name})")

    def save_partial() -> None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(), "state": state.to_dict()}, tmp)
        tmp.replace(partial)

    pre_epochs = int(s.pretrain_epochs)
    if net.wants_pretraining and pre_epochs > 0 and not state.pretrained:
        for ep in range(1, pre_epochs + 1):
            loss = _epoch_loop(net, ds, opt, phase=Phase.PRETRAIN, epoch=ep, batch_size=batch_size,
                               seed=seed + 7, dev=dev, loss_fn=net.pretrain_loss,
                               progress=progress, cancel=cancel)
            if loss is None:
                log("cancelled during pre-training; nothing saved")
                return TrainResult(None, None, {}, state.history, time.time() - t0, True, 0,
                                   list(ds.messages))
            log(f"pretrain epoch {ep}: loss {loss:.4f}")
        state.pretrained = True
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=s.weight_decay)

    cancelled = False
    for epoch in range(state.epoch + 1, s.epochs + 1):
        te = time.time()
        loss = _epoch_loop(net, ds, opt, phase=Phase.TRAIN, epoch=epoch, batch_size=batch_size,
                           seed=seed, dev=dev, loss_fn=net.loss, progress=progress,
                           cancel=cancel)
        if loss is None:
            cancelled = True
            log(f"cancelled in epoch {epoch}; keeping the best of {state.epoch} epochs")
            break
        valid = evaluate_model(net, ds, "valid", device=dev, with_slices=False)["ndcg@10"]
        state.history.append({"epoch": epoch, "loss": loss, "valid ndcg@10": valid,
                                 "seconds": time.time() - te})
        log(f"epoch {epoch}: loss {loss:.4f} valid ndcg@10 {valid:.4f}")
        if progress is not None:
            progress(TrainEvent(Phase.VALID, epoch, loss=loss, valid=valid))
        if valid > state.best:
            state.best, state.bad = valid, 0
            state.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in net.state_dict().items()})
        else:
            state.bad += 1
        state.epoch = epoch
        save_partial()
        if state.bad >= s.patience:
            log(f"early stop: no validation gain for {s.patience} epochs")
            break
    if state.best_state is None:
        return TrainResult(None, None, {}, state.history, time.time() - t0, cancelled,
                           resumed, list(ds.messages))
    net.load_state_dict(state.best_state)
    calibrate(net, ds, dev, log)
    result = finish(state.history, cancelled, resumed)
    if not cancelled and partial.exists():
        partial.unlink()
    return result
