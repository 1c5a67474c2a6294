"""Models at scale (issue #15): ``build_dataset`` in memory vs store-backed, time and memory.

    python -m bench.models_scale_bench [--events 1000000 10000000] [--backing memory store]
                                       [--split leave-last] [--epoch sasrec] [--workdir DIR]

For each ``--events`` size it writes the Taobao-shaped CSV of ``bench.scale_bench`` (100 events
per user, a heavy item head, the real behaviour mix), imports it with ``trailscope import
--no-summaries`` into a fresh workspace, then runs ``build_dataset(5-core, --split)`` in a
fresh process per backing (``memory``: pandas; ``store``: models/data/stored.py, first with no
cache (``cold``), then again reading the cache it wrote (``warm``)) and cuts one batch. Each
process reports its wall time, its CPU time (user + system, every thread: less sensitive than
wall time to other work on a shared machine) and peak memory: ``peak`` is the process's
``ru_maxrss`` (read with ``os.wait4``; it counts the pages of memory-mapped files it touched),
``anon`` the highest anonymous memory (``RssAnon``, sampled every 50 ms: what it allocated).
``--epoch MODEL ...`` then times one epoch of training steps per model (batches cut from the
last ``--backing``'s dataset, no evaluation; ``--max-steps`` stops early and projects the
epoch). The load average is printed with every line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "scale"


def load_text() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_child(args: list[str], home: Path) -> dict[str, Any]:
    """``python ARGS`` in a fresh process on workspace ``home``: wall s, peak MB, output."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TRAILSCOPE_HOME": str(home)})
    out, err = proc.communicate()
    # communicate() reaped the child; its usage is in RUSAGE_CHILDREN only as a maximum over
    # all children, so children run one at a time and the launcher stays small
    seconds = time.perf_counter() - t
    return {"rc": proc.returncode, "seconds": seconds, "stdout": out, "stderr": err}


def measured(args: list[str], home: Path) -> dict[str, Any]:
    """``run_child`` through ``--_measure`` (a go-between that reads the peak with wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        run = run_child(["-m", "bench.models_scale_bench", "--_measure", str(peak),
                         sys.executable, *args], home)
        got = json.loads(peak.read_text()) if peak.exists() else {}
        run["peak_mb"] = got.get("peak_mb", float("nan"))
        run["cpu_s"] = got.get("cpu_s", float("nan"))
    return run


def _measure(peak_file: str, cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    Path(peak_file).write_text(json.dumps({"peak_mb": usage.ru_maxrss / 1024,
                                           "cpu_s": usage.ru_utime + usage.ru_stime}))
    return os.waitstatus_to_exitcode(status)


class AnonPeak:
    """The highest RssAnon of this process, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.05) -> None:
        self.peak_kb, self.every, self._stop = 0, every, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._read())
            time.sleep(self.every)

    def __enter__(self) -> AnonPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak_kb = max(self.peak_kb, self._read())


def build_worker(backing: str, split: str) -> dict[str, Any]:
    """In the child: one ``build_dataset``; its seconds, sizes and peak anonymous memory."""
    import numpy as np
    from trailscope.analytics.store import Store
    from trailscope.models.data.dataset import build_dataset

    with Store() as store, AnonPeak() as anon:
        t = time.perf_counter()
        ds = build_dataset(store, NAME, split, backing=backing)
        seconds = time.perf_counter() - t
        train = ds.parts["train"]  # one batch of 256 spread over the training examples
        ds.batch(train, np.linspace(0, len(train) - 1, min(256, len(train))).astype(np.int64))
    return {"build_s": seconds, "events": len(ds.events), "users": ds.meta.n_users,
            "items": ds.meta.n_items, "train_examples": len(ds.parts["train"]),
            "anon_mb": anon.peak_kb / 1024, "filter": str(ds.filter_report)}


