"""The component registry: every receiver, processor and exporter that has settings, and
which of them the agent builds from its configuration.

Each such module declares one ``COMPONENT``: its name, the config section it reads, its
settings dataclass (the section's keys, with their defaults and the comments the
configuration reference shows), its environment variables, ranges and checks, and, where
the agent builds it from here, ``enabled(cfg)`` and ``build(cfg, ctx)``. The configuration
is assembled from this registry (``config``). Adding a source is a module and one line in
``COMPONENT_MODULES``; the CLI, the configuration and the runtime do not change (the
OpenTelemetry Collector's components register the same way).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otel_benchlab.timebase import TimeBase

if TYPE_CHECKING:
    from otel_benchlab.counters import AgentCounters

# The assembled configuration (``config.Config``). It is made from this registry, so the
# registry names it loosely rather than import the module that assembles it.
Config = Any

log = logging.getLogger("otel_benchlab")

# In this order the sections appear in the configuration (and its reference page) and the
# enabled components are built (the order of the receivers in session.json).
COMPONENT_MODULES = (
    "otel_benchlab.receivers.simulated",
    "otel_benchlab.receivers.benchlab",
    "otel_benchlab.exporters.otel_traces",
    "otel_benchlab.exporters.otlp",
    "otel_benchlab.exporters.prometheus",
    "otel_benchlab.exporters.parquet",
    "otel_benchlab.exporters.capframex",
    "otel_benchlab.receivers.probe",
    "otel_benchlab.receivers.host",
    "otel_benchlab.k8s.podresources",  # before the intake, which uses what it knows
    "otel_benchlab.receivers.otlp_intake",
    "otel_benchlab.receivers.jsonl_tail",
    "otel_benchlab.receivers.log_pattern",
    "otel_benchlab.processors.attribution",
    "otel_benchlab.processors.genai",
    "otel_benchlab.exporters.upload",
    "otel_benchlab.agent.limits",
    "otel_benchlab.views.live_page",
)


@dataclass
class BuildContext:
    """What factories share: the agent's counters and time base (receivers that map Unix
    times onto the monotonic clock use the agent's own offset, so a time that comes in
    goes out unchanged), and receivers a command made itself (the GStreamer launcher's)."""

    counters: AgentCounters
    extra: list[Any] = field(default_factory=list)
    timebase: TimeBase = field(default_factory=TimeBase.measure)
    # What a component offers those built after it (the PodResources view, by name).
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Built:
    """What one component adds: receivers; span sinks (exporters that get every stage span
    once it has its power, with ``export(spans)`` and ``shutdown()``); clean-ups run after
    the agent has stopped (an emulator's pseudo-terminal); and attributions, which add
    attributes to a device's metrics by its ``hw.id`` (the pod that holds a GPU); and file
    sinks."""

    receivers: list[Any] = field(default_factory=list)
    span_sinks: list[Any] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # hw.id -> attributes to add to that device's metrics (which pod holds a GPU)
    attributions: list[Callable[[str], dict[str, str]]] = field(default_factory=list)
    # Exporters of files: told of each session file once it is complete
    # (``open_session``, ``file_closed``, ``start``, ``shutdown``): the uploader.
    file_sinks: list[Any] = field(default_factory=list)

    def add(self, other: Built) -> None:
        self.receivers += other.receivers
        self.span_sinks += other.span_sinks
        self.cleanups += other.cleanups
        self.attributions += other.attributions
        self.file_sinks += other.file_sinks

    def cleanup(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # one clean-up failing must not skip the others
                log.warning("clean-up failed: %s", exc)


@dataclass(frozen=True)
class Component:
    name: str
    section: str  # the config section it reads
    # Built by the registry when enabled; None: the runtime builds it (the exporters every
    # agent has) or nothing is built (a processor's settings).
    enabled: Callable[[Config], bool] | None = None
    build: Callable[[Config, BuildContext], Built] | None = None
    # the settings dataclass: the [section] table's keys
    settings: type | None = None
    # environment variable -> key in the section
    env: Mapping[str, str] = field(default_factory=dict)
    # key in the section -> (low, high), as config.CORE_RANGES
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # checks of the section beyond types and ranges; raises ConfigError naming the key
    validate: Callable[[Any], None] | None = None


def components() -> list[Component]:
    return [importlib.import_module(m).COMPONENT for m in COMPONENT_MODULES]


def build_all(cfg: Config, ctx: BuildContext) -> Built:
    """Build every enabled component; if one fails, undo those already built."""
    built = Built()
    try:
        for comp in components():
            if comp.enabled is not None and comp.build is not None and comp.enabled(cfg):
                built.add(comp.build(cfg, ctx))
    except BaseException:
        built.cleanup()
        raise
    # Last, so the power sources run before a launched pipeline moves its first buffer.
    built.receivers += ctx.extra
    return built
