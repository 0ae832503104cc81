"""CPU utilisation as samples (raw Parquet), so a session can correlate stage latency with
CPU load. The metrics (system.cpu.utilization ...) come from
opentelemetry-instrumentation-system-metrics; this records the same figure per sample and
exports no instrument of its own."""

from __future__ import annotations

import psutil

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.host import HostConfig
from otel_benchlab.records import SensorInfo

from .host import HostSourceKind


class CpuUtilization:
    name = "host-cpu"
    # Once a second: /proc/stat counts in 10 ms steps, so over 100 ms on 2 cores the
    # figure moves in 5 % steps, and each read wakes two threads.
    period_s = 1.0

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # the first call starts the interval

    def sensors(self) -> list[SensorInfo]:
        return [SensorInfo(self.name, "utilization", "", "1")]

    def read(self) -> dict[str, float]:
        return {"utilization": psutil.cpu_percent(None) / 100.0}

    def close(self) -> None:
        pass


def _open(cfg: HostConfig, counters: AgentCounters) -> tuple[list, str]:
    return [CpuUtilization()], ""


SOURCE = HostSourceKind("cpu utilisation", "cpu", _open)
