"""Training in several processes (models.training.distributed): PyTorch DDP through torchrun,
on a real slice of Foursquare NYC, gloo on the CPU.

The 2-process run must give the weights of the 1-process run on the same global batches:
DDP averages the gradients and each rank's loss is weighted by its share of the targets, so
only the order of float sums differs. Observed on this slice after one epoch (5 steps): max
abs weight difference 3.2e-6 at hidden 16 (the test's settings; the same with 2 machines x 1
process over loopback), 8e-7 at hidden 32; the test allows 1e-5 (TOL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    run_workers,
    share,
    torchrun_command,
    train_distributed,
)
from trailscope.models.training.evaluate import autocast
from trailscope.models.training.loop import Replica, to_device, train
from trailscope.models.training.settings import resolve

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


def test_ranks_draw_their_own_dropout_masks() -> None:
    """Each rank seeds its dropout RNG from (seed, rank, epoch) at every epoch: two ranks draw
    different masks, the same rank and epoch the same ones (a resumed run), and the only
    process's stream is left as it is (its parameters and resume file own it)."""
    cpu = torch.device("cpu")

    def mask(replica, epoch: int = 1) -> torch.Tensor:
        torch.manual_seed(0)  # each rank's process starts from the run's seed (seed_everything)
        replica.seed_epoch(0, epoch)
        return torch.nn.functional.dropout(torch.ones(512), 0.5) > 0

    first, second = mask(DDPReplica(0, 2, cpu)), mask(DDPReplica(1, 2, cpu))
    assert not torch.equal(first, second)
    assert torch.equal(mask(DDPReplica(0, 2, cpu)), first)
    assert not torch.equal(mask(DDPReplica(0, 2, cpu), epoch=2), first)
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    Replica().seed_epoch(0, 1)
    assert torch.equal(torch.rand(4), expected)


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
    """bf16 autocast only on a CUDA device with native bf16 (else float32, never fp16);
    batches pinned only for CUDA (pinning needs a GPU)."""
    from trailscope.models.data.dataset import build_dataset

    assert not isinstance(autocast(torch.device("cpu")), torch.autocast)
    cuda = autocast(torch.device("cuda"))
    if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8:
        assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16
    else:  # no GPU, or one that would only emulate bf16
        assert not isinstance(cuda, torch.autocast)
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


@pytest.fixture()
def served(home: Path, monkeypatch):
    """The dashboard's services on the module's workspace (their process-wide Store)."""
    from trailscope.app.services import workspace as services

    monkeypatch.setenv("TRAILSCOPE_HOME", str(home))
    services.close_store()
    yield services.get_store()
    services.close_store()


