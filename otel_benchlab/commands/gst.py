"""``otel-benchlab gst``: a GStreamer pipeline under the agent, or sent to a running one."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args
from otel_benchlab.commands.run import cmd_run
from otel_benchlab.settings import ConfigError


def _exit_status(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as shells say


def cmd_gst(args: argparse.Namespace, pipeline: list[str]) -> int:
    from otel_benchlab.receivers.gst_tracer import GstLaunchReceiver

    if not pipeline:
        print("otel-benchlab gst: give the pipeline after --, as to gst-launch-1.0",
              file=sys.stderr)
        return 2
    if args.to_agent:
        return _gst_to_agent(args, pipeline)
    cfg = config_from_args(args)
    # Measured spans need no pairing; these pairs order the output and let a frame's
    # trace end as soon as every named element has reported it.
    cfg.pairs = [[f"{e}.sink", f"{e}.src"] for e in args.stage or []]
    # The pipeline is the real one: --simulate stands in for power sources only.
    cfg.sim.sources = [s for s in cfg.sim.sources if s != "pipeline"]
    launcher = GstLaunchReceiver(pipeline, args.stage, args.name)

    def bind(agent) -> None:
        # The pipeline's last spans get their power from the samples after them: stop a
        # couple of sample periods after the pipeline has ended.
        linger = min(cfg.power_max_gap_s, 2.0 / cfg.sample_hz) + 0.05
        launcher.on_exit = lambda rc: threading.Timer(linger, agent.stop).start()

    rc = cmd_run(args, cfg, extra=[launcher], on_agent=bind)
    if launcher.returncode is None:
        return rc
    return _exit_status(launcher.returncode) or rc


def _gst_to_agent(args: argparse.Namespace, pipeline: list[str]) -> int:
    from otel_benchlab.probe import Probe
    from otel_benchlab.receivers.gst_tracer import GstLaunchReceiver

    setup_logging(args.log_format or "text", args.log_level or LOG_LEVEL_DEFAULTS["gst"])
    try:
        sender = Probe(args.to_agent, pipeline=args.name)
    except ConfigError as exc:
        print(f"otel-benchlab gst: --to-agent: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    launcher = GstLaunchReceiver(pipeline, args.stage, args.name,
                                 on_exit=lambda rc: done.set())

    def emit(span) -> bool:
        return sender.stage_span(span.start_ns, span.end_ns, span.pipeline, span.stream,
                                 span.stage_from, span.stage_to, span.frame)

    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    launcher.start(emit)
    while not done.wait(0.1):
        if stopping:
            launcher.stop()
    sender.close()
    print(f"otel-benchlab gst: {launcher.spans.records} tracer records, {sender.sent} spans "
          f"sent to {args.to_agent}, {sender.dropped} dropped (no agent there?)",
          file=sys.stderr)
    return _exit_status(launcher.returncode or 0)


