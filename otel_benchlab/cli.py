"""``otel-benchlab``: the agent, and subcommands for the rest (``replay``)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence

from otel_benchlab import __version__
from otel_benchlab.config import Config, ConfigError, load_config

SUBCOMMANDS = ("run", "replay")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


def setup_logging(fmt: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _pair(text: str) -> list[str]:
    return text.split(",")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-benchlab", description=(
        "Measure what each stage of a pipeline costs in time, power and energy, and report "
        "it through OpenTelemetry, Prometheus, Parquet and CapFrameX."))
    p.add_argument("--version", action="version", version=f"otel-benchlab {__version__}")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the agent (the default command)")
    run.add_argument("--simulate", action="store_true", default=None,
                     help="use simulated sources (no hardware needed)")
    run.add_argument("--duration", type=float, metavar="SECONDS",
                     help="stop after this long (default: until SIGINT/SIGTERM)")
    run.add_argument("--session", metavar="ID", help="session id (default: a new one)")
    run.add_argument("--data-root", metavar="DIR", help="where sessions are stored")
    run.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                     help="a stage pair to measure; repeat for several")
    run.add_argument("--prom-bind", metavar="HOST:PORT",
                     help="Prometheus /metrics address ('off' to disable)")
    run.add_argument("--sample-hz", type=float, metavar="HZ", help="sensor sampling rate")
    run.add_argument("--config", metavar="FILE", help="TOML config file")
    run.add_argument("--log-format", choices=["text", "json"])
    run.add_argument("--log-level", default="INFO")

    rp = sub.add_parser("replay", help="run the processors again over a stored session")
    rp.add_argument("session_dir", metavar="SESSION_DIR")
    rp.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"))
    rp.add_argument("--out", metavar="DIR", help="output directory (default SESSION_DIR/replay)")
    rp.add_argument("--force", action="store_true", help="replace an earlier replay's output")
    rp.add_argument("--window", type=float, metavar="SECONDS", help="pairing window")
    rp.add_argument("--max-gap", type=float, metavar="SECONDS", help="largest power sample gap")
    rp.add_argument("--config", metavar="FILE", help="TOML config file")
    rp.add_argument("--log-format", choices=["text", "json"])
    rp.add_argument("--log-level", default="INFO")
    return p


def _config(args: argparse.Namespace) -> Config:
    overrides = {
        "simulate": getattr(args, "simulate", None),
        "duration_s": getattr(args, "duration", None),
        "session_id": getattr(args, "session", None),
        "data_root": getattr(args, "data_root", None),
        "prometheus.bind": getattr(args, "prom_bind", None),
        "sample_hz": getattr(args, "sample_hz", None),
        "log_format": args.log_format,
        "pair_window_s": getattr(args, "window", None),
        "power_max_gap_s": getattr(args, "max_gap", None),
    }
    if args.pair:
        overrides["pairs"] = [list(p) for p in args.pair]
    return load_config(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from otel_benchlab.runtime import Agent
    from otel_benchlab.session import Session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level)
    receivers = []
    if cfg.simulate:
        from otel_benchlab.receivers.simulated import SimulatedPipeline, SimulatedPower

        receivers = [SimulatedPipeline(cfg.sim), SimulatedPower(cfg.sample_hz)]
    else:
        logging.getLogger("otel_benchlab").warning(
            "no hardware receivers are available in this version yet; run with --simulate "
            "to see the whole path on simulated sources")
    session = Session(cfg.data_root, cfg.session_id)
    session.create()
    agent = Agent(cfg, receivers, session, status_out=sys.stdout)

    def on_signal(signum: int, _frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return agent.run(cfg.duration_s)


def cmd_replay(args: argparse.Namespace) -> int:
    from otel_benchlab.replay import replay_session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level)
    result = replay_session(args.session_dir, cfg, pairs=[tuple(p) for p in args.pair or []],
                            out=args.out, force=args.force)
    for line in result.report():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help",
                                                                    "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        return cmd_replay(args) if args.command == "replay" else cmd_run(args)
    except ConfigError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 1
