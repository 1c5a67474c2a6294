"""``trailscope aggregate zones|forecast|drift NAME``: the dashboard's analysis figures,
computed by the same services the pages use (same defaults, same cache rules), printed as one
JSON object with ``--json`` or as a short text summary.

The heavy-aggregation kinds of ``aggregate`` (trend, rhythm, cohorts, ...) run on DuckDB or
Spark (app/cli/engine.py); these three need the workspace's dataset and run on its embedded
DuckDB only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: aggregate kind -> what it prints (for --help).
FIGURES: dict[str, str] = {
    "zones": "zones at the Map page's default settings: events, users, places, extent, trend",
    "forecast": "the Overview forecast with its backtest metrics and the partial periods left out",
    "drift": "per-user interest drift and the basis used (categories or zones)",
}


def figure(what: str, name: str, freq: str) -> dict[str, Any]:
    """The JSON-safe dict of figure ``what`` for dataset ``name``."""
    from ..services import workspace

    if what not in FIGURES:
        raise ValueError(f"unknown figure {what!r}; choose from {', '.join(FIGURES)}")
    dataset = name if workspace.get_store().exists(name) else None
    if dataset is None:
        workspace.close_store()
        raise ValueError(f"no dataset named {name!r} in this workspace "
                         "(`trailscope datasets` lists them)")
    try:
        if what == "zones":
            from ..services import maps

            return maps.zones_summary(dataset)
        if what == "forecast":
            from ..services import analytics

            return analytics.forecast_summary(dataset, freq=freq)
        from ..services import users

        return users.drift_summary(dataset)
    finally:
        workspace.close_store()


def cmd_figure(args: argparse.Namespace) -> None:
    """Print figure ``args.what`` of dataset ``args.source``."""
    if args.engine != "duckdb":
        raise ValueError(f"aggregate {args.what} runs on the workspace's DuckDB only "
                         "(drop --engine spark)")
    if args.out:
        raise ValueError(f"aggregate {args.what}: --out is for table aggregations; "
                         "use --json and redirect the output")
    data = figure(args.what, args.source, args.freq)
    if args.json:
        print(json.dumps(data, default=str, ensure_ascii=False))
        return
    print(_text(args.what, data))


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _text(what: str, data: dict[str, Any]) -> str:
    if what == "zones":
        zones = data.get("zones") or []
        share = _fmt(data.get("coverage"), ".1%")
        lines = [f"{len(zones)} zones covering {share} of the located events"]
        lines += [f"  {z.get('zone')!s:>4}  {str(z.get('name') or '')[:36]:36} "
                  f"{z.get('events'):>8} events {z.get('users'):>6} users "
                  f"{z.get('places'):>5} places {_fmt(z.get('extent_km'), '.2f')} km  "
                  f"{z.get('trend') or ''}" for z in zones[:40]]
        if len(zones) > 40:
            lines.append(f"  ... {len(zones) - 40} more (use --json for all)")
        return "\n".join(lines)
    if what == "forecast":
        from ...analytics.temporal.periods import label

        bt = data.get("backtest") or {}
        partial = data.get("partial_periods") or []
        mape = (f"MAPE {bt['mape']:.1f}%" if bt.get("mape") is not None
                else bt.get("mape_note") or "MAPE not shown")
        lines = [f"{data.get('model')} forecast, {len(data.get('forecast') or [])} "
                 f"{data.get('freq')} periods ahead",
                 f"  backtest: MASE {_fmt(bt.get('mase'))}, sMAPE {_fmt(bt.get('smape'), '.1f')}%; "
                 + mape]
        lines += [f"  left out as partial: {label(p.get('period'), data.get('freq'))} "
                  f"({_fmt(p.get('coverage'), '.0%')} covered)" for p in partial]
        return "\n".join(lines)
    users = {str(u.get("user")): u for u in data.get("users") or []}
    listed = [users[str(u)] for u in data.get("most_changed") or [] if str(u) in users]
    lines = [f"drift by {data.get('basis')}, per {data.get('freq')}: "
             f"{data.get('basis_note', '')}",
             f"{len(users)} users with drift (windows of at least "
             f"{data.get('min_events_per_window')} events); most changed, over at least "
             f"{data.get('min_pairs')} window pairs:"]
    lines += [f"  {str(u.get('user'))[:20]:20} drift {_fmt(u.get('drift'))} "
              f"(raw {_fmt(u.get('raw_drift'))}; {u.get('windows')} windows, {u.get('pairs')} "
              f"pairs, {u.get('events')} events; gained {u.get('gained')}, lost {u.get('lost')})"
              for u in listed]
    return "\n".join(lines)
