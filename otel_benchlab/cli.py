"""``otel-benchlab``: the agent, and subcommands for the rest (``replay``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from otel_benchlab import __version__
from otel_benchlab.config import Config, ConfigError, load_config
from otel_benchlab.counters import AgentCounters
from otel_benchlab.heap import arrow_on_the_c_heap, few_malloc_arenas, keep_freed_memory
from otel_benchlab.no_pandas import pyarrow_without_pandas

log = logging.getLogger("otel_benchlab")

SUBCOMMANDS = ("run", "gst", "replay", "recover", "retention", "devices")
LOG_LEVEL_DEFAULTS = {"run": "INFO", "gst": "INFO", "replay": "INFO", "recover": "INFO",
                      "retention": "INFO", "devices": "WARNING"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        return json.dumps({"time": when.isoformat(timespec="milliseconds"),
                           "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


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


class ExporterMessagesToDebug(logging.Filter):
    """The OTel SDK's OTLP exporters log each attempt against a collector that is down
    ("Transient error ... retrying", "Failed to export", "Shutdown in progress, aborting
    retry", "Exporter already shutdown"). The agent says once per cause and signal what to
    do (``export.failures``); the exporters' own lines become debug, shown with
    ``--log-level debug``. Only loggers under ``opentelemetry.exporter.`` are touched:
    everything else the SDK says keeps its level."""

    PREFIX = "opentelemetry.exporter."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.PREFIX) and record.levelno > logging.DEBUG:
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def setup_logging(fmt: str, level: str = "INFO") -> None:
    once = OncePerMessage()
    for name in NOISY_SDK_LOGGERS:
        logging.getLogger(name).addFilter(once)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ExporterMessagesToDebug())
    handler.setFormatter(_JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(LOG_LEVELS)} "
                                         "(any case)")
    return level


def _common_options(p: argparse.ArgumentParser, default_level: str) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="TOML config file (env BENCHLAB_CONFIG); precedence: defaults < "
                   "file < environment < flags")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines on stderr as text or JSON (default text)")
    p.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                   help=f"debug, info, warning, error (default {default_level.lower()})")


AGENT_DESCRIPTION = """\
Measure what each stage of a pipeline costs in time, power and energy, and report it
through OpenTelemetry (OTLP), Prometheus, Parquet and CapFrameX. Without a command, runs
the agent until SIGINT/SIGTERM (a second one stops waiting for the network).

commands:
  run        run the agent (the default; these options)
  gst        run a GStreamer pipeline and measure each element (a session of its own,
             or --to-agent a running agent)
  replay     run the processors again over a stored session, for any stage pairs
  recover    turn the journals of a crashed session into Parquet parts
  retention  remove old raw data and sessions, compact finished sessions' parts
  devices    list every power source (BENCHLAB, GPUs, RAPL, hwmon) with a reading
{views}

'otel-benchlab COMMAND --help' shows each command's options."""

AGENT_EPILOG = """\
OpenTelemetry variables work as the SDK defines them: OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT, ..._PROTOCOL,
..._HEADERS, ..._TIMEOUT (ms), ..._COMPRESSION, ..._INSECURE, OTEL_TRACES_EXPORTER and
OTEL_METRICS_EXPORTER (otlp, console, none), OTEL_TRACES_SAMPLER[_ARG],
OTEL_METRIC_EXPORT_INTERVAL, OTEL_BSP_*, OTEL_SDK_DISABLED. Exit codes: 0 ok, 2 bad usage
or configuration, 1 runtime failure."""


def agent_parser(prog: str = "otel-benchlab") -> argparse.ArgumentParser:
    from otel_benchlab.views.commands import COMMANDS

    views = "\n".join(f"  {name:<10} {line}" for name, (_, _, line) in COMMANDS.items())
    p = argparse.ArgumentParser(prog=prog, description=AGENT_DESCRIPTION.format(views=views),
                                epilog=AGENT_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"otel-benchlab {__version__}")
    p.add_argument("--simulate", action="store_true", default=None,
                   help="simulated pipeline, BENCHLAB (emulator on a pseudo-terminal) and GPU")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop measuring after this long (default: until SIGINT/SIGTERM)")
    p.add_argument("--session", metavar="ID",
                   help="session id (env BENCHLAB_SESSION; default <UTC time>-<hex>)")
    p.add_argument("--data-root", metavar="DIR",
                   help="where sessions are stored (env BENCHLAB_DATA_ROOT; default "
                   "$XDG_DATA_HOME/otel-benchlab, ~/.local/share/otel-benchlab)")
    p.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                   help="a stage pair to measure; repeat for several (env CX_STAGE_A + "
                   "CX_STAGE_B; default ingress encoded, encoded inference_done)")
    p.add_argument("--prom-bind", metavar="HOST:PORT",
                   help="Prometheus /metrics address; a port alone is loopback; 'off' to "
                   "disable (env BENCHLAB_PROM; default 127.0.0.1:9109)")
    p.add_argument("--sample-hz", type=float, metavar="HZ",
                   help="sensor sampling rate (env BENCHLAB_SAMPLE_HZ; default 10)")
    p.add_argument("--benchlab-device", metavar="auto|PATH|uid:UID",
                   help="which BENCHLAB(s) to read (env BENCHLAB_DEVICE; default auto)")
    p.add_argument("--tail-jsonl", action="append", metavar="PATH",
                   help="follow a JSONL file of stage marks (the seed's format); repeat for "
                   "several; - for standard input ([intake] jsonl)")
    p.add_argument("--otlp-listen", metavar="HOST:PORT",
                   help="OTLP/gRPC intake: take spans from applications, measure the "
                   "configured ones, forward everything upstream (default off)")
    p.add_argument("--otlp-http-listen", metavar="HOST:PORT",
                   help="OTLP/HTTP (protobuf) intake, as --otlp-listen (default off)")
    p.add_argument("--benchlab-rgb-feedback", action="store_true", default=None,
                   help="set the BENCHLAB's RGB colour from pipeline latency (default off)")
    p.add_argument("--benchlab-fan-auto", action="store_true", default=None,
                   help="set the BENCHLAB's fan duty from temperature (default off)")
    p.add_argument("--benchlab-control-dry-run", action="store_true", default=None,
                   help="log what device control would write instead of writing it")
    _common_options(p, LOG_LEVEL_DEFAULTS["run"])
    p.set_defaults(command="run")
    return p


