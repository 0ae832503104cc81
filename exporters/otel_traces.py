"""Frames as OpenTelemetry traces: one trace per frame, a root span ``frame`` from its first
to its last mark, and one child span per stage pair, named by the pair.

The spans are rebuilt after the fact from marks with exact timestamps and the frame's
deterministic ids (so a Parquet row's trace_id finds its trace), and handed to the SDK's
batch span processor, which exports them from its own thread.
"""

from __future__ import annotations

import functools
import os

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_benchlab import __version__
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import StageSpan
from otel_benchlab.schema import column_suffix
from otel_benchlab.timebase import TimeBase

SCOPE = InstrumentationScope("otel_benchlab", __version__)


@functools.lru_cache(maxsize=1024)
def _power_keys(label: str) -> tuple[str, str]:
    # Per span and power source otherwise: a regex and two f-strings, thousands a second.
    suffix = column_suffix(label)
    return f"benchlab.power.mean.{suffix}", f"benchlab.energy.{suffix}"


def span_attributes(span: StageSpan) -> dict[str, object]:
    attrs: dict[str, object] = {
        "benchlab.pipeline": span.pipeline, "benchlab.stream": span.stream,
        "benchlab.stage.from": span.stage_from, "benchlab.stage.to": span.stage_to,
        "benchlab.latency": span.latency_ns / 1e9,
    }
    if span.frame is not None:
        attrs["benchlab.frame"] = span.frame
    for label, fig in span.power.items():
        mean_key, energy_key = _power_keys(label)
        if fig.mean_w is not None:
            attrs[mean_key] = fig.mean_w
        if fig.energy_j is not None:
            attrs[energy_key] = fig.energy_j
    return attrs


class FrameTraceExporter:
    """Hands finished frames' spans to one SDK batch span processor per exporter.

    The processor's queue is bounded and, when full, silently drops the oldest span; every
    span that cannot be queued is counted here (``benchlab.agent.export.dropped``,
    ``reason=queue_full``) instead, and never queued."""

    def __init__(self, exporters: list[SpanExporter], resource: Resource, timebase: TimeBase,
                 counters: AgentCounters | None = None,
                 max_queue_size: int | None = None) -> None:
        self.resource = resource
        self.timebase = timebase
        self.counters = counters or AgentCounters()
        if max_queue_size is None and not os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE"):
            max_queue_size = 8192  # a few seconds of frames, more than the SDK's 2048
        self.processors = [BatchSpanProcessor(e, max_queue_size=max_queue_size)
                           for e in exporters]
        self.handed = 0

    def _ctx(self, trace_id: int, span_id: int) -> trace_api.SpanContext:
        return trace_api.SpanContext(trace_id, span_id, is_remote=False,
                                     trace_flags=trace_api.TraceFlags(1))

    def build(self, frame) -> list[ReadableSpan]:  # frame: processors.frames.FrameTrace
        to_unix = self.timebase.to_unix_ns
        root_ctx = self._ctx(frame.trace_id, frame.root_span_id)
        root_attrs: dict[str, object] = {"benchlab.pipeline": frame.pipeline,
                                         "benchlab.stream": frame.stream,
                                         "benchlab.over_target": frame.over_target}
        if frame.frame is not None:
            root_attrs["benchlab.frame"] = frame.frame
        spans = [ReadableSpan("frame", context=root_ctx, resource=self.resource,
                              attributes=root_attrs, start_time=to_unix(frame.first_ns),
                              end_time=to_unix(frame.last_ns), instrumentation_scope=SCOPE)]
        for s in frame.spans:
            spans.append(ReadableSpan(
                s.pair, context=self._ctx(frame.trace_id, s.span_id), parent=root_ctx,
                resource=self.resource, attributes=span_attributes(s),
                start_time=to_unix(s.start_ns), end_time=to_unix(s.end_ns),
                instrumentation_scope=SCOPE))
        return spans

    def export(self, frames: list) -> None:
        spans = [span for frame in frames for span in self.build(frame)]
        for processor in self.processors:
            room = _room(processor)
            take = spans if room is None or room >= len(spans) else spans[:room]
            if len(take) < len(spans):
                self.counters.add(
                    "export.dropped", len(spans) - len(take),
                    "the span export queue is full (the collector is slow or down); spans "
                    "are dropped, Parquet keeps every frame", signal="traces",
                    reason="queue_full")
            for span in take:
                processor.on_end(span)
            self.handed += len(take)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        for p in self.processors:
            inner = getattr(p, "_batch_processor", None)  # its shutdown takes a bound
            inner.shutdown(timeout_millis) if inner is not None else p.shutdown()


def _room(processor: BatchSpanProcessor) -> int | None:
    """Free places in the processor's queue; None where this SDK version does not show
    them."""
    inner = getattr(processor, "_batch_processor", None)
    q = getattr(inner, "_queue", None)
    if q is None or getattr(q, "maxlen", None) is None:
        return None
    return q.maxlen - len(q)
