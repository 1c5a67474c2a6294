"""`trailscope export` and `trailscope aggregate`: move a dataset to Parquet, aggregate on DuckDB or
Spark; the analysis figures (zones, forecast, drift) are in app/cli/figures.py."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_export(args: argparse.Namespace) -> None:
    from ...analytics.distributed import DAY, export_parquet
    from ...analytics.store import Store

    with Store() as store:
        out = export_parquet(store, args.name, args.path, overwrite=args.overwrite)
        rows = store.info(args.name).rows
    if out.is_dir():
        days = sum(1 for p in out.iterdir() if p.name.startswith(f"{DAY}="))
        print(f"wrote {rows:,} events of {args.name!r} to {out} in {days:,} day partitions "
              f"({DAY}=YYYY-MM-DD, UTC)")
    else:
        print(f"wrote {rows:,} events of {args.name!r} to {out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from ...analytics.distributed import run_aggregation
    from .figures import FIGURES, cmd_figure

    if args.what in FIGURES:
        cmd_figure(args)
        return
    from ...analytics.store import Store

    store = Store() if args.engine == "duckdb" else None
    try:
        df = run_aggregation(args.what, args.source, engine_name=args.engine,
                             master=args.master, freq=args.freq, store=store)
    finally:
        if store is not None:
            store.close()
    if args.out:
        if args.out.endswith(".parquet"):
            df.to_parquet(args.out, index=False)
        else:
            df.to_csv(args.out, index=False)
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    elif args.json:
        print(json.dumps(json.loads(df.to_json(orient="records", date_format="iso"))))
    else:
        print(df.to_string(index=False, max_rows=60))


def add_engine_parsers(sub: argparse._SubParsersAction) -> None:
    from ...analytics.distributed import AGGREGATIONS
    from .figures import FIGURES

    s = sub.add_parser("export", help="write a dataset to Parquet (for Spark or other tools): "
                       "a folder of day partitions, or one file")
    s.add_argument("name")
    s.add_argument("path", metavar="DIR", help="a folder: Hive-style day partitions "
                   "DIR/day=YYYY-MM-DD/*.parquet (UTC dates); a name ending in .parquet: one file")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing file or a non-empty folder")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("aggregate", help="run a heavy aggregation on DuckDB or Spark, or print "
                       "an analysis figure (zones, forecast, drift) of a dataset",
                       epilog="figures: " + "; ".join(f"{k}: {v}" for k, v in FIGURES.items()))
    s.add_argument("what", choices=sorted(AGGREGATIONS) + sorted(FIGURES))
    s.add_argument("source", help="dataset name, or Parquet file/folder/glob (any URL Spark reads)")
    s.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    s.add_argument("--master", help="Spark master URL, e.g. spark://host:7077 (default local[2])")
    s.add_argument("--freq", default="day", help="hour, day, week or month")
    s.add_argument("--out", help="write the result to .csv or .parquet instead of printing")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_aggregate)
