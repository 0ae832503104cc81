"""``otel-benchlab sessions``: the sessions an object store holds."""

from __future__ import annotations

import argparse
import json

from otel_benchlab.commands.views import endpoint_option
from otel_benchlab.settings import ConfigError


def sessions_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "List the sessions an object store holds (what the agents' [upload] sent): session, "
        "node, start, duration, frames per pipeline, and the address that report, compare "
        "and replay take."))
    p.add_argument("uri", metavar="URI", help="the store and prefix, as [upload] uri "
                   "(s3://BUCKET/PREFIX, gs://..., abfs://..., or a path)")
    p.add_argument("--node", metavar="NODE", help="only this node's sessions")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="only sessions started on or after")
    p.add_argument("--pipeline", metavar="P", help="only sessions with frames of pipeline P")
    p.add_argument("--json", action="store_true", help="one JSON object a line instead")
    endpoint_option(p)
    return p


def cmd_sessions(args: argparse.Namespace) -> int:
    import datetime as dt

    from otel_benchlab.fleet.dataset import list_sessions
    from otel_benchlab.fleet.store import Store

    if args.since:
        try:
            dt.date.fromisoformat(args.since)
        except ValueError:
            raise ConfigError(f"--since {args.since!r}: give a date, YYYY-MM-DD") from None
    found = list_sessions(Store(args.uri, args.endpoint or ""), args.node, args.since,
                          args.pipeline)
    if args.json:
        for s in found:
            print(json.dumps(s.as_dict()))
        return 0
    if not found:
        print(f"no sessions under {args.uri}" + (" (with these filters)" if args.node or
                                                 args.since or args.pipeline else ""))
        return 0
    rows = [("SESSION", "NODE", "START (UTC)", "DURATION", "FRAMES", "ADDRESS")]
    for s in found:
        start = s.started.strftime("%Y-%m-%d %H:%M:%S") if s.started else "?"
        dur = f"{s.duration_s:.0f} s" if s.duration_s is not None else \
            ("running or crashed" if s.manifest else "no session.json")
        frames = " ".join(f"{p}={n}" for p, n in s.frames.items()) or "-"
        rows.append((s.place.session, s.place.node, start, dur, frames, s.address))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
