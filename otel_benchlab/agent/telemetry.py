"""The agent's OpenTelemetry: resource, the push exporters per signal, the Prometheus
endpoint, the meter provider with the agent's instruments, and a bounded close.

Everything that can fail on configuration fails when this is built, before the agent has
written anything. Closing never waits on the network for longer than it is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_benchlab import __version__
from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.histograms import WithBatchHistograms
from otel_benchlab.exporters.otel_metrics import (
    AgentMetrics,
    PipelineMetrics,
    SampleMetrics,
    metric_views,
)
from otel_benchlab.exporters.otel_traces import FrameTraceExporter
from otel_benchlab.records import SensorInfo
from otel_benchlab.settings import parse_bind
from otel_benchlab.timebase import TimeBase

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger("otel_benchlab")

SYSTEM_METRICS = {
    "system.cpu.utilization": ["idle", "user", "system", "iowait"],
    "system.memory.usage": ["used", "free", "cached"],
    "system.memory.utilization": ["used", "free", "cached"],
    "system.network.io": ["transmit", "receive"],
    "system.disk.io": ["read", "write"],
    "process.cpu.utilization": None,
    "process.memory.usage": None,
}


def make_resource(extra: dict[str, str] | None = None) -> Resource:
    """Our attributes, overridden by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME.

    ``service.instance.id`` is a fresh UUID per agent process, as the conventions ask: two
    agents on one host (or a restarted pod) are two instances."""
    ours = {"service.name": "otel-benchlab", "service.version": __version__,
            "service.instance.id": str(uuid.uuid4()), "host.name": socket.gethostname(),
            **(extra or {})}
    from_env = OTELResourceDetector().detect()
    return Resource.create(ours).merge(from_env)


def make_meter_provider(resource: Resource, push_exporters: list[MetricExporter],
                        interval_s: float = 60.0,
                        extra_readers: list[MetricReader] | None = None) -> MeterProvider:
    readers: list[MetricReader] = list(extra_readers or [])
    readers += [PeriodicExportingMetricReader(e, export_interval_millis=interval_s * 1000)
                for e in push_exporters]
    # shutdown_on_exit=False: the agent shuts the provider down itself, within its exit
    # deadline; the SDK's atexit hook would wait on a dead collector with no bound.
    return MeterProvider(resource=resource, metric_readers=readers, views=metric_views(),
                         shutdown_on_exit=False)


class Telemetry:
    def __init__(self, cfg: Config, counters: AgentCounters, sensors: list[SensorInfo],
                 queue_depth: Callable[[], int], timebase: TimeBase,
                 env: Mapping[str, str] = os.environ) -> None:
        from otel_benchlab.exporters.otlp import (
            make_exporters,
            otlp_endpoints,
            plan_signal,
            sdk_disabled,
        )

        self.counters = c = counters
        self.resource = make_resource()
        self.prometheus = None
        bind = parse_bind(cfg.prometheus.bind)
        if bind and sdk_disabled(env):
            log.info("OTEL_SDK_DISABLED=true: OTLP and the Prometheus endpoint are off; "
                     "Parquet and CapFrameX are still written")
            bind = None
        readers = []
        if bind:
            # Imported only when used: each exporter's libraries cost memory.
            from otel_benchlab.exporters.prometheus import PrometheusEndpoint

            self.prometheus = PrometheusEndpoint(*bind)
            readers.append(self.prometheus.reader)
            if not (bind[0] in ("localhost", "::1") or bind[0].startswith("127.")):
                log.warning("Prometheus /metrics listens on %s:%d, reachable from other "
                            "machines; --prom-bind 127.0.0.1:%d keeps it on this one",
                            *bind, bind[1])
        self.plans = {s: plan_signal(s, cfg.otlp, env) for s in ("traces", "metrics")}
        self.destinations: dict[str, list[str]] = {}
        exporters: dict[str, list] = {"traces": [], "metrics": []}
        for signal, plan in self.plans.items():
            for where, exp in make_exporters(plan, c):
                self.destinations.setdefault(signal, []).append(where)
                exporters[signal].append(exp)
            if plan.otlp:
                c.declare("export.failures", signal=signal)
        # Where the pushes go when all are OTLP: at exit, if nothing listens at any of
        # them, there is nothing to wait for.
        pushes = exporters["traces"] + exporters["metrics"]
        endpoints = otlp_endpoints(pushes)
        self.otlp_endpoints = sorted(set(endpoints)) if len(endpoints) == len(pushes) else []
        self.traces = FrameTraceExporter(exporters["traces"], self.resource, timebase, c,
                                         spans_per_frame=1 + len(cfg.pair_tuples())) \
            if exporters["traces"] else None
        if self.traces is not None:
            for reason in ("export_failed", "queue_full"):
                c.declare("export.dropped", signal="traces", reason=reason)
        # Latency/energy histograms are aggregated by the agent in batches and added to
        # every metrics export and the Prometheus endpoint (exporters/histograms.py).
        self.pipeline = PipelineMetrics()
        if self.prometheus is not None:
            self.prometheus.registry.register(self.pipeline.histograms)
        push = [WithBatchHistograms(e, self.pipeline.histograms) for e in exporters["metrics"]]
        self.meter_provider = make_meter_provider(self.resource, push,
                                                  cfg.otlp.metric_interval_s, readers)
        meter = self.meter_provider.get_meter("otel_benchlab")
        self.pipeline.bind(meter)
        self.samples = SampleMetrics(meter, sensors,
                                     stale_after_s=max(3.0 / cfg.sample_hz, 1.0))
        AgentMetrics(meter, c, queue_depth)
        self._system = None
        try:
            from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

            self._system = SystemMetricsInstrumentor(config=SYSTEM_METRICS)
            self._system.instrument(meter_provider=self.meter_provider)
        except Exception as exc:  # an optional source: say so, run on
            log.warning("system metrics are off: %s", exc)

    def start(self) -> None:
        if self.prometheus:
            self.prometheus.start()

    def banner(self) -> list[str]:
        lines = [f"  Prometheus: {self.prometheus.url}" if self.prometheus else
                 "  Prometheus: off"]
        if self.prometheus and "/" in self.prometheus.routes:
            lines.append(f"  live page: {self.prometheus.url.removesuffix('metrics')}")
        for signal in ("traces", "metrics"):
            where = self.destinations.get(signal)
            lines.append(f"  {signal}: {', '.join(where) if where else 'off'}")
        return lines

    def close(self, flush_s: float, hurry: threading.Event) -> dict:
        """Flush traces and metrics for at most ``flush_s`` (not at all once ``hurry`` is
        set: a second SIGINT), then shut the exporters down, which abandons retries.
        Returns what was not delivered."""
        def flush() -> None:
            if self.traces is not None:
                self.traces.force_flush()
            self.meter_provider.force_flush()

        from otel_benchlab.exporters.otlp import endpoint_refuses

        t0 = time.monotonic()
        flusher = threading.Thread(target=flush, name="otel-flush", daemon=True)
        flusher.start()
        # A collector that refuses connections cannot take anything in the deadline: the
        # exit does not wait for it (one that accepts and hangs still gets the deadline).
        refused = bool(self.otlp_endpoints) and all(endpoint_refuses(e)
                                                    for e in self.otlp_endpoints)
        if refused:
            log.info("nothing listens at %s: not waiting for the OTLP flush",
                     ", ".join(self.otlp_endpoints))
        while flusher.is_alive() and not hurry.is_set() and not refused:
            left = flush_s - (time.monotonic() - t0)
            if left <= 0:
                break
            flusher.join(min(0.05, left))
        undelivered: dict = {}
        if self.traces is not None:
            sent = self.counters.get("export.sent", signal="traces")
            failed = self.counters.get("export.dropped", signal="traces",
                                       reason="export_failed")
            waiting = self.traces.handed - sent - failed
            if waiting > 0:
                undelivered["spans"] = waiting
        if flusher.is_alive() and self.destinations.get("metrics"):
            undelivered["metrics"] = "last export"

        def shut() -> None:
            if self.traces is not None:
                self.traces.shutdown(timeout_millis=100)
            self.meter_provider.shutdown(timeout_millis=100)

        closer = threading.Thread(target=shut, name="otel-close", daemon=True)
        closer.start()
        # Exporters abandon retries on shutdown; bounded all the same, and not waited for at
        # all after a second signal (the threads are daemons: exit does not wait on them).
        closer.join(0.0 if hurry.is_set() else 0.1 if refused else 0.5)
        if self._system is not None:
            with contextlib.suppress(Exception):
                self._system.uninstrument()
        if self.prometheus:
            try:
                self.prometheus.shutdown()
            except OSError as exc:
                log.error("stopping the Prometheus endpoint failed: %s", exc)
        if undelivered:
            where = "; ".join(f"{s}: {', '.join(d)}" for s, d in self.destinations.items())
            log.warning("not delivered at exit (%s): %s; waited %.1f s (otlp.flush_timeout_s). "
                        "Everything is in the session's Parquet files.", where,
                        ", ".join(f"{k}: {v}" for k, v in undelivered.items()),
                        time.monotonic() - t0)
        return undelivered
