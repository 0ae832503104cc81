"""OpenTelemetry instruments: pipeline histograms, hardware readings, agent self-metrics.

Histogram boundaries are explicit: the SDK's defaults are made for milliseconds, and in
seconds every stage latency would land in the first bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import numpy as np
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from otel_benchlab.counters import AgentCounters
from otel_benchlab.processors.genai import requests_of
from otel_benchlab.records import SensorInfo, SpanBatch, Unpaired

from .histograms import BatchHistogram, BatchHistograms

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006,
    0.008, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)
RTT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
                 0.02, 0.03, 0.05, 0.1, 0.25)
ENERGY_BUCKETS_J = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
)


def metric_views() -> list[View]:
    return [
        View(instrument_name="benchlab.agent.sample.rtt",
             aggregation=ExplicitBucketHistogramAggregation(RTT_BUCKETS_S)),
    ]


def pair_attributes(pipeline: str, stage_from: str, stage_to: str) -> dict[str, str]:
    return {"benchlab.pipeline": pipeline, "benchlab.stage.from": stage_from,
            "benchlab.stage.to": stage_to}


class PipelineMetrics:
    """Stage latency and energy histograms (aggregated a batch at a time: see histograms.py)
    and the unpaired-mark counter."""

    def __init__(self, meter: Meter | None = None) -> None:
        self.latency = BatchHistogram(
            "benchlab.pipeline.latency", "s", "Latency between two stages of one frame",
            LATENCY_BUCKETS_S, "benchlab_pipeline_latency_seconds")
        self.energy = BatchHistogram(
            "benchlab.pipeline.energy", "J",
            "Energy the source used while one frame went from one stage to the next (with "
            "overlapping spans, the same joules count for each)",
            ENERGY_BUCKETS_J, "benchlab_pipeline_energy_joules")
        self.energy_attributed = BatchHistogram(
            "benchlab.pipeline.energy.attributed", "J",
            "The frame's share of the source's energy from one stage to the next (power "
            "shared among the spans running at each instant: these add up to the meter's)",
            ENERGY_BUCKETS_J, "benchlab_pipeline_energy_attributed_joules")
        self.request_energy = BatchHistogram(
            "benchlab.genai.request.energy", "J",
            "An LLM request's share of the source's energy: its prefill and decode shares "
            "(queued time gets none)", ENERGY_BUCKETS_J,
            "benchlab_genai_request_energy_joules")
        self.token_energy = BatchHistogram(
            "benchlab.genai.output_token.energy", "J",
            "An LLM request's attributed energy per output token", ENERGY_BUCKETS_J,
            "benchlab_genai_output_token_energy_joules")
        self.histograms = BatchHistograms([self.latency, self.energy,
                                           self.energy_attributed, self.request_energy,
                                           self.token_energy])
        self.tokens = None
        if meter is not None:
            self.bind(meter)
        self._attr_cache: dict[tuple[str, str, str, str], dict[str, str]] = {}

    def bind(self, meter: Meter) -> None:
        """The unpaired counter is an SDK instrument (it is rare): made once the meter is."""
        self.unpaired = meter.create_counter(
            "benchlab.pipeline.unpaired", unit="{mark}",
            description="Stage marks that found no partner, by reason")
        self.tokens = meter.create_counter(
            "benchlab.genai.tokens", unit="{token}",
            description="Tokens of the LLM requests measured, by model and type (input, "
                        "output)")

    def _attrs(self, pipeline: str, a: str, b: str, source: str = "") -> dict[str, str]:
        # One dict per series, reused: building attribute dicts per record is measurable
        # at hundreds of records a second.
        key = (pipeline, a, b, source)
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = pair_attributes(pipeline, a, b)
            if source:
                attrs["benchlab.power.source"] = source
            attrs = self._attr_cache[key] = attrs
        return attrs

    def export(self, batch: SpanBatch) -> None:
        """A batch: grouped by series here, counted into buckets by numpy."""
        latency_s = (batch.end_ns - batch.start_ns) / 1e9
        for key, idx in batch.by_pair():
            self.latency.record_many(self._attrs(*key), latency_s[idx])
            for label, (_, energy) in batch.power.items():
                joules = energy[idx]
                joules = joules[~np.isnan(joules)]
                if joules.size:
                    self.energy.record_many(self._attrs(*key, label), joules)
            for label, attributed in batch.attributed.items():
                joules = attributed[idx]
                joules = joules[~np.isnan(joules)]
                if joules.size:
                    self.energy_attributed.record_many(self._attrs(*key, label), joules)
        if any(s.genai is not None for s in batch.spans):
            self._requests(batch)

    def _requests(self, batch: SpanBatch) -> None:
        """LLM requests (``processors.genai``): energy per request and per output token by
        model and source, and their tokens: a model's requests of a batch at once."""
        by_model: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for i, model, g, _ in requests_of(batch, None):
            rows, n_in, n_out = by_model.setdefault(model, ([], [], []))
            rows.append(i)
            n_in.append(g.input_tokens or 0)
            n_out.append(g.output_tokens or 0)
        for model, (rows, n_in, n_out) in by_model.items():
            out = np.asarray(n_out, np.float64)
            for label, attributed in batch.attributed.items():
                joules = attributed[rows]
                known = ~np.isnan(joules)
                if not known.any():
                    continue
                attrs = self._model_attrs(model, label)
                self.request_energy.record_many(attrs, joules[known])
                per_token = known & (out > 0)
                if per_token.any():
                    self.token_energy.record_many(attrs, joules[per_token] / out[per_token])
            if self.tokens is not None:
                for kind, n in (("input", sum(n_in)), ("output", sum(n_out))):
                    if n:
                        self.tokens.add(n, {"gen_ai.response.model": model,
                                            "gen_ai.token.type": kind})

    def _model_attrs(self, model: str, label: str) -> dict[str, str]:
        key = ("\0genai", model, label, "")
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = self._attr_cache[key] = {"gen_ai.response.model": model,
                                             "benchlab.power.source": label}
        return attrs

    def export_unpaired(self, items: Iterable[Unpaired]) -> None:
        for u in items:
            self.unpaired.add(1, {**pair_attributes(u.pipeline, u.stage_from, u.stage_to),
                                  "reason": u.reason})


