"""One model run of bench.model_bench, in its own process (so its peak RSS is its own).

    python -m bench.model_bench_run JOB.json

JOB.json holds the run's settings (dataset, model, split, epochs, ...) and ``out``, the file
the result JSON is written to. The workspace ($TRAILSCOPE_HOME) is opened read-only: the
parent has imported the data and closed its own connection.

Measured here: test/valid metrics from models.train.train; per-epoch training seconds with
the validation pass taken out (from the progress callback's timestamps), pre-training
seconds, time from the start of training to the end of the best validation epoch; top-10
latency per user (median of single-user calls: end to end through models.api.recommend,
and model.score + topk on a prepared batch of one), on the job's ``device``; peak RSS of
this process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the RSS high-water mark
before training; on CUDA, the GPU's peak memory over training and its evaluation
(``max_memory_allocated``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


class Clock:
    """Collects progress events with timestamps (models.train's progress callback)."""

    def __init__(self) -> None:
        self.t_data: float | None = None
        self.last_step: dict[tuple[str, int], float] = {}
        self.first_step: dict[tuple[str, int], float] = {}
        self.valid_at: dict[int, float] = {}

    def __call__(self, ev: Any) -> None:  # a models.training.settings.TrainEvent
        now = time.perf_counter()
        phase = ev.phase
        if phase == "data":
            self.t_data = now
        elif phase in ("train", "pretrain"):
            key = (phase, int(ev.epoch))
            self.first_step.setdefault(key, now)
            self.last_step[key] = now
        elif phase == "valid":
            self.valid_at[int(ev.epoch)] = now

    def pretrain_seconds(self) -> float:
        keys = [k for k in self.last_step if k[0] == "pretrain"]
        if not keys or self.t_data is None:
            return 0.0
        return max(self.last_step[k] for k in keys) - self.t_data


def epoch_train_seconds(history: list[dict], clock: Clock) -> list[float]:
    """Each epoch's seconds minus its validation pass (last train step -> valid event)."""
    out = []
    for h in history:
        e = int(h["epoch"])
        end, valid = clock.last_step.get(("train", e)), clock.valid_at.get(e)
        val_s = (valid - end) if end is not None and valid is not None else 0.0
        out.append(float(h["seconds"]) - val_s)
    return out


def latency(store: Any, dataset: str, model_id: str, path: Path, n: int,
            device: str = "cpu") -> dict[str, float]:
    """Median/p90 milliseconds of top-10 for one user: via recommend and via score+topk.

    Users: the first ``n`` of the model's own users (each call a different user while there
    are enough of them). The model is loaded on ``device``; on CUDA a score+topk call ends
    when the top-10 indices are back on the host (as a caller would need them).
    """
    import numpy as np
    import torch
    from trailscope.analytics import schema
    from trailscope.models import api
    from trailscope.models.data.history import history_batch
    from trailscope.models.training import checkpoint as ckpt

    loaded = ckpt.load(path, store, device=device)
    users = [str(u) for u in loaded.meta.extra["user_ids"][:n]]
    picks = [users[i % len(users)] for i in range(n)]
    # The model loaded once, as the dashboard's services hold it (app/services/cache.MODELS):
    # models.api keeps no cache of its own, so without `loaded` every call would reload it.
    api.recommend(store, dataset, picks[0], k=10, model_id=model_id, loaded=loaded)  # warm up
    e2e = []
    for u in picks:
        t = time.perf_counter()
        api.recommend(store, dataset, u, k=10, model_id=model_id, loaded=loaded)
        e2e.append((time.perf_counter() - t) * 1e3)
    batches = []
    for u in dict.fromkeys(picks):
        ev = store.events(dataset, where=f"{schema.USER} = ?", params=[u])
        batches.append(history_batch(ev, loaded.meta, u).batch.to(device))
    score = []
    with torch.no_grad():
        loaded.model.score(batches[0]).topk(10).indices.cpu()
        for i in range(n):
            t = time.perf_counter()
            s = loaded.model.score(batches[i % len(batches)]).float()
            s.topk(min(10, loaded.meta.n_items)).indices.cpu()
            score.append((time.perf_counter() - t) * 1e3)
    return {"recommend_ms_median": float(np.median(e2e)),
            "recommend_ms_p90": float(np.percentile(e2e, 90)),
            "score_ms_median": float(np.median(score)),
            "score_ms_p90": float(np.percentile(score, 90)), "calls": n, "device": device}


def run(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(job["threads"]))
    from trailscope.analytics.store import Store
    from trailscope.models.training.loop import train

    rss_before = _rss_mb()
    store = Store(read_only=True)
    clock = Clock()
    t0 = time.perf_counter()
    device = job.get("device", "cpu")
    res = train(store, job["dataset"], model=job["model"], split=job["split"],
                epochs=int(job["epochs"]), device=device, batch_size=int(job["batch_size"]),
                lr=float(job["lr"]), seed=int(job["seed"]), max_len=int(job["max_len"]),
                resume=False, pretrain_epochs=int(job["pretrain_epochs"]), progress=clock,
                log=lambda m: print(f"      {m}", file=sys.stderr, flush=True),
                **job.get("overrides", {}))
    total = time.perf_counter() - t0
    rss_train = _rss_mb()
    out: dict[str, Any] = {"job": job, "model_id": res.model_id, "total_seconds": total,
                           "history": res.history, "rss_mb_before_training": rss_before}
    if res.model_id is None:
        out["error"] = "training produced no model (no epoch finished)"
        return out
    test = {k: v for k, v in res.metrics["test"].items() if k != "slices"}
    out.update(test=test, valid={k: v for k, v in res.metrics["valid"].items()
                                 if k != "slices"})
    out["chosen"] = res.metrics.get("chosen")       # settings chosen on validation
    out["messages"] = res.messages                  # the data report, tuning and blend lines
    epochs = epoch_train_seconds(res.history, clock)
    out["epoch_seconds"] = epochs
    out["pretrain_seconds"] = clock.pretrain_seconds()
    if res.history and clock.t_data is not None:
        best = max(res.history, key=lambda h: h["valid ndcg@10"])["epoch"]
        out["best_epoch"] = int(best)
        out["seconds_to_best"] = clock.valid_at.get(int(best), t0) - clock.t_data
    else:   # count baselines: one pass, "best" is the fitted model
        out["best_epoch"] = 0
        out["seconds_to_best"] = total
    out["rss_mb_peak_training"] = rss_train
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_mb_peak_training"] = torch.cuda.max_memory_allocated() / 2**20
    if job.get("latency_calls", 0) > 0:
        out["latency"] = latency(store, job["dataset"], res.model_id, res.path,
                                 int(job["latency_calls"]), device)
    out["rss_mb_peak"] = _rss_mb()
    store.close()
    return out


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("OMP_NUM_THREADS", str(job["threads"]))
    result = run(job)
    Path(job["out"]).write_text(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
