"""Explanation benchmark on Foursquare NYC: time per explanation and deletion faithfulness.

    .venv/bin/python -m bench.explain_bench [--epochs 20] [--users 200] [--home DIR]
        [--device cuda]
    .venv/bin/python -m bench.explain_bench --browser [--rounds 3] [--home DIR] [--out FILE]

1. Imports NYC into a workspace (``--home``, default a new folder under bench/out) and trains
   an st-transformer (max_len 50) unless that workspace already holds one (reused). 20
   epochs by default: after 3 the blend chosen on validation keeps only the count parts,
   whose attributions say nothing of the network (the bench prints the blend).
2. Time: Layer Integrated Gradients with exactly 32 steps at L = 50 for ``--time-users``
   users (goal: under 1 s each on CPU), and the full ``explain`` (IG with the adaptive
   delta check, attention, deletion test). Also the convergence delta relative to
   f(x) - f(baseline) at 32 steps.
3. Faithfulness: for ``--users`` users, delete the top-k events by IG, by last-layer
   attention and k random events (mean of 8 draws); report the mean rank drop of each
   method's top recommendation (baseline: random).

``--browser``: instead, what a user waits in the Explain page (goals: the first explanation
of a fresh server under 3 s, later ones under 1 s). Each of ``--rounds`` rounds starts a
dashboard on the workspace (its default model), opens the page in headless Chromium, explains
the second recommendation of the most active user, picks the second most active user and
explains theirs (tests/browser/test_explain_times.py drives the page), and reports the page's
own figure (from the click to the drawn figures and map, browser clock) and the computing
part; ``--out`` also writes the lines to a file. ``--compare-preload``: every round runs the
page twice, as served and with the page's hidden preload graph (app/views/explain.py
``preload``) taken out of the layout the browser receives (both through the same request
interception), alternating which goes first, and prints the ratio without / with.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from trailscope.analytics.schema import USER
from trailscope.analytics.store import Store

OUT = Path(__file__).resolve().parent / "out"


def _workspace(home: Path, epochs: int, log, device: str = "cpu") -> tuple[Store, str]:
    from trailscope.models.api import train
    from trailscope.models.training import checkpoint as ckpt

    from bench.datasets import NYC
    from tests.models.realdata import load

    store = Store(home / "trailscope.duckdb")
    if not store.exists("nyc"):
        t0 = time.perf_counter()
        load(store, NYC, "nyc")
        log(f"imported NYC in {time.perf_counter() - t0:.1f} s")
    fp = store.fingerprint("nyc")
    done = [i for i in ckpt.list_checkpoints(store, "nyc")
            if i["model"] == "st-transformer" and i.get("fingerprint") == fp]
    if done:
        log(f"reusing {done[0]['model_id']}")
        return store, done[0]["model_id"]
    t0 = time.perf_counter()
    res = train(store, "nyc", model="st-transformer", epochs=epochs, max_len=50,
                pretrain_epochs=0, log=lambda m: None, device=device)
    log(f"trained st-transformer for {epochs} epochs on {device} in "
        f"{time.perf_counter() - t0:.0f} s: "
        f"test ndcg@10 {res.metrics['test'].get('ndcg@10'):.4f}")
    return store, res.model_id


def _is_preload(node: object) -> bool:
    """The Explain page's hidden preload: an aria-hidden Div holding a static dcc.Graph."""
    if not isinstance(node, dict) or node.get("type") != "Div":
        return False
    props = node.get("props") or {}
    kids = props.get("children")
    kids = kids if isinstance(kids, list) else [kids]
    return props.get("aria-hidden") == "true" and any(
        isinstance(k, dict) and k.get("type") == "Graph" for k in kids)


def _strip_preload(node: object) -> tuple[object, int]:
    """``node`` (a Dash response, JSON) without preload Divs, and how many were removed."""
    if isinstance(node, list):
        kept = [_strip_preload(k) for k in node if not _is_preload(k)]
        return [k for k, _ in kept], len(node) - len(kept) + sum(n for _, n in kept)
    if isinstance(node, dict):
        out, removed = {}, 0
        for key, value in node.items():
            out[key], n = _strip_preload(value)
            removed += n
        return out, removed
    return node, 0


