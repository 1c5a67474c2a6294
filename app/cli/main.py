"""The ``trailscope`` command line. Heavy imports (torch, dash) happen inside the commands.

Every command exits non-zero on failure with a one-line reason on stderr; ``--json`` prints
exactly one JSON object (or list) on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..services.messages import public_message


class CliError(Exception):
    """A failure to report as one line on stderr."""


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, ensure_ascii=False))


def _store():
    from ...analytics.store import Store, StoreError

    try:
        return Store()
    except StoreError:
        server = _server()  # the file is held: say by whom, when it is this workspace's server
        if server is not None:
            raise CliError(f"a TrailScope server at {server.url} holds this workspace, and this "
                           f"command reads the file itself: ask the server's API "
                           f"({server.url}/api/v1/openapi.json lists it), or stop the server"
                           ) from None
        raise


def _parse_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    from ...analytics import schema

    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise CliError(f"--map takes FIELD=COLUMN, got {pair!r}")
        if field not in schema.COLUMNS:
            raise CliError(f"--map: unknown field {field!r}; "
                           f"fields are {', '.join(schema.COLUMNS)}")
        mapping[field] = column
    return mapping


def _server() -> Any:
    """The running server that holds the workspace (app/cli/remote.py), or None: writing
    commands hand their work to it, as DuckDB admits one writing process per file."""
    from .remote import find_server

    return find_server()


# -- data -------------------------------------------------------------------------------
def _build_summaries(store: Any, name: str, skip: bool) -> float | None:
    """Build the dataset's dashboard summary tables (``analytics.rollup``) now, so the first
    page view does not pay for them; seconds taken, or None when skipped or not possible."""
    if skip:
        return None
    from ...analytics.rollups import build

    return build.after_import(store, name)


def _prefit(name: str, summaries_s: float | None) -> float | None:
    """Fit the Overview's forecast and periodicity once the summaries are built, as the
    dashboard's import job does (``imports.prefit``), so the first view reads them; the
    seconds taken, or None when not fitted."""
    if summaries_s is None:
        return None
    from ..services import imports, workspace

    try:
        return imports.prefit(name)
    finally:
        workspace.close_store()


def _print_summaries(seconds: float | None, skip: bool, prefit_s: float | None = None) -> None:
    if seconds is not None:
        print(f"dashboard summaries built in {seconds:.1f} s")
    elif not skip:
        print("dashboard summaries not built now (the dashboard builds them on first use)")
    if prefit_s is not None:
        print(f"Overview forecast fitted in {prefit_s:.1f} s")


def cmd_import(args: argparse.Namespace) -> None:
    from ...analytics.ingest.pipeline import import_file
    from ...analytics.ingest.types import FLAG_TEXT, REASON_TEXT

    server = _server()
    if server is not None:
        from .remote import run_import

        data = run_import(server, args, _parse_map(args.map))
        summaries_s, prefit_s = data.get("summaries_s"), data.get("prefit_s")
    else:
        with _store() as store:
            report = import_file(store, args.path, name=args.name, fmt=args.format,
                                 mapping=_parse_map(args.map), replace=args.replace,
                                 keep_duplicates=args.keep_duplicates)
            data = report.to_json()
            summaries_s = _build_summaries(store, data["name"], args.no_summaries)
        prefit_s = _prefit(data["name"], summaries_s)  # on the services' store: this one closed
    if args.json:
        _print_json({**data, "summaries_s": summaries_s, "prefit_s": prefit_s})
        return
    extra = data.get("extra") or {}
    if "stay_points" in extra:  # GPS fixes become stay-point events at clustered places
        print(f"{extra.get('fixes_kept', data['rows_read']):,} GPS fixes grouped into "
              f"{extra['stay_points']:,} stay points at {extra.get('places', 0):,} places")
    print(f"imported {data['name']!r} ({data.get('format', args.format)}): "
          f"{data['rows_kept']:,} of {data['rows_read']:,} rows kept, "
          f"{data['users']:,} users, {data['items']:,} items, "
          f"{data['time_min']} .. {data['time_max']}")
    for reason, count in sorted(data["rejected_by_reason"].items()):
        lines = data.get("examples", {}).get(reason, [])
        where = f" (e.g. lines {', '.join(map(str, lines))})" if lines else ""
        print(f"  rejected {count:,} rows: {REASON_TEXT.get(reason, reason)}{where}")
    for flag, count in sorted((data.get("flags") or {}).items()):
        if count and flag in FLAG_TEXT:  # location_dropped: the report's notes say it
            print(f"  kept {count:,} {FLAG_TEXT[flag]} (check them)")
    if isinstance(extra.get("local_time"), dict):
        from ...analytics.spacetime import clock_text

        print(f"  times: {clock_text(extra, 0, None)[1]}")
    for line in data.get("notes") or []:
        print(f"  note: {line}")
    for line in data.get("warnings") or []:
        print(f"  warning: {line}")
    _print_summaries(summaries_s, args.no_summaries, prefit_s)


def cmd_datasets(args: argparse.Namespace) -> None:
    server = _server()
    if server is not None:
        from .remote import datasets

        df = datasets(server)
    else:
        with _store() as store:
            df = store.list_datasets()
    if args.json:
        _print_json(json.loads(df.to_json(orient="records", date_format="iso")))
        return
    if df.empty:
        print("no datasets yet: `trailscope sample` or `trailscope import PATH`")
        return
    for r in df.itertuples(index=False):
        print(f"{r.name:24} {r.format:10} {r.rows:>12,} rows {r.users:>9,} users "
              f"{r.items:>9,} items  {r.time_min} .. {r.time_max}")


def cmd_drop(args: argparse.Namespace) -> None:
    server = _server()
    if server is not None:
        from .remote import drop

        name = drop(server, args.name)
    else:
        with _store() as store:
            name = store.drop(args.name)  # names are stripped and compared ignoring case
    print(f"dropped {name!r}")


def cmd_sample(args: argparse.Namespace) -> None:
    from ...analytics.sample.generate import import_sample

    server = _server()
    if server is not None:
        from .remote import run_sample

        report = run_sample(server, args)
        summaries_s, prefit_s = report.get("summaries_s"), report.get("prefit_s")
    else:
        with _store() as store:
            info = import_sample(store, name=args.name, users=args.users, seed=args.seed,
                                 replace=args.replace)
            summaries_s = _build_summaries(store, args.name, args.no_summaries)
        report = info.report
        prefit_s = _prefit(args.name, summaries_s)
    if args.json:
        _print_json({**report, "summaries_s": summaries_s, "prefit_s": prefit_s})
    else:
        print(f"generated and imported {args.name!r}: {report['rows_kept']:,} events, "
              f"{report['users']:,} users, {report['items']:,} places")
        _print_summaries(summaries_s, args.no_summaries, prefit_s)


def cmd_serve(args: argparse.Namespace) -> None:
    from ..main import serve

    if args.update_every:  # online model updates on a schedule (services.models.Updater)
        from ..services.models import parse_interval, start_updates

        start_updates(parse_interval(args.update_every, "--update-every"))
    serve(host=args.host, port=args.port, dataset=args.dataset, debug=args.debug)


# -- models -----------------------------------------------------------------------------
def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` model settings; true/false, integers and decimals are converted."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set hidden=128")
        value: Any = raw.strip()
        if value.lower() in ("true", "false"):
            value = value.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(value)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


def cmd_train(args: argparse.Namespace) -> None:
    from ...models import api
    from ...models.training.settings import TrainEvent, resolve
    from .remote import ProgressLine, train_line

    line = ProgressLine()

    def progress(p: TrainEvent) -> None:
        if not args.json:
            line.show(train_line(p.to_dict()))

    if args.continue_:
        return _continue(args)
    if args.since or args.from_id:
        raise CliError("--since and --from go with --continue (an online update)")
    # training settings and model settings in one mapping; typos fail before the store opens
    values: dict[str, Any] = {"split": args.split or "leave-last", "device": args.device}
    if args.epochs is not None:
        values["epochs"] = args.epochs
    if args.text:
        values["text_embeddings"] = args.text
    values.update(parse_settings(args.set))
    settings, config = resolve(args.model, values)
    several = args.nproc > 1 or args.nnodes > 1  # DistributedDataParallel through torchrun
    server = _server()
    if server is not None and several:
        raise CliError("a running dashboard holds the workspace: train in several processes "
                       "from its Models page (processes), or stop the dashboard first")
    if server is not None:
        from .remote import run_train

        result = run_train(server, args, values, settings)
    elif several:
        from ...models.training.distributed import train_distributed

        with _store() as store:
            result = train_distributed(
                store, args.name, args.model, settings, config, nproc=args.nproc,
                nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
                master_port=args.master_port, progress=progress, log=line.log)
    else:
        with _store() as store:
            # stdout carries only the result (one JSON object with --json); the log: stderr
            result = api.train(store, args.name, args.model, settings, config,
                               progress=progress, log=line.log)
    line.end()
    out = result.to_json() if hasattr(result, "to_json") else dict(result)
    if args.json:
        _print_json(out)
    elif out.get("model_id") is None:  # another machine than node 0: node 0 saved the model
        print((out.get("messages") or ["nothing saved"])[-1])
    else:
        m = out.get("metrics", {})
        print(f"trained {out.get('model_id')}: ndcg@10 {m.get('ndcg@10', float('nan')):.4f} "
              f"hr@10 {m.get('hr@10', float('nan')):.4f} mrr {m.get('mrr', float('nan')):.4f}")


def _continue(args: argparse.Namespace) -> None:
    """``train --continue``: an online update of the model's latest checkpoint (or --from)."""
    from ...models import api

    for flag, given in (("--split", args.split), ("--text", args.text)):
        if given:
            raise CliError(f"{flag} cannot change with --continue: an update keeps its parent's "
                           "split, data settings and model settings")
    values = parse_settings(args.set)
    if args.epochs is not None:
        values["epochs"] = args.epochs
    server = _server()
    if server is not None:  # the server holds the workspace: it runs the update as a job
        from . import remote

        out = remote.update(server, args.name, args.model, {**values, "device": args.device},
                            args.since, args.from_id,
                            on_update=remote.printer(args.json, train=True))
    else:
        with _store() as store:
            out = api.update(store, args.name, args.model, from_id=args.from_id,
                             since=args.since, device=args.device,
                             log=lambda msg: print(msg, file=sys.stderr), **values).to_json()
    if args.json:
        _print_json(out)
    elif out["kept_new"]:
        print(f"updated {out['parent']} -> {out['model_id']}: validation ndcg@10 "
              f"{out['valid_new']:.4f} (parent {out['valid_parent']:.4f}), test ndcg@10 "
              f"{out['metrics'].get('ndcg@10', float('nan')):.4f}")
    else:
        print(f"kept {out['parent']}: the update's validation ndcg@10 {out['valid_new']:.4f} "
              f"is below the parent's {out['valid_parent']:.4f}; nothing saved")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from ...models import api

    with _store() as store:
        rows = api.evaluate(store, args.name, model_id=args.model)
    for row in rows:
        if args.json:
            _print_json(row)
        else:
            print(f"{row['model_id']:40} {row['split']:11} hr@10 {row['hr@10']:.4f} "
                  f"ndcg@10 {row['ndcg@10']:.4f} mrr {row['mrr']:.4f}")
            chosen = row.get("chosen") or {}
            if chosen:  # the settings the model chose on the validation split
                print("  chosen on validation: " + ", ".join(f"{k} {v}"
                                                          for k, v in chosen.items()))


