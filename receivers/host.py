"""Host sources (NVIDIA GPUs, RAPL, hwmon, CPU utilisation) on one sampler.

One clock ticks at ``sample_hz`` on absolute deadlines and wakes each source's own worker;
a source still busy with its last read (NVML calls can take milliseconds) skips that tick
(counted in ``benchlab.agent.read.overruns{source}``), so a slow source never delays the
others or the BENCHLAB, which polls on its own thread. Each source is one module that
declares ``SOURCE`` (its ``[host]`` flag and an opener that returns the sources found, or
why there are none), the way node_exporter's collectors are one file each.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from otel_benchlab.components import BuildContext, Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import Sample, SensorInfo

if TYPE_CHECKING:
    from otel_benchlab.config import Config

from . import Emit


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


log = logging.getLogger("otel_benchlab")

HOST_SOURCE_MODULES = (
    "otel_benchlab.receivers.nvml",
    "otel_benchlab.receivers.rapl",
    "otel_benchlab.receivers.hwmon",
    "otel_benchlab.receivers.host_cpu",
)


class HostSource(Protocol):
    name: str  # the source id of its samples

    # A source may also set ``period_s``: read no more often than that (CPU utilisation,
    # whose /proc/stat counts move in 10 ms steps, means little over 100 ms).

    def sensors(self) -> list[SensorInfo]: ...

    def read(self) -> dict[str, float]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HostSourceKind:
    name: str
    flag: str  # the [host] key that turns it on or off
    # -> (sources found, why there are none: "" when found or not expected)
    open: Callable[[HostConfig, AgentCounters], tuple[list[HostSource], str]]


def source_kinds() -> list[HostSourceKind]:
    return [importlib.import_module(m).SOURCE for m in HOST_SOURCE_MODULES]


def open_sources(cfg: HostConfig, counters: AgentCounters,
                 ) -> tuple[list[HostSource], dict[str, str]]:
    """Every enabled source that is present; and for each kind found absent, why."""
    found: list[HostSource] = []
    missing: dict[str, str] = {}
    for kind in source_kinds():
        if not getattr(cfg, kind.flag):
            continue
        try:
            sources, why = kind.open(cfg, counters)
        except Exception as exc:  # a source must never stop the agent
            sources, why = [], f"{type(exc).__name__}: {exc}"
        found += sources
        if not sources and why:
            missing[kind.name] = why
    return found, missing


class _Worker:
    def __init__(self, source: HostSource, emit: Emit, counters: AgentCounters) -> None:
        self.source = source
        self.emit = emit
        self.counters = counters
        self.tick = threading.Event()
        self.every = 1  # clock ticks between reads
        self.busy = False
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name=f"host-{source.name}",
                                       daemon=True)

    def _run(self) -> None:
        while True:
            self.tick.wait()
            self.tick.clear()
            if self.stopped:
                return
            t0 = time.monotonic_ns()
            try:
                values = self.source.read()
            except Exception as exc:
                values = {}
                self.counters.add("read.errors", 1, f"reading {self.source.name} failed "
                                  f"({exc}); it is tried again every sample",
                                  source=self.source.name, reason=type(exc).__name__)
            t1 = time.monotonic_ns()
            if values:
                self.emit(Sample((t0 + t1) // 2, self.source.name, values, rtt_ns=t1 - t0))
            self.busy = False


class HostSampler:
    """The receiver: one clock, one worker per source."""

    name = "host"

    def __init__(self, sources: list[HostSource], hz: float, counters: AgentCounters) -> None:
        self.sources = sources
        self.period_ns = int(1e9 / hz)
        self.counters = counters
        for s in sources:
            counters.declare("read.overruns", source=s.name)
        self._stop = threading.Event()
        self._clock: threading.Thread | None = None
        self._workers: list[_Worker] = []

    def sensors(self) -> list[SensorInfo]:
        return [i for s in self.sources for i in s.sensors()]

    def identities(self) -> list[dict]:
        return [{"source": s.name} for s in self.sources]

    def start(self, emit: Emit) -> None:
        if not self.sources:
            return
        self._workers = [_Worker(s, emit, self.counters) for s in self.sources]
        for w in self._workers:
            own = getattr(w.source, "period_s", 0.0) * 1e9
            w.every = max(1, round(own / self.period_ns))
            w.thread.start()
        # The clock ticks only as often as some source reads: each wake-up costs CPU.
        self._tick_every = math.gcd(*(w.every for w in self._workers))
        self._clock = threading.Thread(target=self._run, name="host-sampler", daemon=True)
        self._clock.start()

    def _run(self) -> None:
        deadline = time.monotonic_ns()
        period = self.period_ns * self._tick_every
        ticks = 0
        while True:
            for w in self._workers:
                if ticks % w.every:
                    continue
                if w.busy:
                    self.counters.add("read.overruns", 1, source=w.source.name)
                    continue
                w.busy = True
                w.tick.set()
            ticks += self._tick_every
            deadline += period
            now = time.monotonic_ns()
            if deadline < now:  # fell behind (suspended?): skip, do not burst
                deadline = now + period - (now - deadline) % period
            if self._stop.wait((deadline - now) / 1e9):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._clock is not None:
            self._clock.join(timeout=5)
        for w in self._workers:
            w.stopped = True
            w.tick.set()
        for w in self._workers:
            w.thread.join(timeout=5)
        for s in self.sources:
            try:
                s.close()
            except Exception as exc:
                log.debug("closing %s: %s", s.name, exc)


def describe(cfg: HostConfig, counters: AgentCounters) -> tuple[list[str], int]:
    """For ``otel-benchlab devices``: each host source with one reading of its power sources
    and how many other sensors it has; why each missing kind is missing. Also returns how
    many power sources were found."""
    sources, missing = open_sources(cfg, counters)
    lines = ["", "Host sources:"]
    power = 0
    rows = [("SOURCE", "POWER SOURCE", "SENSOR", "READING")]
    for s in sources:
        s.read()
        time.sleep(0.1)  # a second read: power from counters needs two
        values = s.read()
        sensors = s.sensors()
        for info in sensors:
            if info.power_source:
                v = values.get(info.name)
                unit = "J (counter)" if info.kind == "energy" else info.unit
                rows.append((s.name, info.power_source, info.name,
                             "no reading" if v is None else f"{v:.3f} {unit}"))
                power += 1
        others = [i for i in sensors if not i.power_source]
        rows.append((s.name, "", f"{len(others)} other sensors", ""))
        s.close()
    if sources:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
    for kind, why in missing.items():
        lines.append(f"  {kind}: {why}")
    for kind in source_kinds():
        if not getattr(cfg, kind.flag):
            lines.append(f"  {kind.name}: off ([host] {kind.flag} = false)")
    return lines, power


def build(cfg: Config, ctx: BuildContext) -> Built:
    sources, missing = open_sources(cfg.host, ctx.counters)
    for kind, why in missing.items():
        log.info("%s: %s", kind, why)
    if not sources:
        return Built()
    return Built(receivers=[HostSampler(sources, cfg.sample_hz, ctx.counters)])


def _enabled(cfg: Config) -> bool:
    h = cfg.host
    return h.nvml or h.rapl or h.hwmon or h.cpu


COMPONENT = Component("host", "host", _enabled, build, settings=HostConfig)
