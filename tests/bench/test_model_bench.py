"""The model benchmark end to end on real MovieLens 100K with the count baselines (seconds):
import, leave-last and temporal splits, one process per run, the summary and its JSON."""

from __future__ import annotations

import json

from bench import model_bench


def test_count_baselines_on_two_splits(full_data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(model_bench, "OUT", tmp_path / "out")
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))  # main() sets it: undone
    model_bench.main(["--datasets", "ml100k", "--models", "pop,markov", "--splits",
                      "leave-last", "temporal", "trajectory", "--quick",
                      "--home", str(tmp_path / "home")])
    printed = capsys.readouterr().out
    assert "ml100k / leave-last:" in printed and "ml100k / temporal:" in printed
    assert "ml100k / trajectory" not in printed  # the next-POI protocol is NYC's only
    (dump,) = (tmp_path / "out").glob("model_bench-*.json")
    runs = json.loads(dump.read_text())["runs"]
    got = {(r["job"]["split"], r["job"]["model"]): r["test"] for r in runs}
    assert set(got) == {(s, m) for s in ("leave-last", "temporal") for m in ("pop", "markov")}
    for metrics in got.values():
        assert 0.0 < metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    # the first-order Markov chain beats popularity on MovieLens' leave-last split (on
    # validation, where both chose their settings: 120 test targets are too few)
    valid = {(r["job"]["split"], r["job"]["model"]): r["valid"] for r in runs}
    assert valid[("leave-last", "markov")]["ndcg@10"] > valid[("leave-last", "pop")]["ndcg@10"]
    chosen = {(r["job"]["split"], r["job"]["model"]): r["chosen"] for r in runs}
    # no coordinates: no bandwidth; the reading of the counts and its one setting
    assert set(chosen[("leave-last", "markov")]) in ({"link_share", "min_transitions"},
                                                     {"link_share", "link_count"})
    assert "markov chose link_share" in printed


def _run(device: str, ndcg: float, mrr: float, valid: list[float], epochs: int = 3,
         total: float = 50.0, seed: int = 0) -> dict:
    """A result record as bench.model_bench_run writes it (the fields the report reads)."""
    run = {"job": {"dataset": "nyc", "split": "leave-last", "model": "st-transformer",
                   "seed": seed, "epochs": epochs, "device": device},
           "test": {"ndcg@10": ndcg, "mrr": mrr, "hr@10": 0.6},
           "history": [{"epoch": i + 1, "valid ndcg@10": v, "seconds": 2.0}
                       for i, v in enumerate(valid)],
           "epoch_seconds": [1.5] * len(valid), "total_seconds": total}
    if device == "cuda":
        run["gpu"] = "NVIDIA H100 80GB HBM3"
    return run


def test_devices_compared_within_noise(capsys) -> None:
    from bench import model_bench_report as rep

    cpu = {"runs": [_run("cpu", 0.4293, 0.3839, [0.24, 0.27, 0.3203]),
                    _run("cpu", 0.43, 0.38, [0.3], seed=1)]}
    near = {"runs": [_run("cuda", 0.4280, 0.3850, [0.25, 0.27, 0.3190])]}
    far = {"runs": [_run("cuda", 0.4293, 0.3839, [0.24, 0.27, 0.3103])]}
    (ok,) = rep.compare_devices(cpu, near)
    assert ok[0] == "PASS" and "on cpu vs" in ok[1] and "on NVIDIA H100" in ok[1]
    (bad,) = rep.compare_devices(cpu, far)       # the network itself drifted by 0.01
    assert bad[0] == "MISS" and "network's valid ndcg@10 0.3203 on cpu vs 0.3103" in bad[1]
    other = {"runs": [_run("cuda", 0.4293, 0.3839, [0.3203], epochs=1)]}  # not the same run
    assert rep.compare_devices(cpu, other) == []
    assert "no run of one file has its twin" in capsys.readouterr().out


def test_gpu_goals() -> None:
    from bench import model_bench_report as rep

    def goals(run: dict, peer_device: str = "cuda") -> dict[str, str]:
        peer = {"model": "SASRec", "dataset": "nyc", "ndcg@10": 0.4, "mrr": 0.35,
                "epoch_seconds": [4.0, 4.0], "device": peer_device,
                "gpu": "NVIDIA H100 80GB HBM3" if peer_device == "cuda" else None}
        res = {"args": {"epochs": run["job"]["epochs"], "threads": 4}, "runs": [run],
               "peers": [peer], "ceiling": None}
        return {text.split(":")[0]: status for status, text in rep.goals(res)}

    stopped = _run("cuda", 0.48, 0.44, [0.3, 0.4, 0.45, 0.44, 0.44, 0.44], epochs=60,
                   total=95.0)
    got = goals(stopped)
    assert got["full NYC training of st-transformer on NVIDIA H100 80GB HBM3"] == "PASS"
    epoch = [k for k in got if k.startswith("st-transformer epoch 1.5s = 0.38x")]
    assert epoch and got[epoch[0]] == "PASS"
    capped = _run("cuda", 0.48, 0.44, [0.3, 0.4, 0.45], epochs=3, total=40.0)
    assert goals(capped)["full NYC training of st-transformer on NVIDIA H100 80GB "
                         "HBM3"] == "MISS"          # the cap, not early stopping, ended it
    slow = _run("cuda", 0.48, 0.44, [0.3, 0.4, 0.45, 0.44, 0.44, 0.44], epochs=60,
                total=130.0)
    assert goals(slow)["full NYC training of st-transformer on NVIDIA H100 80GB "
                       "HBM3"] == "MISS"
    mixed = goals(stopped, peer_device="cpu")        # SASRec timed on another device
    assert mixed["epoch <= 0.5x RecBole SASRec's on nyc"] == "NOT RUN"
    assert not any(k.startswith("full NYC") for k in goals(_run("cpu", 0.48, 0.44, [0.3])))


def test_cuda_asked_without_a_gpu_is_refused_clearly(tmp_path, monkeypatch) -> None:
    import pytest
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(model_bench, "OUT", tmp_path / "out")
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit, match="--device cuda: this machine's torch sees no CUDA GPU"):
        model_bench.main(["--datasets", "nyc", "--models", "pop", "--device", "cuda",
                          "--quick", "--home", str(tmp_path / "home")])
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())
