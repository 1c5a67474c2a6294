"""The model benchmark end to end on real MovieLens 100K with the count baselines (seconds):
import, leave-last and temporal splits, one process per run, the summary and its JSON."""

from __future__ import annotations

import json

from bench import model_bench


def test_count_baselines_on_two_splits(full_data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(model_bench, "OUT", tmp_path / "out")
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
