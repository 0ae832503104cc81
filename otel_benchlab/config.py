"""One typed config object: built-in defaults < TOML file < environment < command line.

Unknown keys and bad values stop start-up with a ConfigError that names the key and where
it came from (file, variable or flag).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A bad setting; the message names the key, where it came from and what to do."""


SIM_SOURCES = ("pipeline", "benchlab", "gpu")


@dataclass
class SimulateConfig:
    # frames a second of each simulated stream
    fps: float = 60.0
    # the simulated pipeline's stages, in order
    stages: list[str] = field(default_factory=lambda: ["ingress", "encoded", "inference_done"])
    # its streams
    streams: list[str] = field(default_factory=lambda: ["cam0"])
    # its name
    pipeline: str = "sim"
    # one mean latency per step between stages
    stage_latency_ms: list[float] = field(default_factory=lambda: [8.0, 12.0])
    jitter: float = 0.15  # relative standard deviation of each stage latency
    mark_loss: float = 0.01  # probability that any one mark is lost
    # marks carry frame ids (false: paired by order)
    frame_ids: bool = True
    benchlab_product: str = "original"  # the emulated meter: "original" or "benchlab2"
    # the emulated BENCHLAB's firmware version
    benchlab_firmware: int = 6
    # Which simulated sources run with --simulate; leave one out to use the real one
    # (real probes against simulated power: sources = ["benchlab", "gpu"]).
    sources: list[str] = field(default_factory=lambda: list(SIM_SOURCES))


@dataclass
class BenchlabControlConfig:
    rgb_feedback: bool = False  # RGB colour from pipeline latency
    rgb_pair: str = ""  # "A->B" whose latency drives it; "" = the first pair
    # RGB feedback: green below this median latency
    green_below_ms: float = 10.0
    # RGB feedback: red above it (yellow between)
    red_above_ms: float = 20.0
    fan_auto: bool = False  # fan duty from temperature
    # automatic fan: the duty starts rising here
    fan_threshold_c: float = 60.0
    # automatic fan: full duty from here
    fan_full_c: float = 80.0
    # automatic fan: the lowest duty (0-255)
    fan_min_duty: int = 25
    # automatic fan: the highest duty (0-255)
    fan_max_duty: int = 100
    dry_run: bool = False  # log what would be written instead of writing


@dataclass
class BenchlabConfig:
    # read BENCHLAB devices (without --simulate)
    enabled: bool = True
    device: str = "auto"  # "auto", a port path, or "uid:UID"
    max_rtt_ms: float = 20.0  # a sample whose round trip is longer is flagged uncertain
    # per request
    read_timeout_ms: float = 250.0
    control: BenchlabControlConfig = field(default_factory=BenchlabControlConfig)


@dataclass
class TracesConfig:
    # share of frames exported as traces (OTEL_TRACES_SAMPLER_ARG)
    sample_ratio: float = 1.0
    # Frames whose pair latency is over its target are always traced ("A->B" = seconds).
    latency_targets_s: dict[str, float] = field(default_factory=dict)


@dataclass
class OtlpConfig:
    # Exporters per signal ("otlp", "console", "none"); OTEL_TRACES_EXPORTER and
    # OTEL_METRICS_EXPORTER override them. The OTLP variables (per-signal endpoints, headers,
    # protocol, timeouts) override the keys below; see exporters/otlp.py.
    traces_exporter: list[str] = field(default_factory=lambda: ["otlp"])
    # otlp, console or none (OTEL_METRICS_EXPORTER)
    metrics_exporter: list[str] = field(default_factory=lambda: ["otlp"])
    endpoint: str = ""  # "" = the exporters' own default (or the OTEL_* variables)
    protocol: str = ""  # "grpc" or "http/protobuf"; "" = grpc
    timeout_s: float = 5.0  # per export attempt
    # metric export period (OTEL_METRIC_EXPORT_INTERVAL, ms)
    metric_interval_s: float = 60.0
    # At exit, how long undelivered telemetry may hold the agent up (a dead collector).
    flush_timeout_s: float = 2.0


@dataclass
class PrometheusConfig:
    bind: str = "127.0.0.1:9109"  # "" or "off" disables the endpoint