def command_parser(command: str) -> argparse.ArgumentParser:
    prog = f"otel-benchlab {command}"
    if command == "devices":
        p = argparse.ArgumentParser(prog=prog, description=(
            "List every power source found (BENCHLAB devices, NVIDIA GPUs, RAPL zones, "
            "hwmon sensors) with one reading each, and say why an expected one is missing. "
            "Exit status 1 when none is found."))
        p.add_argument("--benchlab-device", metavar="auto|PATH|uid:UID",
                       help="which BENCHLAB(s) (env BENCHLAB_DEVICE; default auto)")
        p.add_argument("--simulate", action="store_true", default=None,
                       help="list an emulated BENCHLAB (on a pseudo-terminal) instead")
    elif command == "retention":
        p = argparse.ArgumentParser(prog=prog, description=(
            "Remove raw/ of sessions older than the raw limit and whole sessions older than "
            "the total limit (age from the recorded end), and compact each finished "
            "session's Parquet parts into one per kind. Never a session being written, "
            "nothing outside the data root, never through a symlink. The agent runs the "
            "same every retention_interval_h."))
        p.add_argument("--data-root", metavar="DIR",
                       help="where sessions are stored (env BENCHLAB_DATA_ROOT)")
        p.add_argument("--days", type=float, metavar="N",
                       help="remove sessions older than N days (env BENCHLAB_RETENTION_DAYS; "
                       "default 90)")
        p.add_argument("--raw-keep-days", type=float, metavar="N",
                       help="remove raw/ older than N days (env BENCHLAB_RAW_KEEP_DAYS; "
                       "default 7)")
        p.add_argument("--dry-run", action="store_true", help="say what would go; change "
                       "nothing")
        p.add_argument("--no-compact", action="store_true", help="do not compact parts")
        p.add_argument("--store", metavar="URI",
                       help="instead, expire sessions in this object store (as [upload] "
                       "uri) that ended more than --days ago, by the end session.json "
                       "records")
        p.add_argument("--endpoint", metavar="URL",
                       help="with --store: an S3-compatible store's address (env "
                       "BENCHLAB_UPLOAD_ENDPOINT)")
    elif command == "recover":
        p = argparse.ArgumentParser(prog=prog, description=(
            "Turn what a crashed agent left (journals of the parts in progress) into Parquet "
            "parts and mark the session as ended by a crash. Without SESSION_DIR, every "
            "crashed session under the data root. The agent does this itself at start."))
        p.add_argument("session_dirs", metavar="SESSION_DIR", nargs="*")
        p.add_argument("--data-root", metavar="DIR",
                       help="where sessions are stored (env BENCHLAB_DATA_ROOT)")
    else:
        p = argparse.ArgumentParser(prog=prog, description=(
            "Run the processors again over a stored session (otel-benchlab's, also one "
            "whose agent crashed, or the seed project's raw/*.jsonl) and write aligned "
            "Parquet and CapFrameX files for any stage pairs."))
        p.add_argument("session_dir", metavar="SESSION_DIR",
                       help="a session folder, or a session in an object store "
                       "(s3://BUCKET/PREFIX/kind=aligned/node=N/date=D/session=ID)")
        p.add_argument("--pair", nargs=2, action="append", metavar=("STAGE_A", "STAGE_B"),
                       help="stage pairs (default: the session's own)")
        p.add_argument("--out", metavar="DIR",
                       help="output directory (default SESSION_DIR/replay; replay-ID here "
                       "for a stored session)")
        p.add_argument("--endpoint", metavar="URL",
                       help="a stored session's S3-compatible store (env "
                       "BENCHLAB_UPLOAD_ENDPOINT)")
        p.add_argument("--force", action="store_true",
                       help="replace an earlier replay's output")
        p.add_argument("--window", type=float, metavar="SECONDS",
                       help="pairing window (default 2)")
        p.add_argument("--max-gap", type=float, metavar="SECONDS",
                       help="largest power sample gap (default 0.5)")
    _common_options(p, LOG_LEVEL_DEFAULTS[command])
    p.set_defaults(command=command)
    return p


