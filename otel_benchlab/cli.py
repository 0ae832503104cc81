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
from otel_benchlab.counters import AgentCounters

SUBCOMMANDS = ("run", "replay", "devices")
LOG_LEVEL_DEFAULTS = {"run": "INFO", "replay": "INFO", "devices": "WARNING"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


class OncePerMessage(logging.Filter):
    """Lets each message template through once. The OTel SDK's exporters log every failed
    attempt (a warning per retry, an error per batch); the agent counts those failures in
    benchlab.agent.export.failures and says once what to do, so repeats add nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


NOISY_SDK_LOGGERS = ("opentelemetry.exporter.otlp.proto.grpc.exporter",
                     "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                     "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                     "opentelemetry.sdk.trace.export", "opentelemetry.sdk._shared_internal",
                     "opentelemetry.sdk.metrics._internal.export")


def setup_logging(fmt: str, level: str = "INFO") -> None:
    once = OncePerMessage()
    for name in NOISY_SDK_LOGGERS:
        logging.getLogger(name).addFilter(once)
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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file")
    common.add_argument("--log-format", choices=["text", "json"])
    # No default here: argparse shares a parent's actions between subcommands, so each
    # command's default is resolved in setup_logging's caller (see LOG_LEVEL_DEFAULTS).
    common.add_argument("--log-level", help="INFO for run and replay, WARNING for devices")

    run = sub.add_parser("run", parents=[common], help="run the agent (the default command)")
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
    run.add_argument("--benchlab-device", metavar="auto|PATH|uid:UID",
                     help="which BENCHLAB(s) to read (default auto)")
    run.add_argument("--benchlab-rgb-feedback", action="store_true", default=None,
                     help="set the BENCHLAB's RGB colour from pipeline latency")
    run.add_argument("--benchlab-fan-auto", action="store_true", default=None,
                     help="set the BENCHLAB's fan duty from temperature")
    run.add_argument("--benchlab-control-dry-run", action="store_true", default=None,
                     help="log what device control would write instead of writing it")

    dv = sub.add_parser("devices", parents=[common],
                        help="list BENCHLAB devices and read one sample of each")
    dv.add_argument("--benchlab-device", metavar="auto|PATH|uid:UID")
    dv.add_argument("--simulate", action="store_true", default=None,
                    help="list an emulated BENCHLAB (on a pseudo-terminal) instead")

    rp = sub.add_parser("replay", parents=[common],
                        help="run the processors again over a stored session")
    rp.add_argument("session_dir", metavar="SESSION_DIR")
    rp.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"))
    rp.add_argument("--out", metavar="DIR", help="output directory (default SESSION_DIR/replay)")
    rp.add_argument("--force", action="store_true", help="replace an earlier replay's output")
    rp.add_argument("--window", type=float, metavar="SECONDS", help="pairing window")
    rp.add_argument("--max-gap", type=float, metavar="SECONDS", help="largest power sample gap")
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
        "benchlab.device": getattr(args, "benchlab_device", None),
        "benchlab.control.rgb_feedback": getattr(args, "benchlab_rgb_feedback", None),
        "benchlab.control.fan_auto": getattr(args, "benchlab_fan_auto", None),
        "benchlab.control.dry_run": getattr(args, "benchlab_control_dry_run", None),
    }
    if getattr(args, "pair", None):
        overrides["pairs"] = [list(p) for p in args.pair]
    return load_config(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from otel_benchlab.runtime import Agent
    from otel_benchlab.session import Session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    counters = AgentCounters()
    emulator = None
    receivers: list = []
    if cfg.simulate:
        from otel_benchlab.receivers.simulated import SimulatedGpu, SimulatedPipeline

        emulator = start_emulator(cfg)
        receivers = [SimulatedPipeline(cfg.sim), benchlab_receiver(cfg, counters, emulator),
                     SimulatedGpu(cfg.sample_hz)]
    elif cfg.benchlab.enabled:
        receivers = [benchlab_receiver(cfg, counters)]
    session = Session(cfg.data_root, cfg.session_id)
    session.create()
    agent = Agent(cfg, receivers, session, status_out=sys.stdout, counters=counters)

    def on_signal(signum: int, _frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return agent.run(cfg.duration_s)
    finally:
        if emulator is not None:
            emulator.stop()


def start_emulator(cfg: Config):
    """The simulated power meter: a BENCHLAB emulator on a pseudo-terminal whose power
    follows the simulated load; the real reader reads it."""
    from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator
    from otel_benchlab.receivers.simulated import load_at

    product = 0x11 if cfg.sim.benchlab_product == "benchlab2" else 0x10
    return BenchlabEmulator(product, cfg.sim.benchlab_firmware, load=load_at).start()


def benchlab_receiver(cfg: Config, counters: AgentCounters, emulator=None):
    from otel_benchlab.receivers.benchlab import BenchlabReceiver, scan_ports
    from otel_benchlab.receivers.benchlab_control import BenchlabControl, ControlSettings

    c = cfg.benchlab.control
    control = BenchlabControl(ControlSettings(
        rgb_feedback=c.rgb_feedback, green_below_ms=c.green_below_ms,
        red_above_ms=c.red_above_ms, fan_auto=c.fan_auto, threshold_c=c.fan_threshold_c,
        full_c=c.fan_full_c, min_duty=c.fan_min_duty, max_duty=c.fan_max_duty,
        dry_run=c.dry_run))
    spec = f"uid:{emulator.uid.hex().upper()}" if emulator else cfg.benchlab.device
    return BenchlabReceiver(spec, cfg.sample_hz, counters,
                            ports=emulator.ports if emulator else scan_ports,
                            max_rtt_ms=cfg.benchlab.max_rtt_ms,
                            timeout_s=cfg.benchlab.read_timeout_ms / 1000,
                            control=control if control.active else None)


def cmd_devices(args: argparse.Namespace) -> int:
    from otel_benchlab.receivers.benchlab import discover, scan_ports
    from otel_benchlab.receivers.benchlab_layout import READ_SENSORS, decode

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    emulator = start_emulator(cfg) if cfg.simulate else None
    try:
        spec = f"uid:{emulator.uid.hex().upper()}" if emulator else cfg.benchlab.device
        found, errors = discover(spec, emulator.ports if emulator else scan_ports,
                                 cfg.benchlab.read_timeout_ms / 1000)
        for e in errors:
            print(f"otel-benchlab: {e}", file=sys.stderr)
        if not found:
            print("No BENCHLAB found" + (" on the ttyACM ports with USB id 0483:5740"
                                         if spec == "auto" else f" for {spec}")
                  + ". Check the USB cable and `ls /dev/ttyACM*`; try --simulate to see an "
                  "emulated one.", file=sys.stderr)
            return 1
        rows = [("PORT", "UID", "NAME", "PRODUCT", "FIRMWARE")]
        rows += [(i.port, i.uid, i.name, i.product, i.firmware) for _, i in found]
        print(_table(rows))
        for port, ident in found:
            raw, t0, t1 = port.request(bytes([READ_SENSORS]), ident.layout.sensor_size)
            port.close()
            print(f"\n{ident.uid} ({ident.port}), one sample, round trip "
                  f"{(t1 - t0) / 1e6:.2f} ms:")
            if len(raw) != ident.layout.sensor_size:
                print(f"  short read: {len(raw)} of {ident.layout.sensor_size} bytes")
                continue
            print(_sample_table(decode(raw, ident.layout), ident.layout.rails))
        return 0
    finally:
        if emulator is not None:
            emulator.stop()


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _sample_table(values: dict[str, float], rails: tuple[str, ...]) -> str:
    rows = [("SENSOR", "VOLT (V)", "CURRENT (A)", "POWER (W)")]
    for group in ("SYS", "CPU", "GPU", "MB"):
        rows.append((group, "", "", f"{values[group]:.2f}"))
    for r in rails:
        rows.append((r, f"{values[f'{r}_V']:.3f}", f"{values[f'{r}_I']:.3f}",
                     f"{values[f'{r}_P']:.2f}"))
    out = [_table(rows), ""]
    rest = [(k, f"{v:g}") for k, v in values.items()
            if k not in ("SYS", "CPU", "GPU", "MB") and not k.endswith(("_V", "_I", "_P"))]
    out.append(_table([("SENSOR", "VALUE")] + rest))
    return "\n".join(out)


def cmd_replay(args: argparse.Namespace) -> int:
    from otel_benchlab.replay import replay_session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
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
        if args.command == "replay":
            return cmd_replay(args)
        return cmd_devices(args) if args.command == "devices" else cmd_run(args)
    except ConfigError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 1