@dataclass
class ParquetConfig:
    # write aligned/ and raw/ Parquet parts
    enabled: bool = True
    # a part is closed after this many rows
    part_rows: int = 200_000
    # or after this many seconds
    part_seconds: float = 60.0


@dataclass
class CapFrameXConfig:
    # write a CapFrameX capture per pair
    enabled: bool = True
    # the captures' Application name (CX_APP)
    app: str = "otel-benchlab"
    watch_dir: str = ""  # also copy finished files here (CapFrameX's capture folder)
    sample_time_ms: int = 100  # Pmd* power array spacing in the JSON


@dataclass
class HostConfig:
    # Power and sensors every GPU server has, read by one sampler at sample_hz. Each is on
    # where its hardware is found (absent: one log line).
    nvml: bool = True  # NVIDIA GPUs and MIG instances (nvidia-ml-py)
    rapl: bool = True  # CPU package energy (powercap: Intel and AMD RAPL)
    hwmon: bool = True  # /sys/class/hwmon: temperatures, fans, power (amdgpu)
    cpu: bool = True  # CPU utilisation as samples in raw Parquet
    # where RAPL (class/powercap) and hwmon (class/hwmon) are read
    sysfs_root: str = "/sys"


@dataclass
class KubernetesConfig:
    # The kubelet's PodResources socket: which pod holds which GPU. Absent: no attribution.
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    # how often GPU-to-pod attribution is refreshed
    pod_resources_refresh_s: float = 30.0


@dataclass
class ProbeConfig:
    # Where the agent listens for probe datagrams (otel_benchlab.probe, `gst --to-agent`):
    # udp://HOST:PORT, unix:///path (a datagram socket), or "off". BENCHLAB_PROBE_ADDR sets
    # it for the agent and the probes alike.
    listen: str = "udp://127.0.0.1:4797"


@dataclass
class LogPatternConfig:
    path: str = ""  # a log file to follow, or "-" for standard input
    pattern: str = ""  # a regular expression; named groups frame (or iteration), ts
    stage: str = ""  # the stage a matching line marks
    pipeline: str = "log"
    stream: str = "main"
    ts_format: str = ""  # strptime format of the ts group; "" = the time the line is read
    from_start: bool = False  # read what the file holds already (default: only new lines)
    # Logs that print one line per iteration (at its end): each match also marks this
    # stage for the next frame, so the pair (next_stage, stage) spans one whole iteration.
    next_stage: str = ""


@dataclass
class IntakeConfig:
    # OTLP intake: "" = off; HOST:PORT (a port alone is loopback).
    otlp_grpc: str = ""
    # OTLP/HTTP intake, as otlp_grpc
    otlp_http: str = ""
    # Incoming spans whose name matches one of these (names or globs) become stage spans.
    span_stages: list[str] = field(default_factory=list)
    # Incoming span events with these names become stage marks.
    event_stages: list[str] = field(default_factory=list)
    frame_attribute: str = "benchlab.frame"  # where a span or event carries its frame id
    forward_queue: int = 2048  # OTLP requests held for upstream; more are dropped, counted
    # How late a mark or span may arrive after its own time (a sender's batching and
    # retries: the OTel SDK's batch processor waits 5 s, then retries with back-off) and
    # still get its energy: the power history is kept this much longer than the pairing
    # window. Later ones are kept without energy and counted (benchlab.agent.input.late).
    max_delay_s: float = 60.0
    # Seed-format JSONL mark files to follow (ts_ns monotonic or Unix epoch ns).
    jsonl: list[str] = field(default_factory=list)
    jsonl_from_start: bool = True  # read what the file holds already, then follow it
    # log files whose lines become marks ([[intake.log]] tables)
    log: list[LogPatternConfig] = field(default_factory=list)


