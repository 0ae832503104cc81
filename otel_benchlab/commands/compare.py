"""``otel-benchlab compare``: candidate sessions against a baseline, with intervals and verdicts."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from otel_benchlab.commands.views import (
    STORE_HELP,
    endpoint_option,
    open_views,
    window_options,
    write_text,
)
from otel_benchlab.settings import ConfigError


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
    window_options(p, " (every session; --baseline-since/--baseline-until set the "
                   "baseline's own)")
    p.add_argument("--baseline-since", metavar="TIME", help="the baseline's rows from this "
                   "time (so a session can be compared with another hour of itself)")
    p.add_argument("--baseline-until", metavar="TIME", help="the baseline's rows before "
                   "this time")
    endpoint_option(p)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    from otel_benchlab.views import compare as cmp
    from otel_benchlab.views.digest_session import EXACT_ROWS

    if not 0.5 <= args.confidence <= 0.999:
        raise ConfigError(f"--confidence {args.confidence}: give a level from 0.5 to 0.999")
    if args.threshold < 0:
        raise ConfigError(f"--threshold {args.threshold}: give a percentage of 0 or more")
    with contextlib.ExitStack() as stack:
        # Sessions longer than EXACT_ROWS are compared from digests and blocks read in a
        # second pass (views/compare_long.py): memory that does not grow with them.
        views = open_views(stack, [args.baseline, *args.candidates], args,
                           ("--baseline-since", "--baseline-until"), digest_over=EXACT_ROWS)
        results = [cmp.compare_sessions(views[0], c, args.threshold, args.confidence)
                   for c in views[1:]]
    sys.stdout.write("\n".join(cmp.terminal_table(r) for r in results))
    if args.json:
        machine = [cmp.for_json(r) for r in results]
        write_text(args.json, json.dumps(machine[0] if len(machine) == 1 else
                                     {"comparisons": machine}, indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, "\n".join(cmp.markdown(r) for r in results))
    if args.html:
        write_text(args.html, cmp.render_html(results))
    return 1 if args.fail_on_regression and any(cmp.any_worse(r) for r in results) else 0
