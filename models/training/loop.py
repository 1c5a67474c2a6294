"""The training loop: seeded, early-stopped on validation NDCG@10, cancellable, resumable.

``train(store, "nyc", "sasrec", TrainSettings(epochs=5))`` builds the dataset (reports
printed through ``log``), fits count baselines in one pass or trains neural models with
AdamW (optionally after the model's own ``pretrain_loss`` phase), keeps the best epoch by
validation NDCG@10, evaluates it on the test part and saves a checkpoint
(models.training.checkpoint). Progress goes to ``progress`` as ``TrainEvent``s
(models.training.settings), also inside the slow steps: each step of the data preparation
(DATA), each validation batch (VALID), each setting and weighting the calibration tries and
each batch of the final ranking (EVALUATE), each with a short ``detail`` for users.

Resume: after every epoch the run state (weights, optimiser, best weights, history, RNG) is
written to ``_resume-<key>.pt`` in the dataset's model folder, ``key`` hashing everything
that defines the run (model, settings, split, seed, dataset fingerprint). A later call with
the same arguments and ``resume=True`` continues from there; a finished run deletes it.

Several processes: models.training.distributed runs this same loop in every rank of a
DistributedDataParallel run, handing it a ``Replica`` (each rank's rows of every global batch,
the DDP-wrapped step, rank 0 deciding and saving); the default ``Replica`` is the only process.

On CUDA the training step never waits for the device: batches are copied from pinned memory
without blocking, the loss is summed on the device and read (with the non-finite check) only
to report progress, at most every ``REPORT_S`` seconds.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ...analytics.store import Store
from ..base import Batch, Recommender
from ..data.dataset import SeqDataset, build_dataset
from ..recommenders.registry import get_class, make_config
from . import checkpoint as ckpt
from .evaluate import (
    autocast,
    evaluate_model,
    next_window_metrics,
    prepare_part,
    rank_metrics,
)
from .progress import reporting
from .settings import Phase, TrainEvent, TrainSettings, resolve
from .transfer import load_matching

Progress = Callable[[TrainEvent], None]
T = TypeVar("T")
REPORT_S = 0.5   # CUDA: the loss is read from the device for progress at most this often


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


class Replica:
    """This process's part in a run: here the only process, which does everything.

    models.training.distributed.DDPReplica is one rank of several: it takes its rows of each
    global batch, steps through DistributedDataParallel and lets rank 0 decide and save.
    """

    rank = 0      # rank 0 logs, evaluates, saves the resume file and the checkpoint
    world = 1     # processes in the run

    def prepare(self, net: Recommender) -> None:
        """The model is built, fitted and on its device; the optimiser comes next."""

    def batches(self, ds: SeqDataset, batch_size: int, seed: int) -> Iterator[tuple[Batch, float]]:
        """This process's rows of each shuffled global batch and the weight of their loss."""
        for batch in ds.batches("train", batch_size, shuffle=True, seed=seed):
            yield batch, 1.0

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Seed this process's torch RNG (dropout masks) before epoch ``epoch`` of the run
        seeded ``seed``. The only process keeps the one stream it initialised the parameters
        from (the resume file saves it); DDPReplica seeds each rank differently."""

    def loss(self, fn: Callable[[Batch], torch.Tensor], batch: Batch,
             weight: float) -> torch.Tensor:
        """The loss to back-propagate (``fn`` is the model's ``loss`` or ``pretrain_loss``)."""
        return fn(batch)

    def mean(self, loss: torch.Tensor) -> torch.Tensor:
        """The global batch's loss from this process's (detached) ``loss``."""
        return loss

    def first(self, compute: Callable[[], T]) -> T:
        """``compute()`` run on rank 0, its value handed to every process."""
        return compute()


def to_device(batch: Batch, dev: torch.device) -> Batch:
    """``batch`` on ``dev``; for CUDA through pinned memory, so the copy does not block."""
    if dev.type == "cuda":
        batch = batch.map(torch.Tensor.pin_memory)
    return batch.to(dev, non_blocking=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run_key(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _epoch_loop(net: Recommender, ds: SeqDataset, opt: torch.optim.Optimizer, *, phase: Phase,
                epoch: int, batch_size: int, seed: int, dev: torch.device,
                loss_fn: Callable, progress: Progress | None,
                cancel: threading.Event | None, replica: Replica | None = None,
                lazy: bool | None = None) -> float | None:
    """One pass over the training windows; returns the mean loss, None if cancelled.

    The loss is read from the device (and checked for NaN) at every step on the CPU, and
    ``lazy`` (default: on CUDA) only for progress, at most every ``REPORT_S`` seconds and at
    the epoch's end."""
    replica = replica or Replica()
    net.train()
    steps = -(-len(ds.parts["train"]) // batch_size)
    total = torch.zeros((), dtype=torch.float64, device=dev)  # summed on the device
    n, shown = 0, time.monotonic()
    lazy = dev.type == "cuda" if lazy is None else lazy
    replica.seed_epoch(seed, epoch)
    for step, (batch, weight) in enumerate(replica.batches(ds, batch_size,
                                                           seed * 100_003 + epoch)):
        if cancel is not None and cancel.is_set():
            return None
        batch = to_device(batch, dev)
        with autocast(dev):
            loss = replica.loss(loss_fn, batch, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        seen = replica.mean(loss.detach())
        total += seen
        n += 1
        if lazy and step + 1 < steps and time.monotonic() - shown < REPORT_S:
            continue
        shown, value, summed = time.monotonic(), float(seen), float(total)
        if not np.isfinite(summed):  # this step's loss, or one since the last report
            raise FloatingPointError(
                f"{phase} loss became {value if not np.isfinite(value) else summed} at epoch "
                f"{epoch} by step {step + 1}; lower the learning rate (lr) and retrain")
        if progress is not None:
            progress(TrainEvent(phase, epoch, step + 1, steps, value))
    return float(total) / max(n, 1)


def calibrate(net: Recommender, ds: SeqDataset, dev: torch.device,
              log: Callable[[str], None], progress: Progress | None = None,
              epoch: int = 0) -> None:
    """``net.calibrate`` on the validation part; each line of its note is logged and kept
    in the run's messages. What it tries goes to ``progress`` as EVALUATE events."""
    hook = None
    if progress is not None:
        def hook(done: int, total: int, detail: str) -> None:
            progress(TrainEvent(Phase.EVALUATE, epoch, done, total, detail=detail))
    with reporting(hook):
        note = net.calibrate(ds, dev)
    for line in (note or "").splitlines():
        log(line)
        ds.messages.append(line)


def train(store: Store, name: str, model: str = "st-transformer",
          settings: TrainSettings | None = None, config: Any = None, *,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          log: Callable[[str], None] = print, dataset: SeqDataset | None = None,
          replica: Replica | None = None, **overrides: Any) -> TrainResult:
    """Train ``model`` on dataset ``name`` with ``settings``; see the module docstring.

    ``config`` is the model's ``Config`` (default: its defaults). ``overrides`` are named
    training settings or model settings, as ``--set`` gives them (``epochs=1, hidden=16``),
    applied over ``settings`` and ``config`` by :func:`models.training.settings.resolve`,
    which rejects unknown names. A model whose ``wants_pretraining`` is true first gets
    ``settings.pretrain_epochs`` epochs of its ``pretrain_loss``. ``dataset``: ``name`` already
    built with these settings; ``replica``: this process's part in a run of several.
    """
    replica = replica or Replica()
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
    # the statistics of count baselines and of neural models with count parts (the graph's
    # edges, the st-transformer's transition prior) are the last step of the data
    counts = not cls.trainable or cls.fit_counts is not Recommender.fit_counts
    own_steps = 2 if counts else 1   # building the model (and counting)

    def data_step(step: int, steps: int, detail: str) -> None:
        if progress is not None:
            progress(TrainEvent(Phase.DATA, step=step, steps=steps + own_steps, detail=detail))

    data_steps = 0
    if dataset is None:
        def dataset_step(step: int, steps: int, detail: str) -> None:
            nonlocal data_steps
            data_steps = steps
            data_step(step, steps, detail)

        ds = build_dataset(store, name, split, s.max_len, s.min_user, s.min_item,
                           s.exclude_seen, progress=dataset_step)
    else:
        ds = dataset
    for m in ds.messages:
        log(m)
    log(f"training {model} on {name} ({split}) on {dev}")
    if progress is not None:  # the dataset's report, as the model is built
        progress(TrainEvent(Phase.DATA, step=data_steps + 1, steps=data_steps + own_steps,
                            messages=tuple(ds.messages), detail="building the model"))
    net = cls(ds.meta, config).to(dev)
    if s.init_from:  # transfer: the matching item-independent weights of another run
        log(load_matching(net, s.init_from, map_ids=s.init_ids).summary())
    data_params = s.data_params()

    def evaluating(epoch: int, detail: str) -> Callable[[int, int], None] | None:
        """EVALUATE events for the batches of one ranking pass."""
        if progress is None:
            return None
        return lambda done, total: progress(TrainEvent(Phase.EVALUATE, epoch, done, total,
                                                       detail=detail))

    def finish(history: list[dict], cancelled: bool, resumed: int) -> TrainResult:
        epochs = len(history)
        valid = evaluate_model(net, ds, "valid", device=dev, with_slices=False,
                               progress=evaluating(epochs, "ranking the validation targets"))
        test = evaluate_model(net, ds, "test", device=dev,
                              progress=evaluating(epochs, "ranking the test targets"))
        metrics = {"valid": valid, "test": test}
        if net.chosen_settings():  # what calibrate chose on validation
            metrics["chosen"] = net.chosen_settings()
        if split == "temporal":  # set metrics on the items of each user's next 7 days
            metrics["next_window"] = next_window_metrics(
                net, ds, device=dev,
                progress=evaluating(epochs, "ranking each user's next 7 days"))
        if progress is not None:
            progress(TrainEvent(Phase.EVALUATE, epochs, detail="saving the model"))
        seconds = time.time() - t0
        path = ckpt.save(store, name, net, split=split, data_params=data_params,
                         metrics=metrics, history=history, train_seconds=seconds,
                         extra={"seed": seed, "lr": lr, "batch_size": batch_size,
                                "cancelled": cancelled, "device": str(dev),
                                "processes": replica.world})
        log(f"saved {path.stem}: test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f}")
        if progress is not None:
            progress(TrainEvent(Phase.DONE, len(history), valid=valid["ndcg@10"],
                                model_id=path.stem))
        return TrainResult(path.stem, path, metrics, history, seconds, cancelled, resumed,
                           list(ds.messages))

    if counts:
        data_step(data_steps + 2, data_steps, "counting the training statistics")
        tc = time.time()
        net.fit_counts(list(ds.batches("train", batch_size)))
        net.to(dev)
        if cls.trainable:
            line = f"training statistics fitted in {time.time() - tc:.2f}s"
            log(line)
            ds.messages.append(line)
    if not cls.trainable:
        calibrate(net, ds, dev, log, progress)  # the count models' settings, on validation
        return finish([], False, 0)

    replica.prepare(net)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=s.weight_decay)
    # the same keys as before TrainSettings existed: interrupted runs still resume
    key = _run_key({"model": model, "config": asdict(config), "split": split,
                    "pretrain_epochs": s.pretrain_epochs,
                    **({"init": [s.init_from, s.init_ids]} if s.init_from else {}),
                    "seed": seed, "lr": lr, "batch_size": batch_size, "epochs": s.epochs,
                    "weight_decay": s.weight_decay, "data": data_params,
                    "fingerprint": store.content_fingerprint(name)})
    partial = ckpt.models_dir(store, name) / f"_resume-{model}-{key}.pt"
    state = RunState()
    resumed = 0
    saved = replica.first(lambda: torch.load(partial, map_location="cpu", weights_only=True)
                          if s.resume and partial.exists() else None)
    if saved is not None:
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = RunState.from_dict(saved["state"])
        resumed = state.epoch
        log(f"resuming {model} from epoch {resumed} ({partial.name})")

    def save_partial() -> None:
        if replica.rank != 0:
            return
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
                               progress=progress, cancel=cancel, replica=replica)
            if loss is None:
                log("cancelled during pre-training; nothing saved")
                return TrainResult(None, None, {}, state.history, time.time() - t0, True, 0,
                                   list(ds.messages))
            log(f"pretrain epoch {ep}: loss {loss:.4f}")
        state.pretrained = True
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=s.weight_decay)

    valid_batches = functools.cache(lambda: prepare_part(ds, "valid", device=dev))  # kept

    def validate(epoch: int) -> float:
        """Validation NDCG@10 after ``epoch``; its batches go to ``progress`` (VALID)."""
        def batch_done(done: int, total: int) -> None:
            progress(TrainEvent(Phase.VALID, epoch, done, total,
                                detail="ranking the validation targets"))
        return rank_metrics(net, ds, valid_batches(), "valid", dev,
                            None if progress is None else batch_done)[0]

    cancelled = False
    for epoch in range(state.epoch + 1, s.epochs + 1):
        te = time.time()
        loss = _epoch_loop(net, ds, opt, phase=Phase.TRAIN, epoch=epoch, batch_size=batch_size,
                           seed=seed, dev=dev, loss_fn=net.loss, progress=progress,
                           cancel=cancel, replica=replica)
        if loss is None:
            cancelled = True
            log(f"cancelled in epoch {epoch}; keeping the best of {state.epoch} epochs")
            break
        valid = replica.first(functools.partial(validate, epoch))
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
    if state.best_state is None or replica.rank != 0:  # rank 0 calibrates, tests and saves
        return TrainResult(None, None, {}, state.history, time.time() - t0, cancelled,
                           resumed, list(ds.messages))
    net.load_state_dict(state.best_state)
    calibrate(net, ds, dev, log, progress, len(state.history))
    result = finish(state.history, cancelled, resumed)
    if not cancelled and partial.exists():
        partial.unlink()
    return result