@dataclass
class AttributionConfig:
    # Each instant's power is shared among the spans running then (equal shares unless
    # weighted), so attributed energies plus idle add up to the meter's. Live, an interval
    # is shared out once no span that can still arrive overlaps it: this long after it.
    # Unset: the pairing window + the power gap + 1 s, and 6 s more with the OTLP intake
    # on (an OTel SDK's batch processor sends every 5 s). A span that arrives later keeps
    # its while-it-ran energy and is counted unattributed (replay computes it exactly).
    delay_s: float | None = None
    # Power source label -> stage names/globs: only those stages share that source, and a
    # stage named here shares only the sources that name it (the others share the rest).
    sources: dict[str, list[str]] = field(default_factory=dict)
    # Stage name/glob -> weight of its share (default 1).
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class UploadConfig:
    # Where every closed Parquet part, session.json and the CapFrameX captures go:
    # s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
    # abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX, or an absolute path (a shared
    # volume). "" = off. Credentials come from each provider's own variables and files
    # (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, the pod's workload identity).
    uri: str = ""
    # an S3-compatible store's address (MinIO, Ceph RGW), e.g. http://minio:9000
    endpoint: str = ""
    region: str = ""  # the S3 region; "" = AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config
    node: str = ""  # the node= partition; "" = k8s.node.name, else the host name
    # the average upload rate at most (bytes a second); 0 = no limit
    bandwidth_bytes_s: float = 0.0
    # the longest wait between tries (the back-off doubles from 1 s), and between tries
    # while the store refuses (credentials, no bucket)
    retry_max_s: float = 300.0
    # at exit, how long what is left may hold the agent up (the rest goes at the next start)
    flush_timeout_s: float = 10.0


