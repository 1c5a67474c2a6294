"""Training in several processes: PyTorch DistributedDataParallel launched through torchrun.

``train_distributed(store, "nyc", "st-transformer", settings, config, nproc=2)`` is
``models.training.loop.train`` spread over ``nproc`` processes on this machine (and, with
``nnodes``/``node_rank``/``master_addr``, over several machines): gloo on the CPU, NCCL on
CUDA GPUs (one per process).

The launcher (this process: the CLI or the dashboard's training job) builds the training
inputs once, the filtered, indexed dataset and its split (models.data), and pickles them with
the settings into a work folder under the workspace's temp folder (analytics.store's temp
helpers): the workers never open the DuckDB file, which a running dashboard may hold (DuckDB
admits one writing process per file). It then runs ``python -m torch.distributed.run``
(torchrun) on this module's worker entry, one worker per rank, and reads their output:

* every rank runs the same loop (models.training.loop) with a :class:`DDPReplica`: the seeded
  global batch order is the one of a single process, each rank takes its contiguous share of
  every global batch (``batch_size / world`` rows, so ``batch_size`` must divide), DDP averages
  the gradients and each rank's loss is weighted by its share of the batch's targets, so the
  weights follow those of one process on the same global batches up to the order of float
  sums; evaluation, early stopping and the resume state are decided on rank 0 and broadcast;
* rank 0 prints its log lines and progress as JSON lines (``MARK`` + JSON), which the launcher
  turns back into log calls and :class:`TrainEvent`s, so the CLI and the Models page show a
  run of several processes as they show one; rank 0 alone writes the resume file after every
  epoch and the checkpoint at the end (the usual format, models.training.checkpoint);
* a failing worker prints its error as a JSON line and torchrun stops the others: the run
  fails with that message (one killed without a word, say by the out-of-memory killer, is
  named from torchrun's report);
* ``cancel`` leaves a stop file that rank 0 reads before every step and shares with the
  others (:class:`StopFlag`), so every rank stops at the same step and rank 0 saves the best
  epoch so far, as one process does; processes that have not ended ``STOP_GRACE_S`` later
  are killed as one group (the epochs finished so far stay in the resume file: the same run
  started again, with any number of processes, continues from there).

Several machines: every machine runs the launcher with the same settings and its own
``node_rank``; each builds the inputs from its own workspace, which must hold the same dataset
(the ranks compare its fingerprint before training). Rank 0 (on node 0) reads the resume file
and broadcasts it, and writes the checkpoint in node 0's workspace.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ...analytics.store import Store, make_work_dir, remove_work_dir
from ..base import Batch, Recommender
from ..data.dataset import SeqDataset, build_dataset
from ..recommenders.registry import get_class, make_config
from . import checkpoint as ckpt
from .loop import Replica, TrainResult, resolve_device, train
from .settings import Phase, TrainEvent, TrainSettings, resolve

T = TypeVar("T")
#: the prefix of the lines rank 0 prints for the launcher (anything else is passed on as log)
MARK = "@trailscope "
WORKER = "trailscope.models.training.distributed"
INPUTS, RESULT, STOP = "inputs.pkl", "result.pkl", "stop"
KILL_GRACE_S = 5.0
STOP_GRACE_S = 600.0  # after a cancel: time to stop at a step, calibrate, test and save


class DistributedError(RuntimeError):
    """A distributed run that failed; the message is the failing worker's own."""


# -- the workers ------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreView:
    """What training reads of the workspace once the dataset is built, as the launcher
    measured it: where the workspace file is (the models folder sits beside it), the
    dataset's fingerprint and its extent (checkpoint.data_extent: rows and last event time).
    Workers use it in place of a ``Store``, never opening the DuckDB file."""

    path: Path
    name: str
    fingerprint_: str
    extent: dict[str, Any]
    content_: str = ""

    def fingerprint(self, name: str) -> str:
        return self.fingerprint_

    def content_fingerprint(self, name: str) -> str:
        """What the dataset held when the launcher built it (the resume key's part)."""
        return self.content_ or self.fingerprint_

    def table(self, name: str) -> str:
        return name

    def cursor(self) -> _Measured:
        return _Measured(self.extent)


class _Measured:
    """A cursor answering checkpoint.data_extent's one query (row count, last event time in
    microseconds) with what the launcher measured in the workspace."""

    def __init__(self, extent: dict[str, Any]) -> None:
        last = extent["trained_until"]
        self.row = (extent["dataset_rows"], None if last is None else round(last * 1e6))

    def execute(self, sql: str, params: Any = None) -> _Measured:
        return self

    def fetchone(self) -> tuple[int, int | None]:
        return self.row

    def close(self) -> None:
        pass


