"""Models at scale (issue #15): ``build_dataset`` and training steps, time and memory.

    python -m bench.models_scale_bench [--events 1000000 10000000] [--backing memory store]
                                       [--split leave-last] [--epoch sasrec st-transformer]
                                       [--softmax full sampled] [--max-steps N]
                                       [--max-seconds S] [--workdir DIR] [--reuse]

For each ``--events`` size it writes the Taobao-shaped CSV of ``bench.scale_bench`` (100 events
per user, a heavy item head, the real behaviour mix), imports it with ``trailscope import
--no-summaries`` into a fresh workspace (the CSV is deleted once imported), then runs
``build_dataset(5-core, --split)`` in a fresh process per backing (``memory``: pandas;
``store``: models/data/stored.py, first with no cache (``cold``), then again reading the cache
it wrote (``warm``)) and cuts one batch. Each process reports its wall time, its CPU time (user
+ system, every thread: less sensitive than wall time to other work on a shared machine) and
peak memory: ``peak`` is the process's ``ru_maxrss`` (``scale_bench.measure``; it counts the
pages of memory-mapped files it touched), ``anon`` the highest anonymous memory (``RssAnon``,
sampled every 50 ms: what it allocated).

``--epoch MODEL ...`` then times one epoch of training steps per model and ``--softmax``
setting (``full``: every item; ``sampled``: the logQ-corrected sampled softmax of
models.nn.layers.ItemLoss; ``auto``: the model's default rule), batches cut from the last
``--backing``'s memory-mapped columns, no evaluation, one torch thread; the st-transformer
without its count parts (their statistics are fitted before training, not per step).
``--max-steps`` / ``--max-seconds`` stop early and project the epoch from the steps done
(printed as a projection); ``--eval-examples N`` times the full-ranking validation (every item
scored) on N examples and projects the whole validation part.

``--quality nyc`` instead trains ``--quality-models`` on a real dataset (bench.datasets) with
the full softmax (the baseline) and with the sampled softmax forced (each
``--quality-negatives``), seed 0, one thread, and prints test NDCG@10 and epoch time as
ratios to the full softmax's. The load average is printed
with every line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.scale_bench import load_text, measure, say

NAME = "scale"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, every thread counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
            "anon_mb": anon.peak_kb / 1024, "filter": str(ds.filter_report),
            "cpu_s": cpu_seconds()}


def epoch_worker(backing: str, model: str, max_steps: str, softmax: str,
                 max_seconds: str, eval_n: str = "0") -> dict[str, Any]:
    """In the child: ``build_dataset`` (the cache warm), then one epoch of ``model``'s training
    steps with its ``softmax`` setting (TrainSettings' batch size and learning rate, one torch
    thread, no evaluation, no count parts fitted), or its first ``max_steps`` steps (or those
    done within ``max_seconds``) and the epoch they imply. ``data_s`` is the time spent
    cutting batches from the dataset's columns, ``step_s`` the median training step. Then,
    unless ``eval_n`` is 0, the full-ranking validation of models.training.evaluate (every
    item scored, batches of 256) on ``eval_n`` validation examples spread over the part:
    ``eval_s`` and the time the whole part implies."""
    import numpy as np
    import torch
    from trailscope.analytics.store import Store
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.recommenders.registry import get_class, make_config
    from trailscope.models.training.settings import TrainSettings

    torch.manual_seed(0)
    torch.set_num_threads(1)  # two threads fighting over a shared 2-core machine are slower
    s = TrainSettings()
    with Store() as store, AnonPeak() as anon:
        ds = build_dataset(store, NAME, s.split, s.max_len, s.min_user, s.min_item,
                           backing=backing)
        cls = get_class(model)
        extra = {"use_transitions": False, "use_history": False} if model == "st-transformer" \
            else {}
        net = cls(ds.meta, make_config(cls, {"softmax": softmax, **extra}))
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr)
        steps = -(-len(ds.parts["train"]) // s.batch_size)
        t0, done, data_s, times, losses = time.perf_counter(), 0, 0.0, [], []
        cpu0 = cpu_seconds()
        batches = ds.batches("train", s.batch_size, shuffle=True)
        while done < int(max_steps) and time.perf_counter() - t0 < float(max_seconds):
            t = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            t1 = time.perf_counter()
            data_s += t1 - t
            opt.zero_grad()
            loss = net.loss(batch)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t1)
            losses.append(float(loss))
            done += 1
        seconds, step_cpu_s = time.perf_counter() - t0, cpu_seconds() - cpu0
        train_anon_mb = anon.peak_kb / 1024
        valid, eval_s, eval_rows = ds.parts["valid"], float("nan"), 0
        if int(eval_n) > 0 and len(valid):
            from trailscope.models.training.evaluate import score_examples

            pick = np.linspace(0, len(valid) - 1, min(int(eval_n), len(valid))).astype(np.int64)
            t = time.perf_counter()
            score_examples(net, ds, valid.subset(np.unique(pick)))
            eval_s, eval_rows = time.perf_counter() - t, len(np.unique(pick))
    return {"eval_s": eval_s, "eval_rows": eval_rows, "valid_rows": len(valid),
            "step_cpu_s": step_cpu_s, "train_anon_mb": train_anon_mb,
            "steps": done, "epoch_steps": steps, "seconds": seconds, "data_s": data_s,
            "step_s": sorted(times)[len(times) // 2] if times else float("nan"),
            "epoch_s": seconds / max(done, 1) * steps, "items": ds.meta.n_items,
            "sampled": net.item_loss.sampled, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "anon_mb": anon.peak_kb / 1024,
            "cpu_s": cpu_seconds()}


def gen_worker(csv: str, n: str, seed: str) -> dict[str, Any]:
    from bench.scale_bench import write_taobao
    t = time.perf_counter()
    write_taobao(Path(csv), int(n), int(seed))
    return {"seconds": time.perf_counter() - t}


def import_worker(csv: str, memory_fraction: str) -> dict[str, Any]:
    """``trailscope import --no-summaries`` in this process, with the importer's DuckDB memory
    cap at ``memory_fraction`` of the file's size instead of its default (``--import-memory``:
    the cap of that day, 1.2 GiB, failed at 100M Taobao-shaped rows on 2026-12-06: DuckDB
    could not allocate 1.0 GiB; the default import has since run there)."""
    from trailscope.analytics.ingest import pipeline
    from trailscope.analytics.store import Store

    pipeline.MEMORY_FRACTION = float(memory_fraction)
    pipeline.MAX_MEMORY_MB = 2**30  # the fraction alone decides
    t = time.perf_counter()
    with Store() as store:
        report = pipeline.import_file(store, csv, name=NAME, fmt="taobao")
    return {"seconds": time.perf_counter() - t, "rows": report.rows_kept}


def quality_worker(dataset: str, model: str, epochs: str, settings: str) -> dict[str, Any]:
    """In the child: import the real ``dataset`` (bench.datasets) into this workspace unless
    it is there, train ``model`` for at most ``epochs`` epochs with the model settings
    ``settings`` (JSON; one torch thread, seed 0) and return its validation and test
    NDCG@10, the epochs run and their mean time."""
    import torch
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store
    from trailscope.models.training.loop import train
    from trailscope.models.training.settings import TrainSettings

    from bench.datasets import FILES

    torch.set_num_threads(1)
    with Store() as store:
        if not store.exists(dataset):
            import_file(store, FILES[dataset], name=dataset)
        run = train(store, dataset, model, TrainSettings(epochs=int(epochs), resume=False),
                    log=lambda _line: None, **json.loads(settings))
    seconds = [row["seconds"] for row in run.history]
    return {"valid": run.metrics["valid"]["ndcg@10"], "test": run.metrics["test"]["ndcg@10"],
            "epochs": len(seconds), "epoch_s": sum(seconds) / max(len(seconds), 1),
            "best_epoch": 1 + max(range(len(seconds)),
                                  key=lambda i: run.history[i]["valid ndcg@10"])}


def quality(a: argparse.Namespace, work: Path) -> None:
    """Full softmax (the baseline) vs the sampled softmax with each ``--quality-negatives`` on
    a real dataset, the threshold forced below its catalogue: NDCG@10 and epoch time."""
    home = work / "home-quality"
    runs = [("full", {"softmax": "full"})] + [
        (f"sampled, {k} negatives", {"softmax": "sampled", "negatives": k})
        for k in a.quality_negatives]
    base = None
    for label, settings in runs:
        for model in a.quality_models:
            r = worker(home, "quality", a.quality, model, str(a.quality_epochs),
                       json.dumps(settings))
            if "error" in r:
                say(f"{a.quality} {model} {label}: FAILED {r['error']}")
                continue
            if label == "full":
                base = {**(base or {}), model: r}
            b = (base or {}).get(model)
            ratio = (f" = {r['test'] / b['test']:.3f} x full (test), epoch "
                     f"{r['epoch_s'] / b['epoch_s']:.2f} x" if b and label != "full" else "")
            say(f"{a.quality} {model}, {label}: valid NDCG@10 {r['valid']:.4f}, test "
                f"{r['test']:.4f} (best epoch {r['best_epoch']} of {r['epochs']}), epoch "
                f"{r['epoch_s']:.1f} s{ratio}; {load_text()}")


WORKERS = {"build": build_worker, "gen": gen_worker, "epoch": epoch_worker,
           "import": import_worker, "quality": quality_worker}


def worker(home: Path, kind: str, *args: str) -> dict[str, Any]:
    """One ``--_worker`` job in a fresh process on workspace ``home`` (``scale_bench.measure``:
    wall time and the peak memory of that process alone)."""
    run = measure([sys.executable, "-m", "bench.models_scale_bench", "--_worker", kind, *args],
                  {"TRAILSCOPE_HOME": str(home)})
    if run["rc"] != 0:
        killed = " (killed: out of memory?)" if run["rc"] in (137, -9) else ""
        return {"error": (run["stderr"].strip()[-1500:] or f"exit {run['rc']}") + killed}
    return {**json.loads(run["stdout"].strip().splitlines()[-1]), "process_s": run["seconds"],
            "peak_mb": run["peak_mb"]}


def prepare(n: int, a: argparse.Namespace, home: Path, work: Path) -> bool:
    """Generate and import the ``n``-event file into ``home`` (unless ``--reuse`` finds it
    there); the CSV is deleted once imported. False when the import failed."""
    if a.reuse and (home / "trailscope.duckdb").exists():
        return True
    csv = work / f"taobao_{n}.csv"
    shutil.rmtree(home, ignore_errors=True)
    g = worker(home, "gen", str(csv), str(n), str(a.seed))
    say(f"generated {csv.name} in {g.get('seconds', float('nan')):.0f} s; {load_text()}")
    if a.import_memory is None:
        imp = measure([sys.executable, "-m", "trailscope.app.cli", "import", str(csv), "--name",
                       NAME, "--format", "taobao", "--no-summaries"],
                      {"TRAILSCOPE_HOME": str(home)})
        error = imp["stderr"][-800:] if imp["rc"] else None
        how = "trailscope import"
    else:
        imp = worker(home, "import", str(csv), str(a.import_memory))
        error = imp.get("error")
        how = f"import_file, DuckDB memory cap {a.import_memory} x the file's size"
    csv.unlink(missing_ok=True)
    if error:
        say(f"import failed ({how}): {error}")
        return False
    say(f"imported {n:,} events in {imp.get('process_s', imp.get('seconds')):.1f} s ({how}), "
        f"peak {imp['peak_mb']:,.0f} MB; {load_text()}")
    return True


def one_size(n: int, a: argparse.Namespace, work: Path) -> None:
    home = work / f"home-{n}"
    if not prepare(n, a, home, work):
        return
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
        for softmax in a.softmax:
            r = worker(home, "epoch", a.backing[-1], model, str(a.max_steps), softmax,
                       str(a.max_seconds), str(a.eval_examples))
            if "error" in r:
                say(f"{n:,} events, {model} {softmax} softmax epoch: FAILED {r['error']}")
                continue
            whole = r["steps"] == r["epoch_steps"]
            kind = "sampled" if r["sampled"] else "full"
            say(f"{n:,} events, {model} ({r['items']:,} items), softmax={softmax} ({kind}), "
                f"{a.backing[-1]}: "
                + (f"one epoch of {r['steps']} steps {r['seconds']:.0f} s (measured)" if whole
                   else f"{r['steps']} of {r['epoch_steps']:,} steps in {r['seconds']:.0f} s, "
                   f"epoch ~{r['epoch_s']:,.0f} s = {r['epoch_s'] / 3600:,.1f} h (projected)")
                + f"; {r['steps'] / r['seconds']:.3f} steps/s, median step {r['step_s']:.2f} s"
                f", batches cut in {r['data_s']:.1f} s; CPU {r['step_cpu_s'] / r['steps']:.2f} s"
                f" a step (epoch ~{r['step_cpu_s'] / r['steps'] * r['epoch_steps'] / 3600:,.1f}"
                f" h of one core); loss {r['loss_first']:.2f} -> {r['loss_last']:.2f}; anon "
                f"peak {r['train_anon_mb']:,.0f} MB training; process peak {r['peak_mb']:,.0f} "
                f"MB, anon peak {r['anon_mb']:,.0f} MB with the validation; {load_text()}")
            if r["eval_rows"]:
                whole_s = r["eval_s"] / r["eval_rows"] * r["valid_rows"]
                say(f"    full-ranking validation of {r['eval_rows']:,} of {r['valid_rows']:,} "
                    f"examples over {r['items']:,} items: {r['eval_s']:.1f} s, all of them "
                    f"~{whole_s:,.0f} s = {whole_s / 3600:,.1f} h (projected)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    p.add_argument("--softmax", nargs="+", choices=["auto", "full", "sampled"],
                   default=["auto"], help="the models' softmax setting, one epoch run each")
    p.add_argument("--max-steps", type=int, default=10**9,
                   help="stop an epoch after this many steps and project the rest")
    p.add_argument("--max-seconds", type=float, default=float("inf"),
                   help="stop an epoch after this many seconds and project the rest")
    p.add_argument("--eval-examples", type=int, default=0,
                   help="after each epoch, time the full-ranking validation of this many "
                   "examples and project the whole validation part")
    p.add_argument("--import-memory", type=float,
                   help="import in-process with the importer's DuckDB memory cap at this "
                   "fraction of the file's size (default: the trailscope import command)")
    p.add_argument("--skip-build", action="store_true", help="only the epochs")
    p.add_argument("--quality", choices=["nyc", "ml100k", "taobao"],
                   help="instead of the sizes: full vs sampled softmax on this real dataset")
    p.add_argument("--quality-models", nargs="+", default=["sasrec"])
    p.add_argument("--quality-negatives", type=int, nargs="+", default=[256, 32])
    p.add_argument("--quality-epochs", type=int, default=8)
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
        if a.quality:
            quality(a, work)
        for n in [] if a.quality else a.events:
            one_size(n, a, work)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    say(f"# {load_text()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
