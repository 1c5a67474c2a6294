"""Latency of ``GET /api/v1/datasets/{name}/users/{user}/recommendations`` on a loopback server.

    python -m bench.api_latency [--users 5400] [--requests 300] [--home DIR]

1. ``trailscope sample --users N`` (5,400 residents: about 1M events) and ``trailscope train
   --model markov`` build the workspace (skipped when ``--home`` already holds them);
2. ``trailscope serve`` starts on a free loopback port (a subprocess);
3. after a warm-up, one client asks ``--requests`` times for the top 10 of a random known
   user (keep-alive connection, sequential): p50/p95/p99;
4. then the same, each request right after posting one new event of that user (``POST
   .../events``): the recommendation reads the event just stored; the post's own latency is
   printed too.

The machine's load average is printed beside the figures (other work slows every number).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "city1m"


def _cli(home: Path, *args: str) -> str:
    env = {**os.environ, "TRAILSCOPE_HOME": str(home)}
    run = subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise SystemExit(f"trailscope {' '.join(args)} failed: {run.stderr}")
    return run.stdout


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _show(what: str, ms: list[float]) -> None:
    print(f"{what}: n={len(ms)} p50 {_pct(ms, .5):.1f} ms  p95 {_pct(ms, .95):.1f} ms  "
          f"p99 {_pct(ms, .99):.1f} ms  mean {statistics.fmean(ms):.1f} ms  "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=5400)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--home", type=Path)
    args = p.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="api_latency_"))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "trailscope.duckdb").exists():
        t0 = time.perf_counter()
        print(_cli(home, "sample", "--users", str(args.users), "--name", NAME).strip())
        print(_cli(home, "train", NAME, "--model", "markov").strip(),
              f"(workspace built in {time.perf_counter() - t0:.0f} s)", flush=True)
    from trailscope.analytics.store import Store

    with Store(home / "trailscope.duckdb", read_only=True) as store:
        rows = store.info(NAME).rows
        users = store.query_df(f"SELECT user_id, max(ts) AS last FROM {store.table(NAME)} "
                               "GROUP BY 1 HAVING count(*) >= 20").values.tolist()
        items = store.query_df(f"SELECT DISTINCT item_id FROM {store.table(NAME)} "
                               "LIMIT 500")["item_id"].tolist()
    print(f"dataset {NAME}: {rows:,} events, {len(users):,} users with >= 20 events")

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TRAILSCOPE_HOME": str(home)}
    env.pop("TRAILSCOPE_API_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "trailscope.app.cli", "serve", "--port",
                               str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn.request("GET", "/api/v1/health")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start in 120 s") from None
                time.sleep(0.3)
        rng = random.Random(0)

        def recommend(user: str) -> float:
            t = time.perf_counter()
            conn.request("GET", f"/api/v1/datasets/{NAME}/users/{user}/recommendations?k=10")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit(f"recommendations for {user}: {resp.status} {body[:200]!r}")
            return (time.perf_counter() - t) * 1000

        for user, _ in rng.sample(users, 10):
            recommend(user)  # warm-up: the model loads, the code paths are hot
        _show("recommendations (no writes)",
              [recommend(u) for u, _ in rng.sample(users, min(args.requests, len(users)))])
        posts, recs = [], []
        for n in range(args.requests):
            user, last = rng.choice(users)
            event = [{"user_id": user, "item_id": rng.choice(items),
                      "event_id": f"lat-{os.getpid()}-{n}",
                      "ts": (last + timedelta(hours=1 + n)).isoformat()}]
            t = time.perf_counter()
            conn.request("POST", f"/api/v1/datasets/{NAME}/events", body=json.dumps(event),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit(f"post: {resp.status} {body[:200]!r}")
            posts.append((time.perf_counter() - t) * 1000)
            recs.append(recommend(user))
        _show("post one event", posts)
        _show("recommendations right after a post", recs)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
