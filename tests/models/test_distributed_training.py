"""Training in several processes (models.training.distributed): PyTorch DDP through torchrun,
on a real slice of Foursquare NYC, gloo on the CPU.

The 2-process run must give the weights of the 1-process run on the same global batches:
DDP averages the gradients and each rank's loss is weighted by its share of the targets, so
only the order of float sums differs. Observed on this slice: max abs weight difference
8e-7 after one epoch (5 steps); the test allows 1e-5 (TOL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from trailscope.analytics.store import Store
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training.distributed import (
    DDPReplica,
    DistributedError,
    check_layout,
    share,
    torchrun_command,
    train_distributed,
)
from trailscope.models.training.evaluate import autocast
from trailscope.models.training.loop import to_device, train
from trailscope.models.training.settings import Phase, TrainEvent, resolve

from tests.models.realdata import real_workspace, slice_dataset

TOL = 1e-5          # max abs difference allowed between 1- and 2-process weights
MODEL = "st-transformer"
#: a few steps of a small st-transformer without dropout (dropout masks differ by process)
VALUES = {"epochs": 1, "batch_size": 64, "max_len": 20, "hidden": 16, "dropout": 0.0,
          "device": "cpu", "resume": False}


def quiet(_msg: str) -> None:
    """Training log sink: the tests check results, not the log."""


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A workspace (TRAILSCOPE_HOME) with the first 60 users of the NYC slice, closed again
    so that a CLI subprocess can open it."""
    folder = tmp_path_factory.mktemp("ddp-home")
    store = real_workspace(folder, "nyc")
    slice_dataset(store, "nyc", "nyc60", 60)
    store.close()
    return folder


@pytest.fixture()
def store(home: Path):
    s = Store(home / "trailscope.duckdb")
    yield s
    s.close()


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a
               if a[k].is_floating_point() and a[k].numel())


def checkpoints(home: Path) -> set[str]:
    return {p.name for p in (home / "models" / "nyc60").glob("*")}


def processes_under(root: Path) -> list[str]:
    """Command lines of the live processes that name a path under ``root``."""
    found = []
    for f in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = f.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if str(root) in cmd:
            found.append(cmd)
    return found


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAILSCOPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args],
                          capture_output=True, text=True, env=env, timeout=300)


# -- no processes started ------------------------------------------------------------------
def test_rank_shares_cover_each_batch_once() -> None:
    for rows in (1, 5, 26, 64):
        for world in (1, 2, 3):
            parts = [share(rows, r, world) for r in range(world)]
            assert parts[0].start == 0 and parts[-1].stop == rows
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_rank_loss_weights_make_the_global_mean(home: Path, store: Store) -> None:
    """Weighted rank losses averaged (what DDP does to the gradients) give the global mean
    loss: each weight is world x the rank's share of the batch's targets."""
    from trailscope.models.data.dataset import build_dataset

    ds = build_dataset(store, "nyc60", "leave-last", 20)
    for world in (2, 3):
        per_rank = [list(DDPReplica(r, world, torch.device("cpu")).batches(ds, 60, seed=1))
                    for r in range(world)]
        glob = list(ds.batches("train", 60, shuffle=True, seed=1))
        assert all(len(p) == len(glob) for p in per_rank)
        for i, whole in enumerate(glob):
            rows = [per_rank[r][i][0] for r in range(world)]
            assert sum(int(b.user.shape[0]) for b in rows) == int(whole.user.shape[0])
            assert torch.equal(torch.cat([b.user for b in rows]), whole.user)
            assert sum(per_rank[r][i][1] for r in range(world)) == pytest.approx(world)


def test_layouts_that_cannot_run_are_refused() -> None:
    s, _ = resolve(MODEL, VALUES)
    assert check_layout(MODEL, s, 2) == 2
    with pytest.raises(ValueError, match="batch_size 64 does not split evenly over 3 processes"):
        check_layout(MODEL, s, 3)
    with pytest.raises(ValueError, match="counting in one pass"):
        check_layout("markov", replace(s, batch_size=64), 2)
    with pytest.raises(ValueError, match="--master-addr"):
        check_layout(MODEL, s, 1, nnodes=2)
    with pytest.raises(ValueError, match="node rank 2 is not one of the 2 machines"):
        check_layout(MODEL, s, 1, nnodes=2, node_rank=2, master_addr="10.0.0.1")


def test_torchrun_command(tmp_path: Path) -> None:
    one = torchrun_command(tmp_path, 2)
    assert one[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=2"]
    assert "--standalone" in one and one[-3:] == ["-m", "trailscope.models.training.distributed",
                                                 str(tmp_path)]
    two = torchrun_command(tmp_path, 4, nnodes=2, node_rank=1, master_addr="10.0.0.1",
                           master_port=29400)
    assert "--standalone" not in two
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1",
            "--master-port=29400"} <= set(two)


