"""Smoke run of the stream benchmark: a tiny base dataset, one-second steps at a low rate, a
real server, a real redis-server and a real ``trailscope consume`` (about a minute)."""

from __future__ import annotations

from bench import stream_bench


def test_tiny_run_measures_every_part(tmp_path, capsys) -> None:
    out = tmp_path / "stream.txt"
    result = stream_bench.main(["--events", "2000", "--step-seconds", "1", "--rates", "200",
                                "--loaders", "2", "--single-loaders", "3",
                                "--visible-trials", "2",
                                "--consume-events", "300", "--consume-batch", "100",
                                "--out", str(out)])
    paced, unpaced = result.steps
    assert paced.label == "r200" and unpaced.label == "max"
    assert result.single.loaders == 3 and result.single_few.loaders == 2
    for step in (paced, unpaced, result.single, result.single_few):
        assert step.sent > 0 and step.errors == 0
        assert step.stored == step.sent  # nothing lost at these rates
    assert paced.latencies_ms and result.idle.latencies_ms and result.idle.sent == 0
    assert paced.server_cpu_s > 0 and unpaced.server_cpu_s > 0  # the server process found
    assert len(result.visible) == 2 and all(0 < v < 30 for v in result.visible)
    # the Overview shows a batch no sooner than the API counts it
    assert len(result.overview) == 2
    assert all(v <= o < 60 for v, o in zip(result.visible, result.overview, strict=True))
    assert result.xadd[0] >= stream_bench.BATCH and result.xadd[1] > 0
    c = result.consume
    assert c["read"] == 300 and c["stored"] == 300 and c["grew"] == 300 and c["rejected"] == 0
    text = out.read_text()
    assert text == result.text() + "\n" and text in capsys.readouterr().out
    assert "| r200 | 200 |" in text and "sustained with zero loss" in text
    assert "at the goal rate: no step paced at 10,000 events/s" in text  # only 200/s here
    assert "| single2 |" in text and "| single3 |" in text and "from 3 connections" in text
    assert stream_bench.sustained(result.steps) is not None
