"""Live-ingest benchmark: events posted to a running server at rising rates while another
client asks for recommendations, against Redis XADD of the same events as a stream's ceiling.

    python -m bench.stream_bench [--events 90000] [--step-seconds 60]
                                 [--rates 2000 5000 10000 20000] [--out FILE]

What it does, all on loopback, in a temporary workspace:

1. ``trailscope sample`` generates the base dataset (about ``--events`` events of the sample
   city) and ``trailscope train --model markov`` trains a quick model on it;
2. ``trailscope serve`` starts (a subprocess, API token set) and the bench waits for
   ``GET /api/v1/health``;
3. per rate step, ``--loaders`` threads post batches of 100 new events of the same residents
   (distinct ``event_id``) to ``POST /api/v1/datasets/{name}/events`` paced to the rate, for
   ``--step-seconds``, while one client loops on ``GET .../users/{user}/recommendations``;
   after the step the bench polls ``GET /api/v1/datasets/{name}`` until the stored count
   equals the sent count (zero loss) or a deadline passes;
4. single-event posts (one event per request) as fast as ``--single-loaders`` connections go
   (each waits for its post to commit, so the step's rate is at most connections / commit
   time: many devices each sending one event, not one client posting in a loop), and the same
   from ``--loaders`` connections beside it;
5. post-to-visible: the time from sending a batch to ``GET /api/v1/datasets/{name}`` counting
   it, and to the Overview's "Events" headline showing it (the page's layout rendered by the
   dashboard's routing callback, as a browser opening /overview asks for it);
6. the ceiling: ``redis-server`` (started here) takes the same events by ``XADD``, pipelined
   in batches of 100, for ``--step-seconds``; then ``trailscope consume`` drains that stream
   into the served dataset (through the API) and its rate is printed too.

Sustained events/s = the highest step with zero loss that reached 95% of its target rate.
Goals on 2 cores: >= 10,000 events/s in batches, >= 500 single-event posts/s, p95
recommendation latency < 50 ms while ingesting, visible in < 2 s. The machine's load average
is printed beside every step (other work on the machine slows every number).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trailscope.app.localserver import free_port, local_server

ROOT = Path(__file__).resolve().parents[1]
DATASET = "live"
BATCH = 100
TOKEN = "stream-bench-token"
GOALS = {"batch_events_s": 10_000, "single_posts_s": 500, "rec_p95_ms": 50, "visible_s": 2.0}
#: Events/s (batches) and posts/s (single events) the bodies of an unpaced step are encoded
#: for before it starts.
MAX_PRESEND = 25_000
MAX_PRESEND_POSTS = 3_000
EVENTS_PER_USER = 180  # the sample city's residents make about 180 events each (180 days)


# -- processes ------------------------------------------------------------------------------
def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "TRAILSCOPE_HOME": str(home), "TRAILSCOPE_API_TOKEN": TOKEN,
           "TRAILSCOPE_BASEMAP": "blank", "PYTHONUNBUFFERED": "1"}
    env.pop("TRAILSCOPE_DEFAULT_DATASET", None)
    return env


def cli(home: Path, *args: str, timeout: float = 1800) -> str:
    """Run ``trailscope ARGS``; its stdout, or RuntimeError with its stderr."""
    r = subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args], cwd=ROOT,
                       env=_env(home), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"trailscope {' '.join(args)} failed: {r.stderr.strip()[-2000:]}")
    return r.stdout


def wait_for(check: Callable[[], bool], what: str, timeout_s: float,
             every_s: float = 0.05) -> float:
    """Poll ``check`` until true; seconds taken, or RuntimeError naming ``what``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)
    return time.monotonic() - t0


@contextmanager
def server(home: Path) -> Iterator[tuple[str, int]]:
    """``trailscope serve`` on a free port over ``home`` (``trailscope.app.localserver``, with
    the bench's token and the caller's server thread settings); yields (host, port)."""
    keep = {k: os.environ[k] for k in ("TRAILSCOPE_THREADS", "TRAILSCOPE_TORCH_THREADS")
            if k in os.environ}
    with local_server(home, env={**keep, "TRAILSCOPE_API_TOKEN": TOKEN,
                                 "PYTHONUNBUFFERED": "1"}, stop_s=30) as url:
        parts = urlsplit(url)
        yield parts.hostname or "127.0.0.1", int(parts.port or 0)


@contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """``redis-server`` without persistence on a free loopback port; yields the port."""
    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    log = folder / f"redis-{port}.log"
    with open(log, "w") as fh:  # the child keeps its own descriptor
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                 "", "--appendonly", "no", "--dir", str(folder)],
                                stdout=fh, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)

    def ping() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {log.read_text()[-2000:]}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(ping, "redis-server answers PING", 30)
        yield port
    finally:
        client.close()
        proc.kill()
        proc.wait(timeout=10)


# -- HTTP -----------------------------------------------------------------------------------
#: The Overview's "Events" headline card in the rendered layout (app/views/ui.kpi_row).
_KPI_EVENTS = re.compile(r'"children":\s*"Events",\s*"className":\s*"kpi-label"\}[^{]*'
                         r'\{"props":\s*\{"children":\s*"([\d,]+)",\s*"className":\s*"kpi-value"')


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=60)

    def _call(self, method: str, path: str, body: bytes | None = None,
              extra: dict[str, str] | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {TOKEN}", **(extra or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):  # a dropped keep-alive connection is reopened once
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        return self._call("GET", path)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self._call("POST", path, body)

    def overview_events(self) -> int:
        """The Overview's "Events" headline, as the page renders it: the dashboard's routing
        callback (the one a browser calls on opening /overview) asked for the page's layout."""
        # (with the API token, as this client sends it, no CSRF cookie is needed or given)
        body = {"output": ".._pages_content.children..._pages_store.data..",
                "outputs": [{"id": "_pages_content", "property": "children"},
                            {"id": "_pages_store", "property": "data"}],
                "inputs": [{"id": "_pages_location", "property": "pathname",
                            "value": "/overview"},
                           {"id": "_pages_location", "property": "search",
                            "value": f"?dataset={DATASET}"}],
                "changedPropIds": ["_pages_location.pathname"], "state": []}
        status, answer = self._call("POST", "/_dash-update-component", json.dumps(body).encode())
        found = _KPI_EVENTS.search(answer.decode("utf-8", "replace"))
        if status != 200 or found is None:
            raise RuntimeError(f"the Overview did not render its Events headline: {status} "
                               f"{answer[:300]!r}")
        return int(found.group(1).replace(",", ""))

    def rows(self) -> int:
        status, body = self.get(f"/api/v1/datasets/{DATASET}")
        if status != 200:
            raise RuntimeError(f"GET /api/v1/datasets/{DATASET}: {status} {body[:300]!r}")
        return int(json.loads(body)["rows"])


# -- the events -----------------------------------------------------------------------------
class Events:
    """New events of the base dataset's residents, as JSON text without an id; a batch gets
    ids ``<tag>-<n>`` so every posted event is distinct."""

    def __init__(self, users: int) -> None:
        from trailscope.analytics import schema
        from trailscope.analytics.sample.generate import generate_events

        df = generate_events(users=min(users, 1000), seed=7, start="2024-07-01", days=60)
        df[schema.TS] = df[schema.TS].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        records = json.loads(df.to_json(orient="records"))
        # each fragment is an object's members after the opening brace
        self.fragments = [json.dumps(r, ensure_ascii=False)[1:] for r in records]
        self.users = sorted(df[schema.USER].unique().tolist())
        self._n = itertools.count()
        self._lock = threading.Lock()

    def take(self, size: int, tag: str) -> tuple[bytes, list[str]]:
        """A JSON array of ``size`` new events; also their fragments (for XADD)."""
        with self._lock:
            start = next(self._n)
            for _ in range(size - 1):
                next(self._n)
        parts = [f'{{"event_id":"{tag}-{n}",' + self.fragments[n % len(self.fragments)]
                 for n in range(start, start + size)]
        return ("[" + ",".join(parts) + "]").encode(), parts

    def bodies(self, count: int, size: int, tag: str) -> list[bytes]:
        """``count`` request bodies of ``size`` new events each, encoded now, so the loaders
        spend their time on the requests, not on making them."""
        return [self.take(size, tag)[0] for _ in range(count)]


# -- one step -------------------------------------------------------------------------------
@dataclass
class Step:
    label: str
    target: float | None
    loaders: int = 0  # posting connections
    seconds: float = 0.0
    sent: int = 0
    accepted: int = 0
    errors: int = 0
    stored: int = 0
    drain_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    rec_errors: int = 0
    load: float = 0.0
    note: str = ""
    client_cpu_s: float = 0.0  # CPU the bench process itself used during the step
    server_cpu_s: float = 0.0  # CPU the server process used during the step (0: unknown)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _recommend_loop(host: str, port: int, users: list[str], stop: threading.Event,
                    step: Step) -> None:
    client, rng = Client(host, port), random.Random(1)
    while not stop.is_set():
        user = rng.choice(users)
        t0 = time.perf_counter()
        status, _ = client.get(f"/api/v1/datasets/{DATASET}/users/{user}/recommendations?k=10")
        if status == 200:
            step.latencies_ms.append((time.perf_counter() - t0) * 1000)
        else:
            step.rec_errors += 1