# Instrument kind for the hw.* names the conventions make up-down counters.
_UPDOWN = {"hw.gpu.memory.usage", "hw.gpu.memory.limit"}
# Counters whose values a device keeps itself (NVML's energy, RAPL's): exported as read.
_ENERGY_OF = {"hw.power": "hw.energy", "hw.host.power": "hw.host.energy",
              "benchlab.rail.power": "benchlab.rail.energy"}
# The HELP text of every sensor metric (the conventions' briefs where they have one).
DESCRIPTIONS = {
    "hw.host.power": "Power drawn by the whole machine (BENCHLAB SYS)",
    "hw.host.energy": "Energy drawn by the whole machine since the agent started",
    "hw.power": "Power of a component: the CPU, GPU and mainboard groups of a BENCHLAB "
                "(which add up to the machine) or a device's own sensor",
    "hw.energy": "Energy of a component: integrated from its power, or the device's own "
                 "counter",
    "benchlab.rail.power": "Power on one BENCHLAB-measured supply rail (EPS, ATX, PCIe, "
                           "12VHPWR)",
    "benchlab.rail.energy": "Energy on one BENCHLAB-measured supply rail since the agent "
                            "started",
    "hw.voltage": "Voltage of a rail or a BENCHLAB input",
    "benchlab.current": "Current on one BENCHLAB-measured supply rail",
    "hw.temperature": "Temperature at a sensor location",
    "benchlab.humidity": "Relative humidity at the BENCHLAB, as a fraction",
    "hw.fan.speed": "Fan speed",
    "hw.fan.speed_ratio": "Fan duty, as a fraction of full speed",
    "benchlab.fan.enabled": "Whether a BENCHLAB fan header is enabled (1) or not (0)",
    "benchlab.switch.fan": "Position of the BENCHLAB fan profile switch",
    "benchlab.switch.rgb": "Position of the BENCHLAB RGB profile switch",
    "benchlab.rgb.external": "State of the BENCHLAB external RGB output",
    "benchlab.fault.status": "BENCHLAB fault status bits",
    "benchlab.fault.log": "BENCHLAB fault log bits (latched)",
    "hw.gpu.utilization": "Share of time the GPU was busy",
    "hw.gpu.memory.usage": "GPU memory in use",
    "hw.gpu.memory.limit": "GPU memory in total",
    "hw.gpu.memory.utilization": "Share of time the GPU's memory was being read or written",
    "benchlab.gpu.power.limit": "The GPU's enforced power limit",
    "benchlab.gpu.clock.sm": "The GPU's SM clock",
    "benchlab.gpu.clock.memory": "The GPU's memory clock",
    "benchlab.gpu.throttle_reasons": "Why the GPU's clocks are held down (NVML clock event "
                                     "reason bits)",
    "benchlab.gpu.pcie.throughput": "PCIe traffic of the GPU, by direction",
}