class _Step(nn.Module):
    """The module DDP wraps: its forward is one loss of the model (``loss`` or
    ``pretrain_loss``), so the gradients of either are averaged across the ranks."""

    def __init__(self, net: Recommender) -> None:
        super().__init__()
        self.net = net

    def forward(self, fn: Callable[[Batch], torch.Tensor], batch: Batch) -> torch.Tensor:
        return fn(batch)


def targets(batch: Batch) -> int:
    """The positions with a next item: the terms of the models' mean loss
    (models.nn.layers.full_softmax_loss)."""
    return int((batch.target_seq > 0).sum())


def share(rows: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous rows of a global batch of ``rows`` (sizes differ by <= 1)."""
    bounds = np.linspace(0, rows, world + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


class DDPReplica(Replica):
    """One rank of a DistributedDataParallel run (see the module docstring)."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.ddp: DistributedDataParallel | None = None

    def prepare(self, net: Recommender) -> None:
        # unused parameters: the pre-training heads while training and the other way round;
        # the buffers (count statistics) are fitted alike on every rank: never re-broadcast;
        # no device_ids: the batch is on this rank's device already (loop.to_device), so DDP
        # has nothing to move
        self.ddp = DistributedDataParallel(_Step(net), device_ids=None,
                                           find_unused_parameters=True,
                                           broadcast_buffers=False)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        # every rank initialised the parameters from the run's seed alike (seed_everything
        # before the model is built); from here each rank draws its own dropout masks (the same
        # seed everywhere made them identical). Seeded from (seed, rank, epoch) at every epoch,
        # so a resumed run (which restores rank 0's RNG state everywhere) draws the masks of an
        # uninterrupted one.
        torch.manual_seed(int(np.random.SeedSequence([seed, self.rank, epoch])
                              .generate_state(1, np.uint64)[0]))

    def batches(self, ds: SeqDataset, batch_size: int, seed: int) -> Iterator[tuple[Batch, float]]:
        for batch in ds.batches("train", batch_size, shuffle=True, seed=seed):
            rows = share(int(batch.user.shape[0]), self.rank, self.world)
            if rows.stop == rows.start:  # a last batch smaller than the world: a weightless row
                yield batch.rows(slice(0, 1)), 0.0
                continue
            mine = batch.rows(rows)
            total = targets(batch)
            # DDP averages the ranks' gradients: weighting each mean loss by world x its share
            # of the targets makes that average the gradient of the global batch's mean loss
            yield mine, (self.world * targets(mine) / total if total else 1.0)

    def loss(self, fn: Callable[[Batch], torch.Tensor], batch: Batch,
             weight: float) -> torch.Tensor:
        assert self.ddp is not None, "prepare() first"
        return self.ddp(fn, batch) * weight

    def mean(self, loss: torch.Tensor) -> torch.Tensor:
        total = loss.clone()
        dist.all_reduce(total)
        return total / self.world

    def first(self, compute: Callable[[], T]) -> T:
        box = [compute() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


class StopFlag:
    """The workers' cancel event: rank 0 looks for the launcher's stop file and every rank
    learns its answer through a gloo all-reduce (CPU, no device sync), so all ranks stop at
    the same step; the loop asks once per step."""

    def __init__(self, path: Path, rank: int, group: Any) -> None:
        self.path, self.rank, self.group = path, rank, group

    def is_set(self) -> bool:
        flag = torch.tensor([int(self.rank == 0 and self.path.exists())])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return bool(flag.item())


def _emit(kind: str, value: Any) -> None:
    print(MARK + json.dumps({kind: value}, default=str), flush=True)


def worker(folder: Path) -> int:
    """One rank (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK): train on the launcher's
    inputs in ``folder``; rank 0 writes the result there. Returns the exit status."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    lead = rank == 0
    try:
        spec = pickle.loads((folder / INPUTS).read_bytes())
        settings: TrainSettings = spec["settings"]
        dev = resolve_device(settings.device)
        if dev.type == "cuda":
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        # the other ranks wait while rank 0 validates an epoch: allow a long full ranking
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=timedelta(hours=2))
    except Exception as exc:  # noqa: BLE001 - reported to the launcher as this rank's error
        _emit("error", f"process {rank}: {exc}")
        return 1
    try:
        prints = [None] * world
        dist.all_gather_object(prints, spec["fingerprint"])
        if len(set(prints)) > 1:
            raise ValueError(f"dataset {spec['name']!r} differs between the machines "
                             f"(fingerprints {', '.join(sorted(set(prints)))}): import the same "
                             "file under the same name on every machine")
        view = StoreView(Path(spec["store_path"]), spec["name"], spec["fingerprint"],
                         spec["extent"], spec.get("content", ""))
        flags = dist.new_group(backend="gloo") if dev.type == "cuda" else dist.group.WORLD
        result = train(view, spec["name"], spec["model"], settings,
                       spec["config"], dataset=spec["dataset"],
                       replica=DDPReplica(rank, world, dev),
                       cancel=StopFlag(folder / STOP, rank, flags),  # type: ignore[arg-type]
                       progress=(lambda ev: _emit("event", ev.to_dict())) if lead else None,
                       log=(lambda msg: _emit("log", msg)) if lead else (lambda msg: None))
        if lead:
            tmp = folder / (RESULT + ".tmp")
            tmp.write_bytes(pickle.dumps(result))
            tmp.replace(folder / RESULT)
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the launcher as this rank's error
        _emit("error", f"process {rank}: {type(exc).__name__}: {exc}" if not str(exc)
              else f"process {rank}: {exc}")
        return 1
    finally:
        dist.destroy_process_group()


# -- the launcher -----------------------------------------------------------------------
def check_layout(model: str, settings: TrainSettings, nproc: int, nnodes: int = 1,
                 node_rank: int = 0, master_addr: str | None = None) -> int:
    """Refuse a layout that cannot run (ValueError saying what to change); returns the
    number of processes in all."""
    if nproc < 1 or nnodes < 1:
        raise ValueError(f"nproc and nnodes must be at least 1, got {nproc} and {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node rank {node_rank} is not one of the {nnodes} machines "
                         f"(0..{nnodes - 1})")
    if nnodes > 1 and not master_addr:
        raise ValueError("several machines need --master-addr: the address of node 0, which "
                         "every machine can reach")
    if not get_class(model).trainable:
        raise ValueError(f"model {model!r} is fitted by counting in one pass, not by gradient "
                         "descent: train it in one process")
    world = nproc * nnodes
    if settings.batch_size % world:
        raise ValueError(f"batch_size {settings.batch_size} does not split evenly over {world} "
                         f"processes; use a number of processes that divides it, or a "
                         f"batch_size that is a multiple of {world}")
    dev = resolve_device(settings.device)
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"{nproc} processes per machine need {nproc} GPUs; this machine has "
                         f"{torch.cuda.device_count()}: use at most {torch.cuda.device_count()} "
                         "processes, or the CPU")
    return world


def torchrun_command(folder: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str | None = None, master_port: int | None = None) -> list[str]:
    """The torchrun command line for the worker entry on ``folder``: one machine picks a free
    port itself (``--standalone``); several meet at ``master_addr:master_port``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and not master_addr:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}",
                f"--master-addr={master_addr or '127.0.0.1'}",
                f"--master-port={master_port or 29500}"]
    return [*cmd, "-m", WORKER, str(folder)]