def until(check, what: str, timeout: float = 180.0):
    """Poll ``check()`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_models_page_job_in_two_processes_cancel_and_resume(served: Store) -> None:
    """The Models page's training job with processes=2: progress as for one process; cancel
    stops every process at one step of epoch 2 and keeps epoch 1 as the checkpoint, as one
    process does; the same job started again resumes from epoch 1 and finishes."""
    from trailscope.app.services import models as service

    # small batches: epoch 2 lasts long enough (hundreds of steps) for the cancel to land in
    # it on a loaded machine; with 64 it could end before the poll saw epoch 1
    form = {"split": "leave-last", "epochs": 2, "max_len": 20, "hidden": 16, "device": "cpu",
            "patience": 5, "batch_size": 4, "dropout": 0.0}
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        service.start_training("nyc60", MODEL, **form, processes=3)
    folder = ckpt.models_dir(served, "nyc60")
    job = service.start_training("nyc60", MODEL, **form, processes=2)

    def epoch_one_kept() -> dict | None:
        snap = service.job_snapshot(job)
        assert snap["status"] in ("queued", "running"), snap["error"]
        return snap if snap["valid"] and list(folder.glob("_resume-*.pt")) else None

    snap = until(epoch_one_kept, "the first epoch and its resume file")
    assert snap["meta"]["processes"] == 2 and snap["loss"] and snap["valid"][0][0] == 1
    assert any("starting 2 training processes" in m for m in snap["messages"])
    service.cancel_job(job)
    snap = until(lambda: (s := service.job_snapshot(job))["status"] != "running" and s,
                 "the cancelled job to end")
    assert snap["status"] == "cancelled", snap["error"]
    until(lambda: not processes_under(served.temp_dir), "the training processes to end", 30)
    assert len(list(folder.glob("_resume-*.pt"))) == 1
    kept = snap["summary"]["model_id"]  # every rank stopped at one step; rank 0 saved epoch 1
    info = ckpt.read_info(folder / f"{kept}.pt")
    assert info["cancelled"] and [h["epoch"] for h in info["history"]] == [1]

    again = service.start_training("nyc60", MODEL, **form, processes=2)
    snap = until(lambda: not (s := service.job_snapshot(again))["active"] and s,
                 "the resumed job to finish")
    assert snap["status"] == "done", snap["error"]
    summary = snap["summary"]
    assert summary["resumed_from_epoch"] == 1 and not summary["cancelled"]
    assert [v[0] for v in snap["valid"]] == [2] and snap["progress"]["phase"] == "done"
    assert summary["model_id"] in {m["model_id"] for m in service.trained_models("nyc60")}
    assert not list(folder.glob("_resume-*.pt"))  # a finished run deletes it
    info = ckpt.read_info(folder / f"{summary['model_id']}.pt")
    assert [h["epoch"] for h in info["history"]] == [1, 2] and info["processes"] == 2


def test_a_failing_worker_fails_the_run_with_its_message(store: Store) -> None:
    settings, config = resolve(MODEL, {**VALUES, "lr": 1e30})
    before = set(ckpt.models_dir(store, "nyc60").glob("*.pt"))
    with pytest.raises(DistributedError, match=r"process \d: train loss became (nan|inf)"):
        train_distributed(store, "nyc60", MODEL, settings, config, nproc=2, log=quiet)
    assert set(ckpt.models_dir(store, "nyc60").glob("*.pt")) == before
    assert not list(store.temp_dir.glob("import-*"))  # the inputs' work folder is removed


def test_models_page_has_a_processes_input_and_forwards_it(served: Store) -> None:
    """The Train card's Processes input (default 1) reaches the service: a layout that cannot
    run comes back as the page's error box, before any process starts."""
    import dash
    import trailscope.app.main  # noqa: F401 (creates the app, which registers the pages)
    from trailscope.app.pages import models as page
    from trailscope.app.views import ids

    registered = next(p for p in dash.page_registry.values() if p["path"] == "/models")
    found = []

    def walk(node) -> None:
        if getattr(node, "id", None) == ids.MODELS_PROCESSES:
            found.append(node)
        kids = getattr(node, "children", None)
        for kid in kids if isinstance(kids, list | tuple) else [kids]:
            if kid is not None and not isinstance(kid, str | int | float):
                walk(kid)

    walk(registered["layout"](dataset="nyc60"))
    assert len(found) == 1 and found[0].value == 1 and found[0].min == 1
    _job, error = page.start_training(1, "nyc60", MODEL, "leave-last", 1, 20, 16, "cpu", 3, 3)
    assert "does not split evenly over 3 processes" in str(error)
    _job, error = page.start_training(1, "nyc60", MODEL, "leave-last", 1, 20, 16, "cpu", 3, 99)
    assert "processes must be between 1 and 64" in str(error)


def test_a_killed_worker_is_named_without_a_traceback(tmp_path: Path) -> None:
    """A worker that dies without a word (here: SIGKILL, as the kernel's OOM killer sends)
    fails the run with a sentence naming it, not torchrun's traceback."""
    script = tmp_path / "die.py"
    script.write_text("import os, signal, time\n"
                      "if os.environ['RANK'] == '1':\n"
                      "    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "time.sleep(60)\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node=2", str(script)]
    lines: list[str] = []
    with pytest.raises(DistributedError) as err:
        run_workers(cmd, tmp_path, 2, time.time(), None, None, lines.append, 0)
    message = str(err.value)
    assert "process 1 was stopped by SIGKILL" in message
    assert "Traceback" not in message and str(tmp_path) not in message


def test_the_device_step_reads_the_loss_only_to_report(store: Store, monkeypatch) -> None:
    """The CUDA step's reading schedule, run on the CPU (``lazy``): with reports throttled,
    the loss is read once, at the epoch's last step; the epoch's mean loss is that of the
    step-by-step reading; a NaN between two reads still fails the epoch."""
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.training import loop
    from trailscope.models.training.settings import Phase, TrainEvent

    from tests.models.tiny import TinyRec

    ds = build_dataset(store, "nyc60", "leave-last", 20)
    dev = torch.device("cpu")

    def epoch(lazy: bool, lr: float = 1e-2) -> tuple[float | None, list[TrainEvent]]:
        loop.seed_everything(0)
        net = TinyRec(ds.meta, TinyRec.Config(dropout=0.0))
        opt = torch.optim.AdamW(net.parameters(), lr=lr)
        events: list[TrainEvent] = []
        mean = loop._epoch_loop(net, ds, opt, phase=Phase.TRAIN, epoch=1, batch_size=32,
                                seed=0, dev=dev, loss_fn=net.loss, progress=events.append,
                                cancel=None, lazy=lazy)
        return mean, events

    monkeypatch.setattr(loop, "REPORT_S", 1e9)
    every, each = epoch(lazy=False)
    once, last = epoch(lazy=True)
    steps = each[0].steps
    assert steps > 3 and [e.step for e in each] == list(range(1, steps + 1))
    assert [e.step for e in last] == [steps] and last[0].loss == each[-1].loss
    assert once == pytest.approx(every, rel=1e-12)
    with pytest.raises(FloatingPointError, match=rf"loss became (nan|inf) .* by step {steps};"):
        epoch(lazy=True, lr=1e30)
