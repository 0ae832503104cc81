"""One typed config object: built-in defaults < TOML file < environment < command line.

The object is assembled from the component registry: the agent's own keys (``CoreConfig``)
come first, then one table per section, each the settings dataclass that a component
declares in its module (``Component.settings``; components that share a section, such as
``[intake]``, contribute their keys in registry order). A component also declares its
environment variables, ranges and checks, so adding a source never edits this file.

Unknown keys and bad values stop start-up with a ConfigError that names the key and where
it came from (file, variable or flag).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from otel_benchlab.components import components
from otel_benchlab.settings import (
    ConfigError,
    apply_table,
    coerce,
    set_dotted,
    setting_error,
    validate_session_id,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class CoreConfig:
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

    def pair_tuples(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.pairs]


# The agent's own environment variables; each component adds its own (Component.env).
CORE_ENV_KEYS: dict[str, str] = {
    "BENCHLAB_DATA_ROOT": "data_root",
    "BENCHLAB_SAMPLE_HZ": "sample_hz",
    "BENCHLAB_RETENTION_DAYS": "retention_days",
    "BENCHLAB_RAW_KEEP_DAYS": "raw_keep_days",
    "BENCHLAB_SESSION": "session_id",
}

# Numbers that parse but cannot work (a simulation at 1e9 fps grows memory by the GB, a
# CapFrameX sample time of 0 divides by zero): dotted key -> (low, high); a low of 0 means
# "above zero" (an integer 0; 0.0 allows zero). NaN and infinity are refused for every
# number when the value is read. Each component adds its own (Component.ranges).
CORE_RANGES: dict[str, tuple[float, float]] = {
    "duration_s": (0, 366 * 86400), "pair_window_s": (0, 3600), "sample_hz": (0, 1000),
    "power_max_gap_s": (0, 3600), "status_interval_s": (0.1, 86400),
    "retention_days": (0.0, 36500), "raw_keep_days": (0.0, 36500),
    "retention_interval_h": (0.0, 8760),
    "queue_size": (1, 10_000_000),
}


@cache
def sections() -> tuple[tuple[str, tuple[type, ...]], ...]:
    """Each config section and the settings dataclasses that make it, in registry order."""
    found: dict[str, list[type]] = {}
    for comp in components():
        if comp.settings is not None:
            found.setdefault(comp.section, []).append(comp.settings)
    return tuple((name, tuple(classes)) for name, classes in found.items())


def _section_class(name: str, classes: tuple[type, ...]) -> type:
    """One component's settings as they are; several components' keys as one table."""
    if len(classes) == 1:
        return classes[0]
    merged = []
    for cls in classes:
        hints = get_type_hints(cls)
        merged += [(f.name, hints[f.name], dataclasses.field(
            default=f.default, default_factory=f.default_factory))
            for f in dataclasses.fields(cls)]
    merged_class = dataclasses.make_dataclass(f"{name.capitalize()}Config", merged)
    merged_class.__module__ = __name__
    return merged_class


@cache
def _config_class() -> type:
    fields = [(name, cls, dataclasses.field(default_factory=cls))
              for name, cls in ((n, _section_class(n, c)) for n, c in sections())]
    config_class = dataclasses.make_dataclass("Config", fields, bases=(CoreConfig,))
    config_class.__module__ = __name__
    return config_class


@cache
def _env_keys() -> dict[str, str]:
    keys = dict(CORE_ENV_KEYS)
    for comp in components():
        keys.update({var: f"{comp.section}.{key}" for var, key in comp.env.items()})
    return keys


@cache
def _ranges() -> dict[str, tuple[float, float]]:
    ranges = dict(CORE_RANGES)
    for comp in components():
        ranges.update({f"{comp.section}.{key}": r for key, r in comp.ranges.items()})
    return ranges


# ``Config``, ``ENV_KEYS`` and ``RANGES`` are assembled from the registry when first asked
# for, not at import: a component's module may import this one (for ConfigError,
# attribution_delay_s) while the registry is still being read.
_ASSEMBLED: dict[str, Callable[[], Any]] = {"Config": _config_class, "ENV_KEYS": _env_keys,
                                            "RANGES": _ranges}


def __getattr__(name: str) -> Any:
    if name in _ASSEMBLED:
        return _ASSEMBLED[name]()
    raise AttributeError(f"module 'otel_benchlab.config' has no attribute {name!r}")


def attribution_delay_s(cfg: Any) -> float:
    """How far behind now the live path shares energy out: ``attribution.delay_s``, or the
    pairing window + the power gap + 1 s, and 6 s more with the OTLP intake on (an OTel
    SDK's BatchSpanProcessor sends every 5 s by default)."""
    if cfg.attribution.delay_s is not None:
        return cfg.attribution.delay_s
    intake = 6.0 if cfg.intake.otlp_grpc or cfg.intake.otlp_http else 0.0
    return cfg.pair_window_s + cfg.power_max_gap_s + 1.0 + intake


def load_config(
    path: str | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Build the Config: defaults, then the TOML file, then ``env``, then ``overrides``."""
    env = dict(os.environ) if env is None else env
    cfg = _config_class()()
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
        apply_table(cfg, table, path)
    for var, dotted in _env_keys().items():
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


def _apply_otel_env(cfg: Any, env: dict[str, str]) -> None:
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
        ms = coerce(env["OTEL_METRIC_EXPORT_INTERVAL"], float,
                    "environment variable OTEL_METRIC_EXPORT_INTERVAL")
        cfg.otlp.metric_interval_s = ms / 1000.0
    # The exporters, protocols, endpoints and timeouts of OTLP are planned per signal in
    # exporters/otlp.py, which knows the per-signal variables.


def _values(key: str, obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, list):
        yield from ((f"{key}[{i}]", v) for i, v in enumerate(obj))
    elif isinstance(obj, dict):
        yield from ((f"{key}[{i}]", v) for i, v in enumerate(obj.values()))
    else:
        yield key, obj


def validate(cfg: Any) -> None:
    # Power-source labels are lowercase everywhere (schema.PRIMARY_POWER_SOURCES).
    cfg.power_sources = [p.strip().lower() for p in cfg.power_sources]
    for i, pair in enumerate(cfg.pairs):
        if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
            raise setting_error(f"pairs[{i}]", f"{pair!r} must be two different stage names")
    if not cfg.pairs:
        raise setting_error("pairs", "is empty: nothing would be measured; give at least one "
                            "pair (--pair A B, or pairs = [[\"A\", \"B\"]])")
    for key, (lo, hi) in _ranges().items():
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        for where, val in _values(key, obj):
            if val is None:
                continue
            # An integer 0 is exclusive (rates, periods and sizes that must be above zero);
            # a float 0.0 is inclusive (0 days, 0 s of waiting are meaningful).
            above_zero = type(lo) is int and lo == 0
            if not (lo < val <= hi if above_zero else lo <= val <= hi):
                lo_s = "> 0" if above_zero else f">= {lo:g}"
                raise setting_error(where, f"{val!r} is out of range: it must be {lo_s} and "
                                    f"<= {hi:g}")
    for comp in components():
        if comp.validate is not None:
            comp.validate(getattr(cfg, comp.section))
    if cfg.log_format not in ("text", "json"):
        raise setting_error("log_format", "must be 'text' or 'json'")
    if cfg.session_id:
        validate_session_id(cfg.session_id)


def config_as_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
