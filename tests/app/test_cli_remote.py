"""The CLI's hand-off to a running server (app/cli/remote.py), end to end: ``trailscope serve``
runs as a subprocess over a temporary workspace while ``trailscope import``, ``drop``,
``sample`` and ``train`` run as subprocesses too; they succeed through the server (which
holds the DuckDB file) and the server sees the change. ``server.json`` goes when the server
stops, and a stale one (a dead pid, nothing listening) is ignored: the CLI works on the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from trailscope.app.localserver import free_port, local_server, server_env

from tests.conftest import ROOT, nyc_head

TOKEN = "cli-remote-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLI_TIMEOUT_S = 240


def cli(home: Path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    """``trailscope ARGS`` in a subprocess over workspace ``home``."""
    env = server_env(home, **({"TRAILSCOPE_API_TOKEN": token} if token else {}))
    return subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:
    """A server with an API token over an empty workspace, and a slice of the NYC file."""
    home = tmp_path_factory.mktemp("remote_home")
    csv = nyc_head(tmp_path_factory.mktemp("remote_data") / "nyc_checkins.csv", 1500)
    with local_server(home, env={"TRAILSCOPE_API_TOKEN": TOKEN}) as url:
        yield {"home": home, "url": url, "csv": csv}


def _dataset(url: str, name: str) -> requests.Response:
    return requests.get(f"{url}/api/v1/datasets/{name}", headers=AUTH, timeout=30)


def test_import_and_drop_go_through_the_running_server(served):
    home, url = served["home"], served["url"]
    info = json.loads((home / "server.json").read_text())
    assert info["url"] == url and info["pid"] > 0
    run = cli(home, "import", str(served["csv"]))
    assert run.returncode == 0 and "holds this workspace" in run.stderr, run.stderr
    seen = _dataset(url, "nyc_checkins").json()  # the server has it at once
    assert run.stdout.startswith(f"imported 'nyc_checkins' ({seen['format']}): "
                                 f"{seen['rows']:,} of "), run.stdout
    assert f"{seen['users']:,} users, {seen['items']:,} items" in run.stdout
    assert "dashboard summaries built in" in run.stdout
    listed = cli(home, "datasets")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:2] == ["nyc_checkins", seen["format"]]
    assert f"{seen['rows']:,} rows" in listed.stdout
    # the same again is refused by the server, with the local command's advice
    again = cli(home, "import", str(served["csv"]), "--json")
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    assert again.stdout == "" and "Traceback" not in again.stderr
    drop = cli(home, "drop", "NYC_Checkins")
    assert drop.returncode == 0 and drop.stdout.strip() == "dropped 'nyc_checkins'", drop.stderr
    assert _dataset(url, "nyc_checkins").status_code == 404


def test_sample_and_train_go_through_the_running_server(served):
    home, url = served["home"], served["url"]
    run = cli(home, "sample", "--users", "25", "--name", "city")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("generated and imported 'city': ")
    assert _dataset(url, "city").json()["users"] == 25
    train = cli(home, "train", "city", "--model", "markov")
    assert train.returncode == 0, train.stderr
    assert train.stdout.startswith("trained markov-") and "ndcg@10" in train.stdout
    model_id = train.stdout.split()[1].rstrip(":")
    user = _a_user(url, model_id)
    rec = cli(home, "recommend", "city", user, "--k", "5", "--json")
    assert rec.returncode == 0, rec.stderr
    api = requests.get(f"{url}/api/v1/datasets/city/users/{user}/recommendations",
                       params={"k": 5}, headers=AUTH, timeout=60).json()
    api.pop("dataset")
    assert json.loads(rec.stdout) == api and api["model_id"] == model_id
    # an online update is handed over too: new events posted, then `train --continue`
    later = requests.get(f"{url}/api/v1/datasets/city", headers=AUTH, timeout=60).json()
    events = [{"user_id": user, "item_id": rec_item["item_id"],
               "ts": f"{later['time_max'][:10]}T23:0{k}:00Z", "event_id": f"cont-{k}"}
              for k, rec_item in enumerate(api["items"][:3])]
    posted = requests.post(f"{url}/api/v1/datasets/city/events", json=events, headers=AUTH,
                           timeout=60)
    assert posted.status_code == 200 and posted.json()["stored"] == 3, posted.text
    cont = cli(home, "train", "city", "--model", "markov", "--continue", "--json")
    assert cont.returncode == 0, cont.stderr
    out = json.loads(cont.stdout)
    assert out["parent"] == model_id and "valid_new" in out and "kept_new" in out
    bad = cli(home, "train", "city", "--model", "markov", "--continue", "--since", "soon")
    assert bad.returncode == 1 and "is not a time" in bad.stderr and "Traceback" not in \
        bad.stderr, bad.stderr
    held = cli(home, "evaluate", "city")  # reads the file itself: says who holds it
    assert held.returncode == 1 and url in held.stderr, held.stderr


def _a_user(url: str, model_id: str) -> str:
    """A user the model knows: the first sample resident it recommends for."""
    for k in range(25):
        user = f"U{k:06d}"  # the sample city's resident ids
        r = requests.get(f"{url}/api/v1/datasets/city/users/{user}/recommendations",
                         params={"model": model_id, "k": 1}, headers=AUTH, timeout=60)
        if r.status_code == 200:
            return user
    raise AssertionError("the model knows none of the first 25 residents")


def test_the_cli_needs_the_servers_token(served):
    wrong = cli(served["home"], "drop", "city", token="not-the-token-0123456789")
    assert wrong.returncode == 1 and "TRAILSCOPE_API_TOKEN" in wrong.stderr, wrong.stderr
    assert _dataset(served["url"], "city").status_code in (200, 404)  # nothing dropped here


def test_server_json_goes_at_exit_and_a_stale_one_is_ignored(tmp_path, served):
    from trailscope.analytics.store import Store
    from trailscope.app.cli import remote

    home = tmp_path / "home"
    home.mkdir()
    with local_server(home) as url:
        info = json.loads((home / "server.json").read_text())
        assert info["url"] == url
    assert not (home / "server.json").exists()
    # a server that died without cleaning up: its pid is gone, nothing listens at its URL
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (home / "server.json").write_text(json.dumps({**info, "pid": int(dead.stdout)}))
    run = cli(home, "import", str(served["csv"]), "--name", "local", "--no-summaries")
    assert run.returncode == 0, run.stderr
    assert "holds this workspace" not in run.stderr
    with Store(home / "trailscope.duckdb", read_only=True) as store:
        assert store.exists("local")
    # a live pid (this test's) but nothing of ours at its URL: ignored too
    (home / "server.json").write_text(json.dumps(
        {**info, "pid": os.getpid(), "url": f"http://127.0.0.1:{free_port()}"}))
    assert remote.find_server(home / "trailscope.duckdb") is None