# Command-line options (argparse dest) and the dotted config key each sets; the
# configuration reference (scripts/gen_docs.py) reads this table too.
FLAG_KEYS: dict[str, str] = {
    "simulate": "simulate", "duration": "duration_s", "session": "session_id",
    "data_root": "data_root", "prom_bind": "prometheus.bind", "sample_hz": "sample_hz",
    "log_format": "log_format", "window": "pair_window_s", "days": "retention_days",
    "raw_keep_days": "raw_keep_days", "max_gap": "power_max_gap_s",
    "benchlab_device": "benchlab.device", "tail_jsonl": "intake.jsonl",
    "otlp_listen": "intake.otlp_grpc", "otlp_http_listen": "intake.otlp_http",
    "benchlab_rgb_feedback": "benchlab.control.rgb_feedback",
    "benchlab_fan_auto": "benchlab.control.fan_auto",
    "benchlab_control_dry_run": "benchlab.control.dry_run",
    "pair": "pairs",
}


def _config(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, dest, None) for dest, key in FLAG_KEYS.items()
                 if dest != "pair"}
    if getattr(args, "pair", None):
        overrides["pairs"] = [list(p) for p in args.pair]
    return load_config(args.config, overrides=overrides)


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
    cfg = cfg or _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    few_malloc_arenas()  # before the agent's threads start: see heap.py
    from otel_benchlab.components import BuildContext, build_all
    from otel_benchlab.recovery import recover_crashed
    from otel_benchlab.runtime import Agent
    from otel_benchlab.session import Session

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


GST_DESCRIPTION = """\
Run `gst-launch-1.0 PIPELINE` with GStreamer's latency tracer and measure every element
(or those named with --stage) and the pipeline from source to sink, as stage spans with
power and energy, in an agent session of its own (all the agent's options and outputs)
that ends with the pipeline. Exits with the pipeline's status.

example:
  otel-benchlab gst --simulate --stage enc -- videotestsrc num-buffers=300 ! \\
      x264enc name=enc tune=zerolatency ! fakesink"""


def gst_parser() -> argparse.ArgumentParser:
    p = agent_parser("otel-benchlab gst")
    p.description = GST_DESCRIPTION
    p.usage = "otel-benchlab gst [AGENT OPTIONS] [--stage ELEMENT]... -- PIPELINE..."
    g = p.add_argument_group("GStreamer")
    g.add_argument("--stage", action="append", metavar="ELEMENT",
                   help="an element to measure (its name in the pipeline); repeat for "
                   "several (default: every element the tracer reports)")
    g.add_argument("--name", default="gst", metavar="PIPELINE",
                   help="the pipeline's name in every output (default gst)")
    g.add_argument("--to-agent", metavar="ADDRESS",
                   help="send the spans to a running agent's probe address "
                   "(udp://HOST:PORT or unix:///PATH, as BENCHLAB_PROBE_ADDR) instead of "
                   "running a session here")
    p.set_defaults(command="gst")
    return p


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
    cfg = _config(args)
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


