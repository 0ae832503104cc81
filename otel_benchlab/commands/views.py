"""The views' commands, ``report`` and ``compare``: each declares its parser and its run
function here, and the CLI dispatches through ``COMMANDS`` (it knows no view by name)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from otel_benchlab.settings import ConfigError


def _pairs(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    return [tuple(p) for p in args.pair] if args.pair else None


def _write(path: str, text: str) -> None:
    from otel_benchlab.session.temp_files import replace_with

    replace_with(Path(path), text.encode())


STORE_HELP = ("A SESSION is a folder or a session in an object store "
              "(s3://BUCKET/PREFIX/kind=aligned/node=N/date=D/session=ID, as `otel-benchlab "
              "sessions` lists it, or PREFIX/session=ID).")


def endpoint_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", metavar="URL", help="an S3-compatible store's address "
                   "(env BENCHLAB_UPLOAD_ENDPOINT, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")


def _views(stack: contextlib.ExitStack, addresses: list[str],
           args: argparse.Namespace) -> list:
    """Each session's view; a stored one is read from a copy kept for the command's run
    and named by the address it was given."""
    from otel_benchlab.fleet.dataset import is_store_address, session_folder
    from otel_benchlab.views.sessions import load_session

    views = []
    for address in addresses:
        view = load_session(stack.enter_context(session_folder(address, args.endpoint or "")),
                            _pairs(args))
        if is_store_address(address):
            view.path = address
        views.append(view)
    return views


def report_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Write one self-contained HTML report (opens from disk, no network) of one or more "
        "sessions: per pair frames, frames/s, latency percentiles, power and energy per "
        "frame per source, and charts. Reads any folder replay reads (an agent's session, "
        "one whose agent crashed, the seed project's raw/*.jsonl). Exit 2 when a folder "
        "is no session. " + STORE_HELP + " A report written into a session recorded with "
        "uploads on goes to the store too."))
    p.add_argument("sessions", metavar="SESSION", nargs="+")
    p.add_argument("-o", "--out", metavar="FILE.html",
                   help="where to write the report (default FIRST_SESSION/report.html; "
                   "report-ID.html here for a stored session)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                   help="only these stage pairs (default: all the session has)")
    endpoint_option(p)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from otel_benchlab.fleet.dataset import is_store_address
    from otel_benchlab.views.report import write_report

    with contextlib.ExitStack() as stack:
        views = _views(stack, args.sessions, args)
        first = args.sessions[0]
        out = Path(args.out) if args.out else \
            Path(f"report-{views[0].session_id}.html") if is_store_address(first) else \
            Path(first) / "report.html"
        sessions = write_report(views, out)
    if args.json:
        _write(args.json, json.dumps({"sessions": sessions}, indent=1) + "\n")
    print(f"report: {out}" + (f", figures: {args.json}" if args.json else ""))
    if not args.out and not is_store_address(first):
        from otel_benchlab.exporters.upload import upload_now

        upload_now(Path(first), "report.html")
    return 0


def compare_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Compare one or more candidate sessions with a baseline, per stage pair present in "
        "both: latency p50/p95/p99/mean, frames/s, energy per frame and mean power per "
        "source; each change with its confidence interval (a bootstrap over time blocks) "
        "and a verdict: better, worse or same (~). Exit 0; 1 with --fail-on-regression "
        "when any verdict is worse; 2 for bad usage. " + STORE_HELP))
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("candidates", metavar="CANDIDATE", nargs="+")
    p.add_argument("--threshold", type=float, default=2.0, metavar="PCT",
                   help="a change smaller than this is 'same' even when certain (default 2)")
    p.add_argument("--confidence", type=float, default=0.95, metavar="LEVEL",
                   help="of the intervals, between 0.5 and 0.999 (default 0.95)")
    p.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                   help="only these stage pairs (default: all both have)")
    p.add_argument("--html", metavar="FILE", help="also write an HTML page")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.add_argument("--markdown", metavar="FILE",
                   help="also write Markdown (for a CI job summary)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when any verdict is worse")
    endpoint_option(p)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    from otel_benchlab.views import compare as cmp

    if not 0.5 <= args.confidence <= 0.999:
        raise ConfigError(f"--confidence {args.confidence}: give a level from 0.5 to 0.999")
    if args.threshold < 0:
        raise ConfigError(f"--threshold {args.threshold}: give a percentage of 0 or more")
    with contextlib.ExitStack() as stack:
        views = _views(stack, [args.baseline, *args.candidates], args)
        results = [cmp.compare_sessions(views[0], c, args.threshold, args.confidence)
                   for c in views[1:]]
    sys.stdout.write("\n".join(cmp.terminal_table(r) for r in results))
    if args.json:
        machine = [cmp.for_json(r) for r in results]
        _write(args.json, json.dumps(machine[0] if len(machine) == 1 else
                                     {"comparisons": machine}, indent=1) + "\n")
    if args.markdown:
        _write(args.markdown, "\n".join(cmp.markdown(r) for r in results))
    if args.html:
        _write(args.html, cmp.render_html(results))
    return 1 if args.fail_on_regression and any(cmp.any_worse(r) for r in results) else 0


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


# name -> (parser factory, run function, one line for the agent's --help)
COMMANDS: dict[str, tuple[Callable[[str], argparse.ArgumentParser],
                          Callable[[argparse.Namespace], int], str]] = {
    "report": (report_parser, cmd_report,
               "one self-contained HTML report (and --json) of one or more sessions"),
    "compare": (compare_parser, cmd_compare,
                "compare sessions per stage pair with intervals and verdicts (a CI gate)"),
    "sessions": (sessions_parser, cmd_sessions,
                 "list the sessions an object store holds ([upload])"),
}
