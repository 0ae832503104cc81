"""The views' commands, ``report`` and ``compare``: each declares its parser and its run
function here, and the CLI dispatches through ``COMMANDS`` (it knows no view by name)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from otel_benchlab.config import ConfigError


def _pairs(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    return [tuple(p) for p in args.pair] if args.pair else None


def _write(path: str, text: str) -> None:
    from otel_benchlab.temp_files import replace_with

    replace_with(Path(path), text.encode())


def report_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Write one self-contained HTML report (opens from disk, no network) of one or more "
        "sessions: per pair frames, frames/s, latency percentiles, power and energy per "
        "frame per source, and charts. Reads any folder replay reads (an agent's session, "
        "one whose agent crashed, the seed project's raw/*.jsonl). Exit 2 when a folder "
        "is no session."))
    p.add_argument("sessions", metavar="SESSION", nargs="+")
    p.add_argument("-o", "--out", metavar="FILE.html",
                   help="where to write the report (default FIRST_SESSION/report.html)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                   help="only these stage pairs (default: all the session has)")
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from otel_benchlab.views.report import write_report
    from otel_benchlab.views.sessions import load_session

    views = [load_session(s, _pairs(args)) for s in args.sessions]
    out = Path(args.out) if args.out else Path(args.sessions[0]) / "report.html"
    sessions = write_report(views, out)
    if args.json:
        _write(args.json, json.dumps({"sessions": sessions}, indent=1) + "\n")
    print(f"report: {out}" + (f", figures: {args.json}" if args.json else ""))
    return 0


def compare_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Compare one or more candidate sessions with a baseline, per stage pair present in "
        "both: latency p50/p95/p99/mean, frames/s, energy per frame and mean power per "
        "source; each change with its confidence interval (a bootstrap over time blocks) "
        "and a verdict: better, worse or same (~). Exit 0; 1 with --fail-on-regression "
        "when any verdict is worse; 2 for bad usage."))
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
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    from otel_benchlab.views import compare as cmp
    from otel_benchlab.views.sessions import load_session

    if not 0.5 <= args.confidence <= 0.999:
        raise ConfigError(f"--confidence {args.confidence}: give a level from 0.5 to 0.999")
    if args.threshold < 0:
        raise ConfigError(f"--threshold {args.threshold}: give a percentage of 0 or more")
    baseline = load_session(args.baseline, _pairs(args))
    results = [cmp.compare_sessions(baseline, load_session(c, _pairs(args)), args.threshold,
                                    args.confidence) for c in args.candidates]
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


# name -> (parser factory, run function, one line for the agent's --help)
COMMANDS: dict[str, tuple[Callable[[str], argparse.ArgumentParser],
                          Callable[[argparse.Namespace], int], str]] = {
    "report": (report_parser, cmd_report,
               "one self-contained HTML report (and --json) of one or more sessions"),
    "compare": (compare_parser, cmd_compare,
                "compare sessions per stage pair with intervals and verdicts (a CI gate)"),
}