def cmd_devices(args: argparse.Namespace) -> int:
    from otel_benchlab.receivers.benchlab import discover, scan_ports
    from otel_benchlab.receivers.benchlab_layout import READ_SENSORS, decode
    from otel_benchlab.receivers.simulated import start_emulator

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    emulator = start_emulator(cfg) if cfg.simulate else None
    try:
        spec = f"uid:{emulator.uid.hex().upper()}" if emulator else cfg.benchlab.device
        found, errors = discover(spec, emulator.ports if emulator else scan_ports,
                                 cfg.benchlab.read_timeout_ms / 1000)
        for e in errors:
            print(f"otel-benchlab: {e}", file=sys.stderr)
        from otel_benchlab.receivers.host import describe

        host_lines, host_power = describe(cfg.host, AgentCounters())
        if not found:
            print("No BENCHLAB found" + (" on the ttyACM ports with USB id 0483:5740"
                                         if spec == "auto" else f" for {spec}")
                  + ". Check the USB cable and `ls /dev/ttyACM*`; try --simulate to see an "
                  "emulated one.", file=sys.stderr)
        print("\n".join(host_lines))
        if not found:
            return 0 if host_power else 1
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


def cmd_recover(args: argparse.Namespace) -> int:
    from otel_benchlab.recovery import recover_crashed, recover_session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    done = [recover_session(d) for d in args.session_dirs] if args.session_dirs else \
        recover_crashed(cfg.data_root)
    for rec in done:
        print(rec.report())
    if not done:
        print(f"no crashed session under {cfg.data_root}")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from otel_benchlab.retention import apply_retention

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    if args.store:
        from otel_benchlab.fleet import expire_sessions
        from otel_benchlab.store import Store

        store = Store(args.store, args.endpoint or "")
        for line in expire_sessions(store, cfg.retention_days, args.dry_run).report():
            print(line)
        return 0
    result = apply_retention(cfg.data_root, cfg.retention_days, cfg.raw_keep_days,
                             dry_run=args.dry_run, compact=not args.no_compact)
    for line in result.report():
        print(line)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    # A batch process: reuse what it frees, in one arena that every thread shares (see
    # heap.py); set before pyarrow starts its threads.
    few_malloc_arenas(1)
    keep_freed_memory()
    from otel_benchlab.fleet import is_store_address, session_folder
    from otel_benchlab.replay import replay_session

    cfg = _config(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    with session_folder(args.session_dir, args.endpoint or "") as folder:
        out = args.out or (f"replay-{folder.name}" if is_store_address(args.session_dir)
                           else None)
        result = replay_session(folder, cfg, pairs=[tuple(p) for p in args.pair or []],
                                out=out, force=args.force)
    for line in result.report():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arrow_on_the_c_heap()  # before pyarrow is imported: see heap.py
    with pyarrow_without_pandas():  # see no_pandas.py
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "gst":
        rest = argv[1:]
        cut = rest.index("--") if "--" in rest else len(rest)
        args = gst_parser().parse_args(rest[:cut])
        try:
            return cmd_gst(args, rest[cut + 1:])
        except ConfigError as exc:
            print(f"otel-benchlab: {exc}", file=sys.stderr)
            return 2
    from otel_benchlab.views.commands import COMMANDS

    if argv and argv[0] in COMMANDS:
        parser, run, _ = COMMANDS[argv[0]]
        args = parser(f"otel-benchlab {argv[0]}").parse_args(argv[1:])
        setup_logging("text", "WARNING")
        try:
            return run(args)
        except ConfigError as exc:
            print(f"otel-benchlab {argv[0]}: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a store that is down or refuses, a file that cannot be read
            print(f"otel-benchlab {argv[0]}: {exc}", file=sys.stderr)
            return 1
    if argv and argv[0] in SUBCOMMANDS and argv[0] != "run":
        args = command_parser(argv[0]).parse_args(argv[1:])
    else:
        args = agent_parser().parse_args(argv[1:] if argv and argv[0] == "run" else argv)
    try:
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "recover":
            return cmd_recover(args)
        if args.command == "retention":
            return cmd_retention(args)
        return cmd_devices(args) if args.command == "devices" else cmd_run(args)
    except ConfigError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 1
