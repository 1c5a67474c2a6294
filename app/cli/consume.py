"""``trailscope consume NAME --from redis://HOST:PORT/STREAM``: store a stream's events.

Progress goes to stderr one line at a time (a long-running command's log); the summary to
stdout (one JSON object with ``--json``). SIGINT and SIGTERM stop it after the current batch.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..streams import consumer
from ..streams.redis_source import RedisSource

#: Seconds between two progress lines.
PROGRESS_EVERY_S = 2.0


def _line(counts: consumer.Counts, label: str) -> str:
    return (f"{label}: {counts.read:,} read, {counts.stored:,} stored, "
            f"{counts.duplicates:,} already stored, {counts.rejected:,} rejected")


def _open_sink(name: str) -> tuple[Any, Callable[[], None]]:
    """The write path and what to close after: the running server's API when one holds the
    workspace (DuckDB admits one writing process per file), else the workspace itself."""
    from ...analytics.store import Store
    from ..streams.sinks import ServerSink, StoreSink
    from .remote import find_server

    server = find_server()
    if server is not None:
        return ServerSink(server, name), lambda: None
    store = Store()
    try:
        return StoreSink(store, name), store.close
    except BaseException:
        store.close()
        raise


def cmd_consume(args: argparse.Namespace) -> None:
    from ...analytics.schema import clean_dataset_name

    name = clean_dataset_name(args.name)
    if args.batch < 1 or args.block_ms < 1:
        raise ValueError("--batch and --block-ms take a positive whole number")
    consumer_name = args.consumer or f"{name}@{socket.gethostname()}"
    source = RedisSource(args.source, args.group, consumer_name, from_now=args.from_now,
                         claim_idle_ms=args.claim_idle_ms)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second signal: stop now (the batch stays unacknowledged)
            raise KeyboardInterrupt
        print(f"stopping after the current batch ({signal.Signals(signum).name})",
              file=sys.stderr, flush=True)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    shown = [time.monotonic()]

    def progress(counts: consumer.Counts) -> None:
        if not args.json and time.monotonic() - shown[0] >= PROGRESS_EVERY_S:
            shown[0] = time.monotonic()
            print(_line(counts, source.label), file=sys.stderr, flush=True)

    sink, closing = _open_sink(name)
    try:
        print(f"consuming {source.label} as {consumer_name!r} of group {args.group!r} into "
              f"{sink.label}", file=sys.stderr, flush=True)
        counts = consumer.run(source, sink, batch=args.batch, block_ms=args.block_ms,
                              max_events=args.max_events, idle_exit_s=args.idle_exit,
                              stop=stop, progress=progress)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        source.close()
        closing()  # the Store, if this process opened it
    if args.json:
        print(json.dumps({"dataset": name, "source": source.label, **counts.to_json()}))
        return
    print(_line(counts, source.label))
    if counts.rejected:
        print(f"  {counts.rejected:,} rejected events are in {source.stream}:rejected with "
              "their index, field and reason")


def add_consume_parser(sub: Any) -> None:
    s = sub.add_parser("consume", help="store the events of a Redis Stream as they come")
    s.add_argument("name", help="the dataset the events go to")
    s.add_argument("--from", dest="source", required=True, metavar="redis://HOST:PORT/STREAM")
    s.add_argument("--group", default="trailscope", help="consumer group (default trailscope)")
    s.add_argument("--consumer", help="this consumer's name in the group (default NAME@host: "
                   "a restart under the same name reads its unacknowledged entries first)")
    s.add_argument("--from-now", action="store_true",
                   help="a new group starts at new entries, not at the stream's first")
    s.add_argument("--batch", type=int, default=1000, help="most events per commit")
    s.add_argument("--block-ms", type=int, default=1000,
                   help="how long one read waits for new entries")
    s.add_argument("--claim-idle-ms", type=int, default=60_000,
                   help="take over entries another consumer left unacknowledged this long")
    s.add_argument("--max-events", type=int, help="stop after this many entries")
    s.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="stop when no entry came for this long")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_consume)