def server_pid(port: int) -> int | None:
    """The process id of this process's child serving ``port`` (``trailscope serve``), or
    None when it cannot be told (no /proc)."""
    me = os.getpid()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"serve" in cmd and str(port).encode() in cmd:
            return int(entry.name)
    return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds process ``pid`` has used (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_step(host: str, port: int, events: Events, label: str, rate: float | None, size: int,
             seconds: float, loaders: int, recommend: bool, pid: int | None = None) -> Step:
    """Post batches of ``size`` at ``rate`` events/s (None: as fast as the loaders go) for
    ``seconds`` from ``loaders`` threads, with a recommendation client beside them; then
    wait for the stored count to reach the sent count. ``pid``: the server's process, whose
    CPU time during the step is recorded."""
    step = Step(label, rate, loaders, load=os.getloadavg()[0])
    before = Client(host, port).rows()
    stop = threading.Event()
    counter = itertools.count()
    lock = threading.Lock()
    # the bodies are encoded before the clock starts (as many as the step can send at the
    # rate, or unpaced at MAX_PRESEND events or MAX_PRESEND_POSTS posts a second); past
    # them a loader encodes its own
    per_s = rate or (MAX_PRESEND if size > 1 else MAX_PRESEND_POSTS)
    pool = events.bodies(int(per_s * seconds / size) + loaders, size, label) if loaders else []
    clients = [Client(host, port) for _ in range(loaders)]
    cpu0, server0 = time.process_time(), cpu_seconds(pid)
    t0 = time.monotonic()
    end = t0 + seconds

    path = f"/api/v1/datasets/{DATASET}/events"

    def loader(client: Client) -> None:
        while True:
            k = next(counter)
            now = time.monotonic()
            due = t0 + k * size / rate if rate else now
            if due >= end or now >= end:  # a server behind the rate sends less, not longer
                return
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            body = pool[k] if k < len(pool) else events.take(size, label)[0]
            try:
                status, _ = client.post(path, body)
            except OSError:
                status = 0
            with lock:
                step.sent += size
                if status == 200:
                    step.accepted += size
                else:
                    step.errors += 1

    threads = [threading.Thread(target=loader, args=(c,), daemon=True) for c in clients]
    rec = threading.Thread(target=_recommend_loop, args=(host, port, events.users, stop, step),
                           daemon=True)
    for t in threads:
        t.start()
    if recommend:
        rec.start()
    if not threads:  # recommendations alone: their latency without ingest
        stop.wait(seconds)
    for t in threads:
        t.join()
    step.seconds = time.monotonic() - t0
    stop.set()
    if recommend:
        rec.join()
    step.client_cpu_s = time.process_time() - cpu0
    step.server_cpu_s = cpu_seconds(pid) - server0
    for c in clients:
        c.conn.close()
    client = Client(host, port)
    try:
        step.drain_s = wait_for(lambda: client.rows() - before >= step.sent,
                                "stored count reaches the sent count", 30, 0.1)
    except RuntimeError:
        step.note = "stored < sent after 30 s"
    step.stored = client.rows() - before
    return step


def post_to_visible(host: str, port: int, events: Events, trials: int
                    ) -> tuple[list[float], list[float]]:
    """Seconds from sending a batch of 100 to (a) ``GET /api/v1/datasets/{name}`` counting it
    and (b) the Overview's Events headline, rendered again and again until it shows it."""
    poster, reader = Client(host, port), Client(host, port)
    api, overview = [], []
    for _ in range(trials):
        before = reader.rows()
        if reader.overview_events() != before:
            raise RuntimeError("the Overview's Events headline differs from the API's rows")
        body, _ = events.take(BATCH, "visible")
        t0 = time.perf_counter()
        done = threading.Thread(target=poster.post,
                                args=(f"/api/v1/datasets/{DATASET}/events", body))
        done.start()
        wait_for(lambda b=before: reader.rows() >= b + BATCH, "the posted batch is counted",
                 30, 0.005)
        api.append(time.perf_counter() - t0)
        wait_for(lambda b=before: reader.overview_events() >= b + BATCH,
                 "the Overview shows the posted batch", 60, 0.0)
        overview.append(time.perf_counter() - t0)
        done.join()
    return api, overview


def redis_ceiling(port: int, events: Events, seconds: float, stream: str) -> tuple[int, float]:
    """XADD the same events, pipelined in batches of 100, for ``seconds``: (count, seconds)."""
    import redis

    client = redis.Redis(port=port)
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        _, parts = events.take(BATCH, "xadd")
        pipe = client.pipeline(transaction=False)
        for p in parts:
            pipe.xadd(stream, {"event": p})
        pipe.execute()
        sent += BATCH
    elapsed = time.monotonic() - t0
    client.close()
    return sent, elapsed


# -- report ---------------------------------------------------------------------------------
def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


def table(steps: list[Step]) -> str:
    lines = ["| step | target ev/s | sent | stored | lost | achieved ev/s | errors | "
             "rec n | rec p50 ms | rec p95 ms | rec p99 ms | drain s | load | bench cpu | "
             "server cpu |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        target = f"{s.target:,.0f}" if s.target else "max" if s.sent else "-"
        lines.append(
            f"| {s.label} | {target} | {s.sent:,} | {s.stored:,} | {s.sent - s.stored:,} | "
            f"{s.rate:,.0f} | {s.errors} | {len(s.latencies_ms):,} | {s.pct(50):.1f} | "
            f"{s.pct(95):.1f} | {s.pct(99):.1f} | {s.drain_s:.2f} | {s.load:.1f} | "
            f"{s.client_cpu_s / s.seconds if s.seconds else 0:.0%} | "
            f"{s.server_cpu_s / s.seconds if s.seconds else 0:.0%} |"
            + (f" {s.note}" if s.note else ""))
    return "\n".join(lines)


def sustained(steps: list[Step]) -> Step | None:
    """The fastest batch step with zero loss: a paced step counts when it reached 95% of its
    target (else the load was not what it says), the unpaced one (``max``) as it went."""
    good = [s for s in steps if s.sent and s.stored == s.sent and not s.errors
            and (s.target is None or s.rate >= 0.95 * s.target)]
    return max(good, key=lambda s: s.rate) if good else None


@dataclass
class Result:
    """Everything one run measured."""

    head: str
    steps: list[Step]          # paced batch steps, then the unpaced one
    idle: Step                 # recommendations without ingest
    single: Step               # one event per post, from --single-loaders connections
    single_few: Step | None    # the same from --loaders connections (None: as many)
    visible: list[float]       # seconds from post to counted by the API
    overview: list[float]      # seconds from post to shown by the Overview's headline
    xadd: tuple[int, float]    # events, seconds
    consume: dict[str, Any]    # trailscope consume's JSON, seconds, rows the dataset grew by

    def text(self) -> str:
        rows = [self.idle, *self.steps, *([self.single_few] if self.single_few else []),
                self.single]
        return "\n\n".join([self.head, table(rows),
                             self.summary()])

    def _at_goal_rate(self) -> str:
        """The recommendation latency while ingesting at the goal's rate: the paced step of
        ``GOALS['batch_events_s']`` (the line above reads the fastest step, unpaced when it
        kept up: a saturated server)."""
        goal = GOALS["batch_events_s"]
        at = next((s for s in self.steps if s.target == goal), None)
        if at is None:
            return f"recommendation latency at the goal rate: no step paced at {goal:,} events/s"
        kept = at.sent and at.stored == at.sent and not at.errors and at.rate >= 0.95 * goal
        return (f"recommendation latency while ingesting at the goal rate (step {at.label}: "
                f"{at.rate:,.0f} events/s, {at.sent - at.stored:,} lost): p50 {at.pct(50):.1f} "
                f"ms, p95 {at.pct(95):.1f} ms, p99 {at.pct(99):.1f} ms (goal p95 < "
                f"{GOALS['rec_p95_ms']} ms at >= {goal:,} events/s: "
                f"{_ok(bool(kept) and at.pct(95) < GOALS['rec_p95_ms'])})")

    def summary(self) -> str:
        best = sustained(self.steps)
        rate = best.rate if best else 0.0
        nan = float("nan")
        p50, p95, p99 = (best.pct(50), best.pct(95), best.pct(99)) if best else (nan, nan, nan)
        single = self.single
        single_rate = single.sent / single.seconds if single.seconds else 0.0
        vis, ov = sorted(self.visible), sorted(self.overview)
        vis_med, vis_max = (vis[len(vis) // 2], vis[-1]) if vis else (nan, nan)
        ov_med, ov_max = (ov[len(ov) // 2], ov[-1]) if ov else (nan, nan)
        xadd_rate = self.xadd[0] / self.xadd[1] if self.xadd[1] else 0.0
        out = [
            f"sustained with zero loss (batches of {BATCH}): {rate:,.0f} events/s (step "
            f"{best.label if best else 'none'}; goal >= {GOALS['batch_events_s']:,}: "
            f"{_ok(rate >= GOALS['batch_events_s'])})",
            f"recommendation latency at that step: p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 "
            f"{p99:.1f} ms (goal p95 < {GOALS['rec_p95_ms']} ms: "
            f"{_ok(p95 < GOALS['rec_p95_ms'])}); without ingest: p50 "
            f"{self.idle.pct(50):.1f} ms, p95 {self.idle.pct(95):.1f} ms",
            self._at_goal_rate(),
            f"single-event posts: {single_rate:,.0f} posts/s from {single.loaders} "
            f"connections, {single.stored:,} of {single.sent:,} stored (goal >= "
            f"{GOALS['single_posts_s']}: "
            f"{_ok(single_rate >= GOALS['single_posts_s'] and single.stored == single.sent)})"
            + (f"; from {few.loaders} connections: {few.sent / few.seconds:,.0f} posts/s, "
               f"{few.stored:,} of {few.sent:,} stored"
               if (few := self.single_few) is not None and few.seconds else ""),
            f"post to visible on the Overview (its Events headline rendered): median "
            f"{ov_med:.3f} s, max {ov_max:.3f} s over {len(ov)} batches (goal < "
            f"{GOALS['visible_s']} s: {_ok(ov_max < GOALS['visible_s'])}); counted by GET "
            f"/api/v1/datasets/{DATASET}: median {vis_med:.3f} s, max {vis_max:.3f} s",
            f"ceiling, redis-server XADD of the same events (pipelined batches of {BATCH}, one "
            f"client): {xadd_rate:,.0f} events/s ({self.xadd[0]:,} in {self.xadd[1]:.1f} s); "
            f"sustained/ceiling {rate / xadd_rate if xadd_rate else nan:.2f}",
        ]
        c = self.consume
        if c:
            out.append(
                f"trailscope consume of {c['read']:,} of those entries into the served dataset "
                f"(through the API, batches of {c['batch']:,}): {c['stored']:,} stored, "
                f"{c['duplicates']:,} already stored, {c['rejected']:,} rejected in "
                f"{c['seconds']:.1f} s (process start included) = "
                f"{c['read'] / c['seconds']:,.0f} events/s; the dataset grew by {c['grew']:,}")
        return "\n".join(out)


# -- main -----------------------------------------------------------------------------------
def prepare(home: Path, events: int, log: Callable[[str], None]) -> int:
    """The base dataset and a markov model; returns the number of residents."""
    users = max(10, round(events / EVENTS_PER_USER))
    t0 = time.monotonic()
    out = json.loads(cli(home, "sample", "--users", str(users), "--name", DATASET, "--json"))
    log(f"base dataset {DATASET!r}: {out['rows_kept']:,} events of {out['users']:,} residents "
        f"({time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    trained = json.loads(cli(home, "train", DATASET, "--model", "markov", "--json"))
    log(f"markov model {trained.get('model_id')} trained ({time.monotonic() - t0:.1f} s)")
    return users


def consume_stream(home: Path, host: str, port: int, redis_port: int, stream: str,
                   count: int, batch: int) -> dict[str, Any]:
    """``trailscope consume --max-events count`` of ``stream`` into the served dataset."""
    before = Client(host, port).rows()
    t0 = time.monotonic()
    out = json.loads(cli(home, "consume", DATASET, "--from",
                         f"redis://127.0.0.1:{redis_port}/{stream}", "--max-events", str(count),
                         "--batch", str(batch), "--idle-exit", "5", "--json"))
    out["seconds"] = time.monotonic() - t0
    out["grew"] = Client(host, port).rows() - before
    out["batch"] = batch
    return out


def run(args: argparse.Namespace, log: Callable[[str], None]) -> Result:
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        load0 = os.getloadavg()
        users = prepare(home, args.events, log)
        events = Events(users)
        with server(home) as (host, port):
            pid = server_pid(port)

            def step(label: str, rate: float | None, size: int, loaders: int,
                     recommend: bool) -> Step:
                done = run_step(host, port, events, label, rate, size, args.step_seconds,
                                loaders, recommend, pid)
                log(table([done]).splitlines()[-1])
                return done

            idle = step("idle", None, BATCH, 0, True)
            steps = [step(f"r{rate}", rate, BATCH, args.loaders, True) for rate in args.rates]
            steps.append(step("max", None, BATCH, args.loaders, True))
            few = (step(f"single{args.loaders}", None, 1, args.loaders, False)
                   if args.single_loaders != args.loaders else None)
            single = step(f"single{args.single_loaders}", None, 1, args.single_loaders, False)
            visible, overview = post_to_visible(host, port, events, args.visible_trials)
            log(f"post to visible: API {', '.join(f'{v:.3f}' for v in visible)} s; Overview "
                f"{', '.join(f'{v:.3f}' for v in overview)} s")
            with redis_server(Path(tmp)) as redis_port:
                xadd = redis_ceiling(redis_port, events, args.step_seconds, "bench")
                log(f"XADD: {xadd[0]:,} events in {xadd[1]:.1f} s")
                consume = (consume_stream(home, host, port, redis_port, "bench",
                                          min(args.consume_events, xadd[0]),
                                          args.consume_batch)
                           if args.consume_events else {})
        head = (f"stream bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
                f" load average {load0[0]:.1f} at the start, "
                f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; base "
                f"{args.events:,} events, {args.step_seconds:g} s per step, {args.loaders} "
                f"loader threads, batches of {BATCH}\nload generator: one keep-alive "
                f"http.client connection per loader, request bodies encoded before each step "
                f"(clock not running); 'bench cpu' is the share of one core the bench process "
                f"itself used during the step (it shares the {os.cpu_count()} cores with the "
                f"server), 'server cpu' the server process's (100% = one core; what the "
                f"machine's other work left it)")
        return Result(head, steps, idle, single, few, visible, overview, xadd, consume)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=90_000, help="size of the base dataset")
    p.add_argument("--step-seconds", type=float, default=60.0)
    p.add_argument("--rates", type=int, nargs="+", default=[2000, 5000, 10000, 20000],
                   help="target events/s of the steps")
    p.add_argument("--loaders", type=int, default=24,
                   help="posting threads (the server commits what they queue together); each "
                        "holds one of the server's request threads (TRAILSCOPE_THREADS, 32) "
                        "until its batch commits, so as many as those starve the reads")
    p.add_argument("--single-loaders", type=int, default=64,
                   help="connections of the single-event step (more than the server's threads "
                        "queue in it, as many devices' posts would)")
    p.add_argument("--visible-trials", type=int, default=10)
    p.add_argument("--consume-events", type=int, default=20_000,
                   help="entries of the XADD stream trailscope consume stores (0: skip)")
    p.add_argument("--consume-batch", type=int, default=1000)
    p.add_argument("--out", type=Path, help="also write the report to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Result:
    args = parse_args(argv)
    # a killed bench still stops its server and redis-server (the finally blocks run)
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args, lambda msg: print(msg, file=sys.stderr, flush=True))
    finally:
        signal.signal(signal.SIGTERM, old)
    text = result.text()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
