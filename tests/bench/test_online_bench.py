"""bench.online_bench end to end on the committed NYC slice (markov: seconds): the first model,
one week appended and scored for the frozen, online and fully retrained models."""

from __future__ import annotations

import re

from bench import online_bench as ob
from tests.conftest import NYC

NUM = r"([0-9.]+)"
ROW = re.compile(r"^\| 1 \| (\d{4}-\d\d-\d\d) \| (\d+) \| (\d+) \| "
                 + r" \| ".join([NUM] * 9) + r" \| " + NUM + r" \| " + NUM
                 + r" \| (yes|no) \(" + NUM + r" -> " + NUM + r"\) \|$")


def test_one_week_is_scored_for_each_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ob.tempfile, "mkdtemp", lambda prefix="": str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    ob.main(["--model", "markov", "--source", str(NYC), "--initial-weeks", "30",
             "--weeks", "1"])
    out = capsys.readouterr().out
    rows = [ROW.match(line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    assert len(rows) == 1, out
    g = rows[0].groups()
    added, targets = int(g[1]), int(g[2])
    assert added > 0 and targets > 0
    frozen, online, full = (tuple(map(float, g[3 + 3 * k:6 + 3 * k])) for k in range(3))
    for ndcg, acc1, hr10 in (frozen, online, full):
        assert 0 <= acc1 <= ndcg <= hr10 <= 1
    kept, parent, new = g[14] == "yes", float(g[15]), float(g[16])
    assert kept == (new >= parent)
    if kept:  # a count model's update refits on the same events as the full retrain
        assert online == full
    else:
        assert online == frozen
    assert "mean NDCG@10: online" in out
    assert not (tmp_path / "home").exists()  # the bench's workspace is removed
