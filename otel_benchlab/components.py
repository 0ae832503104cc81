"""The component registry: which receivers (and the exporters that belong to them) the
agent builds from its configuration.

Each receiver module declares one ``COMPONENT``: its name, the config section it reads,
``enabled(cfg)`` and ``build(cfg, ctx)``. Adding a source is a module and one line in
``COMPONENT_MODULES``; the CLI and the runtime do not change (the OpenTelemetry
Collector's components register the same way).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_benchlab.config import Config
from otel_benchlab.counters import AgentCounters
from otel_benchlab.timebase import TimeBase

log = logging.getLogger("otel_benchlab")

# Built in this order; the order is the order of the receivers in session.json.
COMPONENT_MODULES = (
    "otel_benchlab.receivers.simulated",
    "otel_benchlab.receivers.benchlab",
    "otel_benchlab.receivers.host",
    "otel_benchlab.receivers.probe",
    "otel_benchlab.receivers.jsonl_tail",
    "otel_benchlab.receivers.log_pattern",
    "otel_benchlab.k8s.podresources",  # before the intake, which uses what it knows
    "otel_benchlab.receivers.otlp_intake",
    "otel_benchlab.exporters.upload",
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
    section: str  # the config section it reads ("" = top level)
    enabled: Callable[[Config], bool]
    build: Callable[[Config, BuildContext], Built]


def components() -> list[Component]:
    return [importlib.import_module(m).COMPONENT for m in COMPONENT_MODULES]


def build_all(cfg: Config, ctx: BuildContext) -> Built:
    """Build every enabled component; if one fails, undo those already built."""
    built = Built()
    try:
        for comp in components():
            if comp.enabled(cfg):
                built.add(comp.build(cfg, ctx))
    except BaseException:
        built.cleanup()
        raise
    # Last, so the power sources run before a launched pipeline moves its first buffer.
    built.receivers += ctx.extra
    return built
