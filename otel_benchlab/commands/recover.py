"""``otel-benchlab recover``: turn the journals of crashed sessions into parts."""

from __future__ import annotations

import argparse

from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args


def cmd_recover(args: argparse.Namespace) -> int:
    from otel_benchlab.session.recovery import recover_crashed, recover_session

    cfg = config_from_args(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    done = [recover_session(d) for d in args.session_dirs] if args.session_dirs else \
        recover_crashed(cfg.data_root)
    for rec in done:
        print(rec.report())
    if not done:
        print(f"no crashed session under {cfg.data_root}")
    return 0


