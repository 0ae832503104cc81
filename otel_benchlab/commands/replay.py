"""``otel-benchlab replay``: the processors run again over a stored session."""

from __future__ import annotations

import argparse

from otel_benchlab.agent.heap import few_malloc_arenas, keep_freed_memory
from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args


def cmd_replay(args: argparse.Namespace) -> int:
    # A batch process: reuse what it frees, in one arena that every thread shares (see
    # heap.py); set before pyarrow starts its threads.
    few_malloc_arenas(1)
    keep_freed_memory()
    from otel_benchlab.fleet.dataset import is_store_address, session_folder
    from otel_benchlab.session.replay import replay_session

    cfg = config_from_args(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    with session_folder(args.session_dir, args.endpoint or "", args.since, args.until) as folder:
        out = args.out or (f"replay-{folder.name}" if is_store_address(args.session_dir)
                           else None)
        result = replay_session(folder, cfg, pairs=[tuple(p) for p in args.pair or []],
                                out=out, force=args.force, since=args.since,
                                until=args.until)
    for line in result.report():
        print(line)
    return 0