def test_device_path_choices(store: Store) -> None:
    """bf16 autocast only on CUDA; batches pinned only for CUDA (pinning needs a GPU)."""
    import warnings

    from trailscope.models.data.dataset import build_dataset

    assert not isinstance(autocast(torch.device("cpu")), torch.autocast)
    with warnings.catch_warnings():  # without CUDA torch warns that it disables it
        warnings.simplefilter("ignore")
        cuda = autocast(torch.device("cuda"))
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16
    batch = next(build_dataset(store, "nyc60", "leave-last", 20).batches("valid", 8))
    moved = to_device(batch, torch.device("cpu"))
    assert not moved.item_seq.is_pinned() and torch.equal(moved.item_seq, batch.item_seq)
    if torch.cuda.is_available():
        on_gpu = to_device(batch, torch.device("cuda"))
        assert on_gpu.item_seq.is_cuda and torch.equal(on_gpu.item_seq.cpu(), batch.item_seq)


# -- real processes ------------------------------------------------------------------------
def test_two_processes_through_the_cli_match_one(home: Path) -> None:
    """`trailscope train --nproc 2` end to end: one checkpoint, which loads, with the
    weights and losses of one process on the same global batches."""
    before = checkpoints(home)
    sets = [a for k, v in VALUES.items() for a in ("--set", f"{k}={v}")]
    r = run_cli(home, "train", "nyc60", "--model", MODEL, "--nproc", "2", *sets, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    two = out["model_id"]
    assert two and out["cancelled"] is False and len(out["history"]) == 1
    assert "starting 2 training processes" in r.stderr and "epoch 1: loss" in r.stderr
    assert checkpoints(home) - before == {f"{two}.pt", f"{two}.json"}  # written once

    store = Store(home / "trailscope.duckdb")
    try:
        loaded = ckpt.load(ckpt.find(store, "nyc60", two), store)
        assert loaded.info["processes"] == 2 and loaded.info["batch_size"] == 64
        settings, config = resolve(MODEL, VALUES)
        one = train(store, "nyc60", MODEL, settings, config, log=quiet)
    finally:
        store.close()
    assert max_diff(weights(one.path), weights(loaded.info["path"])) < TOL
    assert out["history"][0]["loss"] == pytest.approx(one.history[0]["loss"], abs=1e-6)
    assert out["valid"]["ndcg@10"] == pytest.approx(one.metrics["valid"]["ndcg@10"], abs=1e-6)


def test_progress_cancel_and_resume(store: Store) -> None:
    """Progress arrives as one process's TrainEvents; cancel stops every process after the
    first epoch; the same run started again resumes from it and finishes."""
    settings, config = resolve(MODEL, {**VALUES, "epochs": 2, "resume": True, "patience": 5})
    folder = ckpt.models_dir(store, "nyc60")
    cancel = threading.Event()
    events: list[TrainEvent] = []

    def progress(ev: TrainEvent) -> None:
        events.append(ev)
        if ev.phase is Phase.VALID:  # rank 0 writes the resume file right after this event
            deadline = time.monotonic() + 60
            while not list(folder.glob("_resume-*.pt")) and time.monotonic() < deadline:
                time.sleep(0.05)
            cancel.set()

    first = train_distributed(store, "nyc60", MODEL, settings, config, nproc=2,
                              progress=progress, cancel=cancel, log=quiet)
    assert first.cancelled and first.model_id is None
    deadline = time.monotonic() + 30  # torchrun and both workers: killed as one group
    while processes_under(store.temp_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_under(store.temp_dir)
    phases = [e.phase for e in events]
    assert phases[0] is Phase.DATA and Phase.DONE not in phases
    steps = [e for e in events if e.phase is Phase.TRAIN]
    assert [e.step for e in steps] == list(range(1, steps[0].steps + 1))
    assert all(e.loss is not None and e.loss > 0 for e in steps)
    assert len(list(folder.glob("_resume-*.pt"))) == 1

    events.clear()
    second = train_distributed(store, "nyc60", MODEL, settings, config, nproc=2,
                               progress=events.append, log=quiet)
    assert second.resumed_from_epoch == 1 and not second.cancelled
    assert [h["epoch"] for h in second.history] == [1, 2]
    assert events[-1].phase is Phase.DONE and events[-1].model_id == second.model_id
    assert {e.epoch for e in events if e.phase is Phase.TRAIN} == {2}
    assert not list(folder.glob("_resume-*.pt"))  # a finished run deletes it
    assert ckpt.load(second.path, store).info["history"][0]["epoch"] == 1


def test_a_failing_worker_fails_the_run_with_its_message(store: Store) -> None:
    settings, config = resolve(MODEL, {**VALUES, "lr": 1e30})
    before = set(ckpt.models_dir(store, "nyc60").glob("*.pt"))
    with pytest.raises(DistributedError, match=r"process \d: train loss became (nan|inf)"):
        train_distributed(store, "nyc60", MODEL, settings, config, nproc=2, log=quiet)
    assert set(ckpt.models_dir(store, "nyc60").glob("*.pt")) == before
    assert not list(store.temp_dir.glob("import-*"))  # the inputs' work folder is removed