def _event(d: dict[str, Any]) -> TrainEvent:
    return TrainEvent(Phase(d["phase"]), d.get("epoch", 0), d.get("step", 0), d.get("steps", 0),
                      d.get("loss"), d.get("valid"), d.get("model_id"),
                      tuple(d.get("messages", ())), d.get("detail", ""))


def _failure(report: str, code: int) -> str:
    """What torchrun's failure report (its stderr) says of the first process that failed
    without a message of its own (killed, say by the system running out of memory)."""
    root = report.split("Root Cause", 1)[-1]
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    who = f"process {rank.group(1)}" if rank else "a training process"
    signal_name = re.search(r"Signal \d+ \((SIG\w+)\)", root)
    if signal_name:
        return (f"{who} was stopped by {signal_name.group(1)} (if nobody stopped it, the "
                "machine may have run out of memory)")
    status = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    return f"{who} ended with exit status {status.group(1) if status else code} and no message"


def _pump(stream: Any, sink: Callable[[str], None]) -> None:
    for line in stream:
        sink(line.rstrip("\n"))
    stream.close()


def _stop(proc: subprocess.Popen) -> None:
    """Kill torchrun and its workers (one process group): TERM, then KILL after a grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def train_distributed(store: Store, name: str, model: str = "st-transformer",
                      settings: TrainSettings | None = None, config: Any = None, *,
                      nproc: int = 2, nnodes: int = 1, node_rank: int = 0,
                      master_addr: str | None = None, master_port: int | None = None,
                      progress: Callable[[TrainEvent], None] | None = None,
                      cancel: threading.Event | None = None,
                      log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` on ``name`` in ``nproc`` processes per machine (see the module
    docstring); the result is rank 0's ``TrainResult`` (on other machines than node 0: one
    without a model id, node 0 saves the model). Raises DistributedError with the failing
    worker's message."""
    t0 = time.time()
    s = settings or TrainSettings()
    cls = get_class(model)
    config = config if isinstance(config, cls.Config) else make_config(cls, dict(config or {}))
    world = check_layout(model, s, nproc, nnodes, node_rank, master_addr)
    def data_step(step: int, steps: int, detail: str) -> None:  # the workers count on
        if progress is not None:
            progress(TrainEvent(Phase.DATA, step=step, steps=steps, detail=detail))

    ds = build_dataset(store, name, s.split, s.max_len, s.min_user, s.min_item, s.exclude_seen,
                       progress=data_step)
    folder = make_work_dir(store.temp_dir)
    try:
        (folder / INPUTS).write_bytes(pickle.dumps({
            "name": name, "model": model, "settings": s, "config": config, "dataset": ds,
            "fingerprint": store.fingerprint(name), "extent": ckpt.data_extent(store, name),
            "content": store.content_fingerprint(name),
            "store_path": str(store.path.resolve())}))
        log(f"starting {world} training processes"
            + (f" on {nnodes} machines (this is node {node_rank})" if nnodes > 1 else ""))
        cmd = torchrun_command(folder, nproc, nnodes, node_rank, master_addr, master_port)
        return run_workers(cmd, folder, nproc, t0, progress, cancel, log, node_rank)
    finally:
        remove_work_dir(folder)