@dataclass
class Config:
    # use the simulated sources (--simulate)
    simulate: bool = False
    # stop measuring after this many seconds; unset: until SIGINT/SIGTERM
    duration_s: float | None = None
    # letters, digits, '.', '_', '-'; empty: <UTC time>-<hex>
    session_id: str = ""
    # where sessions are stored
    data_root: str = field(
        default_factory=lambda: str(
            Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "otel-benchlab"
        )
    )
    # the stage pairs to measure (CX_STAGE_A + CX_STAGE_B add one)
    pairs: list[list[str]] = field(
        default_factory=lambda: [["ingress", "encoded"], ["encoded", "inference_done"]]
    )
    # the longest a mark waits for its partner
    pair_window_s: float = 2.0
    # sensor sampling rate
    sample_hz: float = 10.0
    power_sources: list[str] = field(default_factory=list)  # empty = every power source seen
    # power samples further apart make energy missing, not guessed
    power_max_gap_s: float = 0.5
    # sessions older than this are removed
    retention_days: float = 90.0
    # raw/ older than this is removed
    raw_keep_days: float = 7.0
    retention_interval_h: float = 6.0  # the agent applies retention this often; 0 = never
    # the live lines' period
    status_interval_s: float = 5.0
    # text or json
    log_format: str = "text"
    # records waiting for the processors; a full queue is counted
    queue_size: int = 100_000
    sim: SimulateConfig = field(default_factory=SimulateConfig)
    benchlab: BenchlabConfig = field(default_factory=BenchlabConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    parquet: ParquetConfig = field(default_factory=ParquetConfig)
    capframex: CapFrameXConfig = field(default_factory=CapFrameXConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    host: HostConfig = field(default_factory=HostConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)

    def pair_tuples(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.pairs]


def attribution_delay_s(cfg: Config) -> float:
    """How far behind now the live path shares energy out: ``attribution.delay_s``, or the
    pairing window + the power gap + 1 s, and 6 s more with the OTLP intake on (an OTel
    SDK's BatchSpanProcessor sends every 5 s by default)."""
    if cfg.attribution.delay_s is not None:
        return cfg.attribution.delay_s
    intake = 6.0 if cfg.intake.otlp_grpc or cfg.intake.otlp_http else 0.0
    return cfg.pair_window_s + cfg.power_max_gap_s + 1.0 + intake


# Environment variables and the dotted key each one sets.
ENV_KEYS: dict[str, str] = {
    "BENCHLAB_DATA_ROOT": "data_root",
    "BENCHLAB_SAMPLE_HZ": "sample_hz",
    "BENCHLAB_PROM": "prometheus.bind",
    "BENCHLAB_RETENTION_DAYS": "retention_days",
    "BENCHLAB_RAW_KEEP_DAYS": "raw_keep_days",
    "BENCHLAB_SESSION": "session_id",
    "BENCHLAB_DEVICE": "benchlab.device",
    "CX_APP": "capframex.app",
    "BENCHLAB_PROBE_ADDR": "probe.listen",
    "BENCHLAB_UPLOAD_URI": "upload.uri",
    "BENCHLAB_UPLOAD_ENDPOINT": "upload.endpoint",
}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Turn a TOML or string value into ``typ``; raise ConfigError naming ``where``."""
    origin = get_origin(typ)
    if dataclasses.is_dataclass(typ):  # a table of an array of tables ([[intake.log]])
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        obj = typ()
        _apply(obj, value, where)
        return obj
    if origin is list:
        (item,) = get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vt = get_args(typ)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    args = [a for a in get_args(typ) if a is not type(None)]
    if args and type(None) in get_args(typ):  # Optional[X]
        if value is None or value == "":
            return None
        return _coerce(value, args[0], where)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):  # nan and inf pass float() but no setting works
                raise ConfigError(f"{where}: {value!r} is not a finite number")
            return number
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {value!r} is not a valid {getattr(typ, '__name__', typ)}"
        ) from None
    raise ConfigError(f"{where}: unsupported setting type {typ}")  # pragma: no cover


def _apply(obj: Any, table: dict[str, Any], where: str) -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(
                f"{where}: unknown key '{key}' (known: {', '.join(sorted(names))})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table")
            _apply(current, value, f"{where} [{key}]")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}: key '{key}'"))


def set_dotted(cfg: Config, dotted: str, value: Any, where: str) -> None:
    *parents, leaf = dotted.split(".")
    obj: Any = cfg
    for p in parents:
        obj = getattr(obj, p)
    _apply(obj, {leaf: value}, where)


def load_config(
    path: str | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults, then the TOML file, then ``env``, then ``overrides``."""
    env = dict(os.environ) if env is None else env
    cfg = Config()
    path = path or env.get("BENCHLAB_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (TOML files are UTF-8): byte "
                              f"{exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        _apply(cfg, table, path)
    for var, dotted in ENV_KEYS.items():
        if env.get(var, "") != "":
            set_dotted(cfg, dotted, env[var], f"environment variable {var}")
    _apply_otel_env(cfg, env)
    a, b = env.get("CX_STAGE_A", ""), env.get("CX_STAGE_B", "")
    if a and b and [a, b] not in cfg.pairs:
        cfg.pairs.append([a, b])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(cfg, dotted, value, f"option --{dotted.replace('_', '-')}")
    validate(cfg)
    return cfg


def _apply_otel_env(cfg: Config, env: dict[str, str]) -> None:
    """The standard OTEL_* variables that change what the agent itself does."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    known = ("", "always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")
    if sampler not in known:
        # Frames have no parent, so parentbased_* act as their root sampler.
        raise ConfigError(f"environment variable OTEL_TRACES_SAMPLER: {sampler!r} is not "
                          f"supported; use one of {', '.join(known[1:])}")
    if sampler in ("always_off", "parentbased_always_off"):
        cfg.traces.sample_ratio = 0.0
    elif sampler in ("always_on", "parentbased_always_on"):
        cfg.traces.sample_ratio = 1.0
    if env.get("OTEL_TRACES_SAMPLER_ARG", "") != "" and sampler not in (
        "always_off", "parentbased_always_off", "always_on", "parentbased_always_on"
    ):
        set_dotted(cfg, "traces.sample_ratio", env["OTEL_TRACES_SAMPLER_ARG"],
                   "environment variable OTEL_TRACES_SAMPLER_ARG")
    if env.get("OTEL_METRIC_EXPORT_INTERVAL", "") != "":
        ms = _coerce(env["OTEL_METRIC_EXPORT_INTERVAL"], float,
                     "environment variable OTEL_METRIC_EXPORT_INTERVAL")
        cfg.otlp.metric_interval_s = ms / 1000.0
    # The exporters, protocols, endpoints and timeouts of OTLP are planned per signal in
    # exporters/otlp.py, which knows the per-signal variables.


# Numbers that parse but cannot work (a simulation at 1e9 fps grows memory by the GB, a
# CapFrameX sample time of 0 divides by zero): dotted key -> (low, high); a low of 0 means
# "above zero" (an integer 0; 0.0 allows zero). NaN and infinity are refused for every
# number when the value is read.
RANGES: dict[str, tuple[float, float]] = {
    "duration_s": (0, 366 * 86400), "pair_window_s": (0, 3600), "sample_hz": (0, 1000),
    "power_max_gap_s": (0, 3600), "status_interval_s": (0.1, 86400),
    "retention_days": (0.0, 36500), "raw_keep_days": (0.0, 36500),
    "retention_interval_h": (0.0, 8760),
    "queue_size": (1, 10_000_000),
    "sim.fps": (0, 1000), "sim.stage_latency_ms": (0.0, 60_000), "sim.jitter": (0.0, 10),
    "sim.benchlab_firmware": (2, 255),
    "benchlab.max_rtt_ms": (0, 60_000), "benchlab.read_timeout_ms": (1, 60_000),
    "benchlab.control.green_below_ms": (0.0, 60_000),
    "benchlab.control.red_above_ms": (0.0, 60_000),
    "benchlab.control.fan_threshold_c": (-50, 150), "benchlab.control.fan_full_c": (-50, 150),
    "traces.latency_targets_s": (0, 3600),
    "otlp.timeout_s": (0, 3600), "otlp.metric_interval_s": (0, 86400),
    "otlp.flush_timeout_s": (0.0, 600),
    "parquet.part_rows": (1, 100_000_000), "parquet.part_seconds": (0, 86400),
    "capframex.sample_time_ms": (1, 60_000),
    "intake.forward_queue": (1, 1_000_000), "intake.max_delay_s": (0.0, 3600),
    "attribution.delay_s": (0.0, 3600), "attribution.weights": (0, 1e6),
    "kubernetes.pod_resources_refresh_s": (0, 86400),
    "upload.bandwidth_bytes_s": (0.0, 1e12), "upload.retry_max_s": (0, 86400),
    "upload.flush_timeout_s": (0.0, 3600),
}


def validate(cfg: Config) -> None:
    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"setting '{key}': {msg}")

    # Power-source labels are lowercase everywhere (schema.PRIMARY_POWER_SOURCES).
    cfg.power_sources = [p.strip().lower() for p in cfg.power_sources]
    for i, pair in enumerate(cfg.pairs):
        if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
            raise bad(f"pairs[{i}]", f"{pair!r} must be two different stage names")
    if not 0.0 <= cfg.traces.sample_ratio <= 1.0:
        raise bad("traces.sample_ratio", "must be between 0 and 1")
    if not cfg.pairs:
        raise bad("pairs", "is empty: nothing would be measured; give at least one pair "
                  "(--pair A B, or pairs = [[\"A\", \"B\"]])")
    for key, (lo, hi) in RANGES.items():
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        for i, val in enumerate(obj if isinstance(obj, list) else
                                obj.values() if isinstance(obj, dict) else [obj]):
            if val is None:
                continue
            # An integer 0 is exclusive (rates, periods and sizes that must be above zero);
            # a float 0.0 is inclusive (0 days, 0 s of waiting are meaningful).
            above_zero = type(lo) is int and lo == 0
            if not (lo < val <= hi if above_zero else lo <= val <= hi):
                where = key if not isinstance(obj, (list, dict)) else f"{key}[{i}]"
                lo_s = "> 0" if above_zero else f">= {lo:g}"
                raise bad(where, f"{val!r} is out of range: it must be {lo_s} and <= {hi:g}")
    if not 0.0 <= cfg.sim.mark_loss < 1.0:
        raise bad("sim.mark_loss", "must be in [0, 1)")
    if len(cfg.sim.stages) < 2:
        raise bad("sim.stages", "needs at least two stages")
    if len(cfg.sim.stage_latency_ms) != len(cfg.sim.stages) - 1:
        raise bad("sim.stage_latency_ms", "needs one latency per step between stages "
                  f"({len(cfg.sim.stages) - 1} for {len(cfg.sim.stages)} stages)")
    dev = cfg.benchlab.device
    if not (dev == "auto" or dev.startswith("/") or (dev.startswith("uid:") and len(dev) > 4)):
        raise bad("benchlab.device", f"{dev!r}: use auto, a port path (/dev/ttyACM0) or "
                  "uid:UID")
    ctl = cfg.benchlab.control
    if not 0 <= ctl.fan_min_duty <= ctl.fan_max_duty <= 100:
        raise bad("benchlab.control.fan_min_duty/fan_max_duty", "need 0 <= min <= max <= 100")
    if ctl.green_below_ms > ctl.red_above_ms:
        raise bad("benchlab.control.green_below_ms", "must not exceed red_above_ms")
    if cfg.sim.benchlab_product not in ("original", "benchlab2"):
        raise bad("sim.benchlab_product", "use 'original' or 'benchlab2'")
    if cfg.log_format not in ("text", "json"):
        raise bad("log_format", "must be 'text' or 'json'")
    if cfg.otlp.protocol not in ("", "grpc", "http/protobuf"):
        raise bad("otlp.protocol", f"{cfg.otlp.protocol!r}: use 'grpc' or 'http/protobuf'")
    unknown = [x for x in cfg.sim.sources if x not in SIM_SOURCES]
    if unknown:
        raise bad("sim.sources", f"{unknown!r}: use any of {', '.join(SIM_SOURCES)}")
    parse_probe_addr(cfg.probe.listen)
    for key in ("otlp_grpc", "otlp_http"):
        parse_bind(getattr(cfg.intake, key), f"intake.{key}")
    for i, lp in enumerate(cfg.intake.log):
        where = f"intake.log[{i}]"
        if not lp.path or not lp.pattern or not lp.stage:
            raise bad(where, "needs path, pattern and stage")
        try:
            rx = re.compile(lp.pattern)
        except re.error as exc:
            raise bad(f"{where}.pattern", f"{lp.pattern!r} is not a regular expression: "
                      f"{exc}") from None
        if lp.ts_format and "ts" not in rx.groupindex:
            raise bad(f"{where}.ts_format", "is set but the pattern has no (?P<ts>...) group")
    if not cfg.sim.streams or not all(cfg.sim.streams):
        raise bad("sim.streams", "needs at least one stream name")
    parse_bind(cfg.prometheus.bind)
    uri = cfg.upload.uri.strip()
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if uri and (scheme not in ("", "s3", "gs", "gcs", "abfs", "abfss", "az", "file")
                or (not scheme and not uri.startswith("/"))):
        raise bad("upload.uri", f"{uri!r}: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, "
                  "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX or an absolute path "
                  "(a shared volume)")
    if cfg.session_id:
        validate_session_id(cfg.session_id)


def parse_probe_addr(addr: str) -> tuple[str, object] | None:
    """'udp://HOST:PORT' -> ("udp", (host, port)); 'unix:///path' -> ("unix", path);
    'off' or '' -> None."""
    text = addr.strip()
    if text.lower() in ("", "off", "none"):
        return None
    if text.startswith("unix://") and len(text) > len("unix://"):
        return "unix", text[len("unix://"):]
    if text.startswith("udp://"):
        hp = parse_bind(text[len("udp://"):], "probe.listen (BENCHLAB_PROBE_ADDR)")
        if hp is not None:
            return "udp", hp
    raise ConfigError(f"setting 'probe.listen' (BENCHLAB_PROBE_ADDR): {addr!r}: use "
                      "udp://HOST:PORT, unix:///PATH or off (example udp://127.0.0.1:4797)")


def parse_bind(bind: str, key: str = "prometheus.bind") -> tuple[str, int] | None:
    """'HOST:PORT', ':PORT' or 'PORT' -> (host, port); '', 'off' or '0' -> None. A port
    alone means loopback: listening wider is asked for by naming the address."""
    bind = bind.strip()
    if bind.lower() in ("", "off", "0", "none", "false"):
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError(
            f"setting '{key}': {bind!r} is not HOST:PORT (example 127.0.0.1:9109)"
        ) from None
    if not 0 < port_n < 65536:
        raise ConfigError(f"setting '{key}': port {port_n} out of range")
    return host, port_n


def validate_session_id(session_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", session_id) or ".." in session_id:
        raise ConfigError(
            f"session id {session_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return session_id


def config_as_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
