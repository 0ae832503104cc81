"""``otel-benchlab [run]``: the agent, with every component the configuration enables."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

from otel_benchlab.agent.heap import few_malloc_arenas
from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args
from otel_benchlab.counters import AgentCounters

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger("otel_benchlab")


class _Signals:
    """SIGINT/SIGTERM from the very start: the first stops the agent (or a start-up in
    progress, before anything is written), the second stops waiting for the network."""

    def __init__(self) -> None:
        self.count = 0
        self.agent = None
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.count += 1
        if self.agent is None:
            return
        if self.count == 1:
            self.agent.stop()
        else:
            self.agent.hurry()

    def attach(self, agent) -> None:
        self.agent = agent
        if self.count:  # a signal that came while the agent was being built
            agent.stop()
        if self.count > 1:
            agent.hurry()


def cmd_run(args: argparse.Namespace, cfg: Config | None = None,
            extra: list | None = None, on_agent=None) -> int:
    """The agent: every component the configuration enables (``components``), plus the
    receivers a command made itself (``extra``: the GStreamer launcher's)."""
    signals = _Signals()
    cfg = cfg or config_from_args(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    few_malloc_arenas()  # before the agent's threads start: see heap.py
    from otel_benchlab.agent.runtime import Agent
    from otel_benchlab.components import BuildContext, build_all
    from otel_benchlab.session.folder import Session
    from otel_benchlab.session.recovery import recover_crashed

    for rec in recover_crashed(cfg.data_root):
        log.warning("%s", rec.report())
    counters = AgentCounters()
    ctx = BuildContext(counters, extra=list(extra or []))
    built = build_all(cfg, ctx)
    try:
        agent = Agent(cfg, built.receivers, Session(cfg.data_root, cfg.session_id),
                      status_out=sys.stdout, counters=counters, span_sinks=built.span_sinks,
                      timebase=ctx.timebase, attributions=built.attributions,
                      file_sinks=built.file_sinks)
        if signals.count:
            log.info("interrupted during start-up; nothing was written")
            agent.abandon()
            return 0
        signals.attach(agent)
        if on_agent is not None:
            on_agent(agent)
        return agent.run(cfg.duration_s)
    finally:
        built.cleanup()