class SampleMetrics:
    """Latest reading of every described sensor as an observable instrument; power
    sensors are also integrated into the matching energy counter (hw.energy,
    hw.host.energy), as the conventions prefer energy where it can be had.

    The newest sample of each source is kept whole and read at collection time, so a
    sample costs the same however many values it has, and a sensor absent from the
    newest sample (a sentinel) is not reported with a stale value."""

    def __init__(self, meter: Meter, sensors: list[SensorInfo],
                 stale_after_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        # hw.id -> attributes to add (the pod holding a GPU); set by the runtime.
        self.attributions: list = []
        self._stale_ns = int(stale_after_s * 1e9)
        self._seen: dict[str, int] = {s.source: 0 for s in sensors}  # source -> last sample
        self._rtt = meter.create_histogram(
            "benchlab.agent.sample.rtt", unit="s",
            description="Request/response round trip of polled devices (a sample's time is "
                        "known to within half of it)")
        self._rtt_attrs: dict[str, dict[str, str]] = {}
        self._latest: dict[str, dict[str, float]] = {}  # source -> its newest values
        self._integral: dict[tuple[str, str], float] = {}
        self._last: dict[tuple[str, str], tuple[int, float]] = {}
        self._integrated: dict[str, list[str]] = {}  # source -> power sensors to integrate
        by_metric: dict[str, list[SensorInfo]] = {}
        # A device that reports its own energy (an NVML or RAPL counter) is not integrated
        # from its power too: the two would be one series observed twice.
        own_energy = {(s.metric, tuple(sorted(s.attributes.items()))) for s in sensors}
        self._integrate: dict[str, list[SensorInfo]] = {}  # power metric -> its sensors
        for s in sensors:
            if not s.metric:
                continue  # recorded, not exported (a sum of other sensors)
            by_metric.setdefault(s.metric, []).append(s)
            energy = _ENERGY_OF.get(s.metric)
            if energy and (energy, tuple(sorted(s.attributes.items()))) not in own_energy:
                self._integrated.setdefault(s.source, []).append(s.name)
                self._integrate.setdefault(s.metric, []).append(s)
        self._by_metric = by_metric
        integrals_of = {e: [p for p, en in _ENERGY_OF.items() if en == e and p in by_metric]
                        for e in set(_ENERGY_OF.values())}
        for metric in set(integrals_of) - set(by_metric):
            if integrals_of[metric]:
                meter.create_observable_counter(
                    metric, [self._integrals(p) for p in integrals_of[metric]], unit="J",
                    description=DESCRIPTIONS[metric])
        for metric, group in by_metric.items():
            unit = group[0].unit
            desc = DESCRIPTIONS.get(metric, metric)
            if group[0].kind == "energy" or metric in integrals_of:
                # A device's own counters, and the integrals of power sensors that have none.
                callbacks = [self._reader(metric)] + [self._integrals(p) for p in
                                                      integrals_of.get(metric, [])]
                meter.create_observable_counter(metric, callbacks, unit=unit,
                                                description=desc)
            elif metric in _UPDOWN:
                meter.create_observable_up_down_counter(metric, [self._reader(metric)],
                                                        unit=unit, description=desc)
            else:
                meter.create_observable_gauge(metric, [self._reader(metric)], unit=unit,
                                              description=desc)
        meter.create_observable_gauge(
            "benchlab.source.up", [self._up], unit="{state}",
            description="1 while a sensor source delivers samples, 0 once it has been "
                        "silent for a few sample periods (unplugged, failing, lost)")

    def sources_up(self) -> dict[str, bool]:
        """Which sources deliver samples now: what benchlab.source.up reports."""
        now = time.monotonic_ns()
        with self._lock:
            seen = dict(self._seen)
        return {source: bool(last) and now - last <= self._stale_ns
                for source, last in seen.items()}

    def _up(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(int(up), {"source": source})
                for source, up in self.sources_up().items()]

    def _reader(self, metric: str):
        infos = self._by_metric[metric]

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                latest = dict(self._latest)
            out = []
            for info in infos:
                v = latest.get(info.source, {}).get(info.name)
                if v is not None:
                    out.append(Observation(v, self._attributes(info)))
            return out
        return observe

    def _attributes(self, info: SensorInfo) -> dict[str, str]:
        attrs = info.attributes
        for attribution in self.attributions:
            extra = attribution(attrs.get("hw.id", ""))
            if extra:
                attrs = {**attrs, **extra}
        return attrs

    def _integrals(self, power_metric: str):
        infos = self._integrate.get(power_metric, [])

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                return [Observation(self._integral[(i.source, i.name)], i.attributes)
                        for i in infos if (i.source, i.name) in self._integral]
        return observe

    def on_sample(self, ts_ns: int, source: str, values: dict[str, float],
                  rtt_ns: int = 0) -> None:
        if rtt_ns > 0:
            attrs = self._rtt_attrs.setdefault(source, {"source": source})
            self._rtt.record(rtt_ns / 1e9, attrs)
        with self._lock:
            self._seen[source] = time.monotonic_ns()
            self._latest[source] = values  # samples are records: never changed after
            for name in self._integrated.get(source, ()):
                v = values.get(name)
                if v is None:
                    continue
                key = (source, name)
                prev = self._last.get(key)
                if prev is not None and ts_ns > prev[0]:
                    self._integral[key] = self._integral.get(key, 0.0) + (
                        (ts_ns - prev[0]) * 1e-9 * (v + prev[1]) * 0.5)
                else:
                    self._integral.setdefault(key, 0.0)
                self._last[key] = (ts_ns, v)


class AgentMetrics:
    """benchlab.agent.*: the agent's own health, read from AgentCounters."""

    def __init__(self, meter: Meter, counters: AgentCounters, queue_depth) -> None:
        counters.declare("queue.dropped")

        def counter(name: str):
            def observe(_: CallbackOptions) -> Iterable[Observation]:
                return [Observation(v, lbl) for lbl, v in counters.items(name)]
            return observe

        meter.create_observable_gauge(
            "benchlab.agent.queue.depth", [lambda _: [Observation(queue_depth())]],
            unit="{record}", description="Records waiting for the processors")
        for name, unit, desc in (
            ("queue.dropped", "{record}", "Records dropped because the queue was full"),
            ("export.failures", "{export}", "Failed exports, by signal"),
            ("export.dropped", "{span}", "Spans lost in failed exports"),
            ("write.errors", "{write}", "Failed file writes, by exporter"),
            ("read.errors", "{read}", "Source read errors, by source and reason"),
            ("read.overruns", "{read}", "Polls skipped because the poller fell behind"),
            ("sample.uncertain", "{sample}", "Samples whose round trip made their time "
             "doubtful"),
            ("device.disconnects", "{event}", "Devices lost (unplugged, silent, errors)"),
            ("device.reconnects", "{event}", "Devices found again after a loss"),
            ("input.rejected", "{record}", "Malformed input records skipped, by source and "
             "reason"),
            ("input.dropped", "{datagram}", "Input lost before the agent could read it "
             "(a full probe socket), by source"),
            ("input.late", "{record}", "Marks and spans that arrived more than "
             "intake.max_delay_s after their own time, by source (kept; without energy "
             "where the power history no longer covers them)"),
            ("forward.sent", "{request}", "OTLP requests from the intake forwarded "
             "upstream, by signal"),
            ("forward.dropped", "{request}", "OTLP requests from the intake not forwarded, "
             "by signal and reason"),
            ("overflow", "{span}", "Spans whose in-memory figures (live page, live lines, "
             "histograms, CapFrameX) were kept under an overflow name past [limits], by "
             "kind (pipeline, stream, pair); files keep every name"),
            ("upload.objects", "{object}", "Files uploaded to the object store"),
            ("upload.bytes", "By", "Bytes uploaded to the object store"),
            ("upload.failures", "{attempt}", "Failed uploads, by reason (unreachable, "
             "refused, local)"),
        ):
            meter.create_observable_counter(f"benchlab.agent.{name}", [counter(name)],
                                            unit=unit, description=desc)

        def gauge(name: str):
            def observe(_: CallbackOptions) -> Iterable[Observation]:
                value = counters.gauge_value(name)
                return [] if value is None else [Observation(value)]
            return observe

        for name, unit, desc in (
            ("upload.outbox.files", "{file}", "Files waiting in upload outboxes"),
            ("upload.outbox.size", "By", "Bytes waiting in upload outboxes"),
            ("upload.lag", "s", "How long the oldest file waiting for upload has waited"),
        ):
            meter.create_observable_gauge(f"benchlab.agent.{name}", [gauge(name)], unit=unit,
                                          description=desc)
