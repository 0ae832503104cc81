"""``otel-benchlab report``: one self-contained HTML report (and ``--json``) of sessions."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from otel_benchlab.commands.views import (
    STORE_HELP,
    endpoint_option,
    open_views,
    window_options,
    write_text,
)


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
    window_options(p)
    endpoint_option(p)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from otel_benchlab.fleet.dataset import is_store_address
    from otel_benchlab.views.digest_session import EXACT_ROWS
    from otel_benchlab.views.report import write_report

    with contextlib.ExitStack() as stack:
        # A session longer than EXACT_ROWS is digested: memory that does not grow with it.
        views = open_views(stack, args.sessions, args, digest_over=EXACT_ROWS)
        first = args.sessions[0]
        out = Path(args.out) if args.out else \
            Path(f"report-{views[0].session_id}.html") if is_store_address(first) else \
            Path(first) / "report.html"
        sessions = write_report(views, out)
    if args.json:
        write_text(args.json, json.dumps({"sessions": sessions}, indent=1) + "\n")
    print(f"report: {out}" + (f", figures: {args.json}" if args.json else ""))
    if not args.out and not is_store_address(first):
        from otel_benchlab.exporters.upload import upload_now

        upload_now(Path(first), "report.html")
    return 0
