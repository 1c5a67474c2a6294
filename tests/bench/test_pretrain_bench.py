"""bench.pretrain_bench end to end on the committed NYC slice: every variant trains and is
printed with its metrics and its change against base; transfer mode; MovieLens texts."""

from __future__ import annotations

import re

import pytest

from bench import pretrain_bench as pb
from tests.conftest import NYC

ROW = re.compile(r"^\| (?P<variant>[a-z+]+) \| (?P<ndcg>[0-9.]+) \| (?P<mrr>[0-9.]+) "
                 r"\| (?P<recall>[0-9.]+) \| (?P<valid>[0-9.]+) \| (?P<encoder>[0-9.]+) \|"
                 r" .* \| (?P<d_ndcg>[-+0-9.]+) \| (?P<d_mrr>[-+0-9.]+) "
                 r"\| (?P<d_enc>[-+0-9.]+) \|$")


def _rows(out: str) -> dict[str, dict[str, float]]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            d = m.groupdict()
            name = d.pop("variant")
            rows[name] = {k: float(v) for k, v in d.items()}
    return rows


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setattr(pb.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    return tmp_path


def test_every_variant_is_trained_and_printed(home, capsys):
    pb.main(["--dataset", "nyc", "--source", str(NYC), "--users", "30", "--epochs", "1",
             "--pretrain-epochs", "1"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == list(pb.VARIANTS), out
    for name, r in rows.items():
        assert 0 < r["ndcg"] <= 1 and 0 < r["mrr"] <= 1 and r["ndcg"] <= r["recall"], name
        assert 0 < r["encoder"] <= 1, name
        assert r["d_ndcg"] == pytest.approx(r["ndcg"] - rows["base"]["ndcg"], abs=2e-4)
    assert rows["base"]["d_ndcg"] == 0 and rows["base"]["d_enc"] == 0
    # pre-training and text change the encoder (the blend may still pick the count parts)
    assert rows["pretrain"]["encoder"] != rows["base"]["encoder"]
    assert rows["text"]["encoder"] != rows["base"]["encoder"]
    assert "imported nyc: " in out and ", 30 users," in out


def test_transfer_mode(home, capsys):
    pb.main(["--transfer", "nyc-odd:nyc-even", "--source", str(NYC), "--users", "40",
             "--epochs", "1", "--source-epochs", "1"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == list(pb.TRANSFER_VARIANTS), out
    assert "pre-training on nyc-odd: epoch 1" in out
    assert "imported nyc-odd: " in out and "imported nyc-even: " in out
    # the halves are disjoint: 20 users each
    assert ", 20 users," in out.split("imported nyc-even")[1].splitlines()[0]
    assert rows["transfer"]["encoder"] != rows["base"]["encoder"]
    assert rows["transfer+ids"]["encoder"] != rows["transfer"]["encoder"]


def test_bad_arguments():
    with pytest.raises(SystemExit):
        pb.parse_args(["--variants", "base,nope"])
    with pytest.raises(SystemExit):
        pb.parse_args(["--transfer", "nyc"])
    assert pb.parse_args(["--transfer", "nyc-odd:nyc-even"]).variants == \
        list(pb.TRANSFER_VARIANTS)


def test_movielens_texts(tmp_path):
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\nDrama|3\n\n",
                                      encoding="latin-1")
    (tmp_path / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0\n"
        "2|Café Society (1995)|01-Jan-1995||http://x|0|1|0|1\n"
        "3|Nothing (1996)|01-Jan-1996||http://x|1|0|0|0\n", encoding="latin-1")
    texts = pb.movielens_texts(tmp_path / "u.item", tmp_path / "u.genre")
    assert texts == {"1": "Toy Story (1995) - Comedy",
                     "2": "Café Society (1995) - Action, Drama",
                     "3": "Nothing (1996)"}