def _intercept(page, strip: bool, removed: list[int]) -> None:
    """Route the page's callback responses through the test (both variants alike); ``strip``:
    without the preload graph."""
    from bench.browser_bench import edit_callbacks

    def without_preload(data: object) -> object:
        data, n = _strip_preload(data)
        removed.append(n)
        return data

    edit_callbacks(page, without_preload if strip else None, b"aria-hidden")


def browser_times(home: Path, rounds: int, log, compare_preload: bool = False) -> None:
    """The ``--browser`` mode (see the module doc)."""
    import os

    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve
    from tests.browser.test_explain_times import first_and_second

    store = Store(home / "trailscope.duckdb", read_only=True)
    users = store.query_df(f"SELECT {USER} AS u, count(*) AS n FROM {store.table('nyc')} "
                           "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 2")["u"].astype(str).tolist()
    store.close()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    log(f"Explain page, NYC ({home}), users {users}, server OMP_NUM_THREADS={threads}, "
        f"load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        for r in range(rounds):
            variants = ["as served"]
            if compare_preload:  # alternate which goes first
                variants = ["with preload", "without preload"][::1 if r % 2 == 0 else -1]
            for variant in variants:
                removed: list[int] = []
                with serve(home, {"OMP_NUM_THREADS": threads}) as url:
                    page = browser.new_page(viewport={"width": 1360, "height": 900})
                    page.set_default_timeout(300_000)
                    if compare_preload:
                        _intercept(page, variant == "without preload", removed)
                    errors = []
                    page.on("console", lambda m, e=errors: e.append(m.text)
                            if m.type == "error" else None)
                    times = first_and_second(page, url, "nyc", users)
                    page.close()
                if variant == "without preload" and sum(removed) != 1:
                    raise SystemExit(f"the preload graph was not found once in the page "
                                     f"(removed {sum(removed)})")
                for n, t in enumerate(times, 1):
                    rows.append((variant, n, t))
                    log(f"  round {r + 1}, {variant}, explanation {n} (user {users[n - 1]}, "
                        f"item {t['item']}): {t['page_s']:.2f} s in the page (test clock "
                        f"{t['clock_s']:.2f} s), {t['server_s']:.2f} s on the server, "
                        f"{t['compute_s']:.2f} s computing; console errors: {len(errors)}; "
                        f"load {os.getloadavg()[0]:.1f}")
        browser.close()
    medians = {}
    for variant in dict.fromkeys(v for v, _, _ in rows):
        for n, goal in ((1, 3.0), (2, 1.0)):
            v = np.asarray([t["page_s"] for w, k, t in rows if k == n and w == variant])
            medians[variant, n] = float(np.median(v))
            log(f"{variant}, explanation {n}: median {np.median(v):.2f} s, max {v.max():.2f} s "
                f"over {len(v)} rounds (goal < {goal:.0f} s)")
    if compare_preload:
        for n in (1, 2):
            log(f"explanation {n}: without / with the preload graph (baseline: with) = "
                f"{medians['without preload', n] / medians['with preload', n]:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--time-users", type=int, default=30)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--home", type=Path, default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="train, explain and time on this device (not --browser: the "
                        "dashboard serves its models on the CPU)")
    p.add_argument("--browser", action="store_true",
                   help="time the Explain page in Chromium instead (see the module doc)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="--browser: also write here")
    p.add_argument("--compare-preload", action="store_true",
                   help="--browser: time the page with and without its hidden preload graph")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from trailscope.models.data.history import history_batch
    from trailscope.models.explain.attention import attention_frame, attention_importance
    from trailscope.models.explain.attribution import explain, integrated_gradients
    from trailscope.models.explain.deletion import deletion_test, faithfulness
    from trailscope.models.training import checkpoint as ckpt

    OUT.mkdir(exist_ok=True)
    home = a.home or Path(tempfile.mkdtemp(prefix="explain-home-", dir=OUT))
    home.mkdir(parents=True, exist_ok=True)
    print(f"workspace {home}; torch threads {torch.get_num_threads()}")
    store, model_id = _workspace(home, a.epochs, print, a.device)
    if a.browser:
        store.close()
        lines: list[str] = []

        def log(line: str) -> None:
            print(line, flush=True)
            lines.append(line)

        browser_times(home, a.rounds, log, a.compare_preload)
        if a.out:
            a.out.write_text("\n".join(lines) + "\n")
        return
    loaded = ckpt.load(ckpt.find(store, "nyc", model_id), store, device=a.device)
    model, meta = loaded.model, loaded.meta
    if a.device == "cuda":
        print(f"explaining on {torch.cuda.get_device_name(0)} (torch {torch.__version__})")
    blend = model.chosen_settings().get("blend") or {}
    if blend:
        print("the model's blend, chosen on validation: " + ", ".join(
            f"{part} {w:.3g}" for part, w in blend.items()))
        if not blend.get("encoder"):
            print("  NOTE: the blend dropped the network (encoder weight 0), so the "
                  "attributions and their time are of the count parts alone; a model "
                  "trained longer (--epochs 20) keeps the network")
    users = [str(u) for u in store.query_df(
        f"SELECT DISTINCT {USER} AS u FROM {store.table('nyc')} ORDER BY 1")["u"]]
    users = [u for u in users if u in set(meta.extra["user_ids"])][: a.users]
    events = store.events("nyc")
    by_user = dict(tuple(events.groupby(USER, sort=False)))

    ig_times, full_times, rel_delta, lens, rows = [], [], [], [], []
    for i, u in enumerate(users):
        hist = history_batch(by_user[u], meta, u)
        batch = hist.batch.to(a.device)
        exclude = hist.items if meta.extra.get("exclude_seen") else None
        with torch.no_grad():
            s = model.score(batch)[0].float()
        s[0] = float("-inf")
        if exclude is not None:
            s[torch.from_numpy(exclude).to(s.device)] = float("-inf")
        item = int(s.argmax())
        if i < a.time_users:
            t0 = time.perf_counter()
            ig = integrated_gradients(model, batch, item, n_steps=32, max_steps=32)
            ig_times.append(time.perf_counter() - t0)
            diff = abs(ig.score - ig.baseline_score)
            rel_delta.append(abs(ig.delta) / diff if diff > 0 else 0.0)
            lens.append(int(batch.len[0]))
            t0 = time.perf_counter()
            explain(model, meta, batch, item, exclude=exclude, deletion_k=a.k)
            full_times.append(time.perf_counter() - t0)
        ig = integrated_gradients(model, batch, item, n_steps=32)
        importance = sum(ig.per_group.values())
        att = attention_importance(attention_frame(model, batch), len(importance))
        if len(importance) > a.k:
            rows.append(deletion_test(model, batch, item, importance, k=a.k, n_random=8,
                                      exclude=exclude, seed=i, attention=att))
    t = np.asarray(ig_times)
    print(f"\nIG, 32 steps, st-transformer (hidden {model.config.hidden}, L = {meta.max_len}, "
          f"{meta.n_items} items), {len(t)} users, history length median "
          f"{int(np.median(lens))}:")
    print(f"  seconds per explanation: median {np.median(t):.3f}, p90 "
          f"{np.quantile(t, 0.9):.3f}, max {t.max():.3f} (goal < 1 s)")
    print(f"  |delta| / |f(x) - f(baseline)| at 32 steps: median {np.median(rel_delta):.4f}, "
          f"p90 {np.quantile(rel_delta, 0.9):.4f}")
    f = np.asarray(full_times)
    print(f"  full explain (adaptive steps, attention, deletion test): median "
          f"{np.median(f):.3f} s, p90 {np.quantile(f, 0.9):.3f} s")
    print(f"\nDeletion faithfulness, top-{a.k} events removed, {len(rows)} users "
          "(rank drop of the top recommendation; higher = more faithful):")
    print(faithfulness(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    store.close()


if __name__ == "__main__":
    main()