def launch_target(store: Store, name: str, model: str, values: dict[str, Any],
                  nproc: int) -> Callable[..., TrainResult]:
    """A background job's target (``target(progress, cancel, log)``, progress as plain dicts)
    training ``model`` on ``name`` in ``nproc`` processes with the settings ``values``
    (models.training.settings.resolve); a layout that cannot run is refused here, at once."""
    settings, config = resolve(model, values)
    check_layout(model, settings, nproc)

    def target(progress: Callable[[dict[str, Any]], None], cancel: threading.Event,
               log: Callable[[str], None]) -> TrainResult:
        return train_distributed(store, name, model, settings, config, nproc=nproc,
                                 progress=lambda ev: progress(ev.to_dict()), cancel=cancel,
                                 log=log)

    return target


def run_workers(cmd: list[str], folder: Path, nproc: int, t0: float,
                progress: Callable[[TrainEvent], None] | None, cancel: threading.Event | None,
                log: Callable[[str], None], node_rank: int) -> TrainResult:
    """Run torchrun (``cmd``), relay rank 0's lines to ``log`` and ``progress``, stop every
    process on ``cancel``, wait; the result rank 0 left in ``folder``, or DistributedError
    with the failing process's message."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # each worker's share of the cores (torchrun would set 1 and warn about it)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    lines: Queue[str | None] = Queue()
    tail: deque[str] = deque(maxlen=100)
    errors: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    out = threading.Thread(target=_pump, args=(proc.stdout, lines.put), daemon=True)
    err = threading.Thread(target=_pump, args=(proc.stderr, tail.append), daemon=True)
    out.start()
    err.start()
    finished, stop_by = False, None
    try:
        while stop_by is None or time.monotonic() < stop_by:
            if stop_by is None and cancel is not None and cancel.is_set():
                # rank 0 sees the file at the next step: every rank stops there, and rank 0
                # keeps the best epoch so far as the checkpoint, as one process would
                (folder / STOP).touch()
                stop_by = time.monotonic() + STOP_GRACE_S
            try:
                line = lines.get(timeout=0.2)
            except Empty:
                if not out.is_alive() and lines.empty():
                    finished = True
                    break
                continue
            # two processes' lines can run together in the pipe: read every marked piece
            pieces = line.split(MARK)
            if pieces[0].strip():
                log(pieces[0])
            for piece in pieces[1:]:
                try:
                    msg = json.loads(piece)
                except ValueError:
                    msg = None
                if not isinstance(msg, dict):
                    if "\"error\"" in piece:  # a torn error line still says what failed
                        errors.append(piece.strip())
                    else:
                        log(piece)
                elif "log" in msg:
                    log(msg["log"])
                elif "event" in msg and progress is not None:
                    progress(_event(msg["event"]))
                elif "error" in msg:
                    errors.append(msg["error"])
    finally:
        if not finished:  # not stopped in time after a cancel, or the relay failed
            _stop(proc)
        code = proc.wait()
        err.join(5)
    cancelled = stop_by is not None
    if cancelled and not (folder / RESULT).exists():
        log("cancelled: the training processes were stopped; the epochs finished so far are "
            "kept, and the same run started again continues from there")
        return TrainResult(None, None, {}, [], time.time() - t0, cancelled=True)
    if code != 0:
        reason = errors[0] if errors else _failure("\n".join(tail), code)
        raise DistributedError(f"distributed training failed: {reason}")
    if not (folder / RESULT).exists():  # another machine than node 0: rank 0 saved the model
        return TrainResult(None, None, {}, [], time.time() - t0,
                           messages=[f"node {node_rank} finished its share; node 0 saved the "
                                     "model"])
    result: TrainResult = pickle.loads((folder / RESULT).read_bytes())
    result.seconds = time.time() - t0
    return result


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1])))