def cmd_recommend(args: argparse.Namespace) -> None:
    from ...models import api

    server = _server()
    if server is not None:
        from .remote import recommend

        out = recommend(server, args.name, args.user, k=args.k, model=args.model, at=args.at,
                        lat=args.lat, lon=args.lon)
    else:
        with _store() as store:
            out = api.recommend(store, args.name, args.user, k=args.k, model_id=args.model,
                                at=args.at, lat=args.lat, lon=args.lon)
    if args.json:
        _print_json(out)
        return
    print(f"top {args.k} for user {out['user']} ({out['model']}):")
    for rank, it in enumerate(out["items"], 1):
        print(f"{rank:3}. {it['item_id']:20} {it['score']:10.4f}  {it.get('category') or ''}")


# -- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trailscope", description=(
        "Spatio-temporal user-behaviour analytics and next-item recommendation."))
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("import", help="import an event log into the workspace")
    s.add_argument("path")
    s.add_argument("--name")
    s.add_argument("--format", default="auto",
                   help="auto, gowalla, tsmc, snap, taobao, tianchi, movielens, geolife or generic")
    s.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="map a canonical field to a source column (repeatable)")
    s.add_argument("--replace", action="store_true", help="overwrite a dataset of that name")
    s.add_argument("--keep-duplicates", action="store_true",
                   help="keep exact repeats of an earlier row")
    s.add_argument("--no-summaries", action="store_true",
                   help="skip building the dashboard's summary tables now (built on first use)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("datasets", help="list imported datasets")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_datasets)

    s = sub.add_parser("drop", help="delete a dataset")
    s.add_argument("name")
    s.set_defaults(func=cmd_drop)

    s = sub.add_parser("sample", help="generate and import the built-in sample city")
    s.add_argument("--users", type=int, default=500)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--name", default="sample")
    s.add_argument("--replace", action="store_true")
    s.add_argument("--no-summaries", action="store_true",
                   help="skip building the dashboard's summary tables now (built on first use)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("serve", help="start the dashboard")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8050)
    s.add_argument("--dataset", help="dataset selected when a page opens without ?dataset=")
    s.add_argument("--debug", action="store_true",
                   help="Flask's development server with Dash dev tools (default: waitress)")
    s.add_argument("--update-every", metavar="INTERVAL",
                   help="update each dataset's default model on the events that arrived since, "
                        "every INTERVAL (e.g. 15m, 1h, 900s)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("train", help="train a next-item model on a dataset")
    s.add_argument("name")
    s.add_argument("--model", default="st-transformer")
    s.add_argument("--split", choices=["leave-last", "temporal", "trajectory"],
                   help="how the events are split (default leave-last)")
    s.add_argument("--epochs", type=int)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--text", metavar="category|PATH.npy",
                   help="st-transformer: fuse sentence-encoder embeddings of each item's "
                        "category name, or of your own (n_items + 1, d) array")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model or training setting (repeatable), e.g. --set hidden=128 "
                        "--set blend=false --set lr=0.001")
    s.add_argument("--nproc", type=int, default=1,
                   help="training processes on this machine (PyTorch DDP through torchrun: gloo "
                        "on the CPU, one GPU each with NCCL); batch_size must divide by all")
    s.add_argument("--nnodes", type=int, default=1, help="machines in a --nproc run")
    s.add_argument("--node-rank", type=int, default=0, help="this machine's rank (0: saves)")
    s.add_argument("--master-addr", help="address of node 0 (several machines)")
    s.add_argument("--master-port", type=int, help="port on node 0 (default 29500)")
    s.add_argument("--continue", dest="continue_", action="store_true",
                   help="online update: warm-start the model's latest checkpoint and train on "
                        "the events since; the new weights are kept only if validation "
                        "NDCG@10 does not drop")
    s.add_argument("--since", metavar="TIME",
                   help="with --continue: train on the events from TIME (ISO 8601, UTC; "
                        "default: the parent's last event)")
    s.add_argument("--from", dest="from_id", metavar="MODEL_ID",
                   help="with --continue: the checkpoint to continue (default: the latest)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="metrics of trained models")
    s.add_argument("name")
    s.add_argument("--model", default="all", help="a model id or 'all'")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("recommend", help="top-K next items for a user")
    s.add_argument("name")
    s.add_argument("user")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--model", help="model id (default: best trained)")
    s.add_argument("--at", help="time of the next event (ISO 8601)")
    s.add_argument("--lat", type=float)
    s.add_argument("--lon", type=float)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_recommend)

    from .consume import add_consume_parser
    from .engine import add_engine_parsers
    from .explain import add_explain_parser

    add_engine_parsers(sub)
    add_explain_parser(sub)
    add_consume_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except KeyboardInterrupt:
        print("trailscope: interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, KeyError, RuntimeError, OSError, LookupError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = public_message(msg)  # no absolute server paths (app/services/messages.py)
        print(f"trailscope {args.command}: {msg}", file=sys.stderr)
        return 1
    return 0