def epoch_worker(backing: str, model: str, max_steps: str) -> dict[str, Any]:
    """In the child: ``build_dataset`` (the cache warm), then one epoch of ``model``'s training
    steps (TrainSettings' batch size and learning rate, one torch thread, no evaluation), or
    its first ``max_steps`` steps and the epoch they imply."""
    import torch
    from trailscope.analytics.store import Store
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.recommenders.registry import get_class, make_config
    from trailscope.models.training.settings import TrainSettings

    torch.manual_seed(0)
    torch.set_num_threads(1)
    s = TrainSettings()
    with Store() as store, AnonPeak() as anon:
        ds = build_dataset(store, NAME, s.split, s.max_len, s.min_user, s.min_item,
                           backing=backing)
        cls = get_class(model)
        net = cls(ds.meta, make_config(cls))
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr)
        steps = -(-len(ds.parts["train"]) // s.batch_size)
        t, done = time.perf_counter(), 0
        for batch in ds.batches("train", s.batch_size, shuffle=True):
            opt.zero_grad()
            net.loss(batch).backward()
            opt.step()
            done += 1
            if done >= int(max_steps):
                break
        seconds = time.perf_counter() - t
    return {"steps": done, "epoch_steps": steps, "seconds": seconds,
            "epoch_s": seconds / done * steps, "items": ds.meta.n_items,
            "anon_mb": anon.peak_kb / 1024}


def gen_worker(csv: str, n: str, seed: str) -> dict[str, Any]:
    from bench.scale_bench import write_taobao
    t = time.perf_counter()
    write_taobao(Path(csv), int(n), int(seed))
    return {"seconds": time.perf_counter() - t}


WORKERS = {"build": build_worker, "gen": gen_worker, "epoch": epoch_worker}


def worker(home: Path, kind: str, *args: str) -> dict[str, Any]:
    run = measured(["-m", "bench.models_scale_bench", "--_worker", kind, *args], home)
    if run["rc"] != 0:
        return {"error": (run["stderr"].strip()[-1500:] or f"exit {run['rc']}")}
    return {**json.loads(run["stdout"].strip().splitlines()[-1]), "process_s": run["seconds"],
            "peak_mb": run["peak_mb"], "cpu_s": run["cpu_s"]}


def say(line: str) -> None:
    print(line, flush=True)


def one_size(n: int, a: argparse.Namespace, work: Path) -> None:
    home = work / f"home-{n}"
    csv = work / f"taobao_{n}.csv"
    if not (a.reuse and (home / "trailscope.duckdb").exists()):
        shutil.rmtree(home, ignore_errors=True)
        g = worker(home, "gen", str(csv), str(n), str(a.seed))
        say(f"generated {csv.name} in {g.get('seconds', float('nan')):.0f} s; {load_text()}")
        imp = measured(["-m", "trailscope.app.cli", "import", str(csv), "--name", NAME,
                        "--format", "taobao", "--no-summaries"], home)
        csv.unlink(missing_ok=True)
        if imp["rc"]:
            say(f"import failed: {imp['stderr'][-800:]}")
            return
        say(f"imported {n:,} events in {imp['seconds']:.1f} s; {load_text()}")
    for backing in [] if a.skip_build else a.backing:
        runs = ["cold", "warm"] if backing == "store" else [""]
        if backing == "store":
            shutil.rmtree(home / "cache", ignore_errors=True)
        for label in runs:
            r = worker(home, "build", backing, a.split)
            what = f"{backing}{' ' + label if label else ''}"
            if "error" in r:
                say(f"{n:,} {what}: FAILED {r['error']}")
                continue
            say(f"{n:,} events, {what}: build_dataset {r['build_s']:.1f} s (process "
                f"{r['process_s']:.1f} s, CPU {r['cpu_s']:.1f} s), peak {r['peak_mb']:,.0f} MB, "
                f"anon peak {r['anon_mb']:,.0f} MB -> {r['events']:,} events, "
                f"{r['users']:,} users, {r['items']:,} items, {r['train_examples']:,} "
                f"training windows; {load_text()}")
    for model in a.epoch or ():
        r = worker(home, "epoch", a.backing[-1], model, str(a.max_steps))
        if "error" in r:
            say(f"{n:,} events, {model} epoch: FAILED {r['error']}")
            continue
        whole = r["steps"] == r["epoch_steps"]
        say(f"{n:,} events, {model} ({r['items']:,} items), {a.backing[-1]}: "
            + (f"one epoch of {r['steps']} steps {r['seconds']:.0f} s" if whole else
               f"{r['steps']} of {r['epoch_steps']} steps {r['seconds']:.0f} s, epoch "
               f"~{r['epoch_s']:,.0f} s (projected)")
            + f"; process peak {r['peak_mb']:,.0f} MB, anon peak {r['anon_mb']:,.0f} MB; "
            f"{load_text()}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_measure"]:
        return _measure(argv[1], argv[2:])
    if argv[:1] == ["--_worker"]:
        print(json.dumps(WORKERS[argv[1]](*argv[2:]), default=str))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.models_scale_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--backing", nargs="+", choices=["memory", "store"],
                   default=["memory", "store"])
    p.add_argument("--split", default="leave-last")
    p.add_argument("--epoch", nargs="+", help="also time one training epoch of these models")
    p.add_argument("--max-steps", type=int, default=10**9,
                   help="stop an epoch after this many steps and project the rest")
    p.add_argument("--skip-build", action="store_true", help="only the epochs")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--reuse", action="store_true",
                   help="with --workdir: reuse a workspace imported there before")
    a = p.parse_args(argv)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="trailscope-models-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"# models scale benchmark {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU "
        f"cores; {load_text()}")
    say("# command: python -m bench.models_scale_bench " + " ".join(argv))
    try:
        for n in a.events:
            one_size(n, a, work)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    say(f"# {load_text()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
