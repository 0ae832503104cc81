"""The parser table: every command's flags, and the config key each flag sets
(``FLAG_KEYS``, which the configuration reference reads too)."""

from __future__ import annotations

import argparse
import socket
from typing import TYPE_CHECKING

from otel_benchlab import __version__
from otel_benchlab.commands.logs import log_level
from otel_benchlab.config import load_config

if TYPE_CHECKING:
    from otel_benchlab.config import Config

SUBCOMMANDS = ("run", "gst", "replay", "recover", "retention", "devices")
# The views' commands, each a module of this package with NAME_parser(prog) and
# cmd_NAME(args): name -> its line in the agent's --help.
VIEW_COMMANDS = {
    "report": "one self-contained HTML report (and --json) of one or more sessions",
    "compare": "compare sessions per stage pair with intervals and verdicts (a CI gate)",
    "sessions": "list the sessions an object store holds ([upload])",
}
LOG_LEVEL_DEFAULTS = {"run": "INFO", "gst": "INFO", "replay": "INFO", "recover": "INFO",
                      "retention": "INFO", "devices": "WARNING"}


def _common_options(p: argparse.ArgumentParser, default_level: str) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="TOML config file (env BENCHLAB_CONFIG); precedence: defaults < "
                   "file < environment < flags")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines on stderr as text or JSON (default text)")
    p.add_argument("--log-level", type=log_level, metavar="LEVEL",
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
    views = "\n".join(f"  {name:<10} {line}" for name, line in VIEW_COMMANDS.items())
    p = argparse.ArgumentParser(prog=prog, description=AGENT_DESCRIPTION.format(views=views),
                                epilog=AGENT_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"otel-benchlab {__version__}")
    p.add_argument("--simulate", nargs="?", const="video", choices=("video", "llm"),
                   default=None, metavar="video|llm",
                   help="simulated sources: a video pipeline (the default) or an LLM server "
                        "(llm: it sends its requests' spans to the agent's OTLP intake), "
                        "with a BENCHLAB (emulator on a pseudo-terminal) and a GPU")
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
        p.add_argument("--since", metavar="TIME", help="only marks from this time: ISO "
                       "8601 with an offset or Z, or a duration back from the session's "
                       "end (30m, 1h, 2d)")
        p.add_argument("--until", metavar="TIME", help="only marks before this time")
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


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, dest, None) for dest, key in FLAG_KEYS.items()
                 if dest != "pair"}
    if getattr(args, "pair", None):
        overrides["pairs"] = [list(p) for p in args.pair]
    if isinstance(overrides.get("simulate"), str):  # --simulate [video|llm]
        overrides["sim.workload"] = overrides["simulate"]
        overrides["simulate"] = True
    cfg = load_config(args.config, overrides=overrides)
    if cfg.simulate and cfg.sim.workload == "llm" and not cfg.intake.otlp_grpc:
        # The simulated server sends its spans as vLLM does, to an OTLP endpoint: the
        # agent's own intake, on a free loopback port unless one is set.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cfg.intake.otlp_grpc = f"127.0.0.1:{s.getsockname()[1]}"
    return cfg


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


