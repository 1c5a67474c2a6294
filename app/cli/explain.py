"""``trailscope explain NAME USER [--item ITEM] [--model ID] [--json] [--report PATH]``.

Explains why a trained model recommends an item (default: the top recommendation) to a
user. ``--json`` prints one object: user, item, model, score, delta, events (item_id, ts,
attribution), groups (item, time, distance, category) and summary. ``--report`` also writes
an HTML or PDF report (by suffix). app/cli/main.py wires it in with ``add_explain_parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def cmd_explain(args: argparse.Namespace) -> None:
    """Run the command; errors surface as ValueError/KeyError/RuntimeError for app/cli/main.py."""
    from ...analytics.store import Store
    from ...models.explain.user import explain_user

    if args.report and not str(args.report).lower().endswith((".html", ".pdf")):
        raise ValueError(f"--report {args.report!r}: the path must end in .html or .pdf")
    if args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    with Store() as store:
        ex = explain_user(store, args.name, args.user, args.item, args.model,
                          n_steps=args.steps)
        written = None
        if args.report:
            from ..reports import report

            written = report.export(store, args.name, args.user, args.report,
                                    explanation=ex)
    if args.json:
        print(json.dumps(ex.to_json(), default=str, ensure_ascii=False))
    else:
        _print_text(ex)
    if written is not None:
        print(f"report written to {written}", file=sys.stderr if args.json else sys.stdout)


def _print_text(ex: Any) -> None:
    print(f"why {ex.item_id} for user {ex.user} ({ex.model}, {ex.model_id}):")
    print(f"  {ex.summary}")
    print(f"  score {ex.score:.4f}, baseline {ex.baseline_score:.4f}, delta {ex.delta:.2e} "
          f"({ex.method}{f', {ex.n_steps} steps' if ex.n_steps else ''})")
    print("  groups: " + ", ".join(f"{g} {v:+.4f}" for g, v in ex.groups.items()))
    top = ex.events.sort_values("attribution", key=abs, ascending=False).head(5)
    for r in top.itertuples(index=False):
        print(f"  {str(r.ts)[:16]}  {r.item_id:20} {r.attribution:+.4f}")


def add_explain_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``explain`` sub-command to ``trailscope``'s sub-parsers."""
    s = subparsers.add_parser("explain", help="why a model recommends an item to a user")
    s.add_argument("name", help="dataset name")
    s.add_argument("user", help="user id")
    s.add_argument("--item", default=None, help="item id to explain (default: the top "
                   "recommendation)")
    s.add_argument("--model", default=None, help="model id (default: the dataset's best)")
    s.add_argument("--steps", type=int, default=32, help="integration steps (default 32)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--report", default=None, metavar="PATH.html|PATH.pdf",
                   help="also write a report (HTML or PDF, by suffix)")
    s.set_defaults(func=cmd_explain)
    return s
