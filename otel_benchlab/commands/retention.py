"""``otel-benchlab retention``: remove old sessions and raw data, compact finished ones."""

from __future__ import annotations

import argparse

from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args


def cmd_retention(args: argparse.Namespace) -> int:
    from otel_benchlab.session.retention import apply_retention

    cfg = config_from_args(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    if args.store:
        from otel_benchlab.fleet.dataset import expire_sessions
        from otel_benchlab.fleet.store import Store

        store = Store(args.store, args.endpoint or "")
        for line in expire_sessions(store, cfg.retention_days, args.dry_run).report():
            print(line)
        return 0
    result = apply_retention(cfg.data_root, cfg.retention_days, cfg.raw_keep_days,
                             dry_run=args.dry_run, compact=not args.no_compact)
    for line in result.report():
        print(line)
    return 0


