"""Frames as OpenTelemetry traces: one trace per frame, a root span ``frame`` from its first
to its last mark, and one child span per stage pair, named by the pair.

The spans are rebuilt after the fact from marks with exact timestamps and the frame's
deterministic ids (so a Parquet row's trace_id finds its trace), and handed to the SDK's
batch span processor, which exports them from its own thread.
"""

from __future__ import annotations

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_benchlab import __version__
from otel_benchlab.records import StageSpan
from otel_benchlab.schema import column_suffix
from otel_benchlab.timebase import TimeBase

SCOPE = InstrumentationScope("otel_benchlab", __version__)


def span_attributes(span: StageSpan) -> dict[str, object]:
    attrs: dict[str, object] = {
        "benchlab.pipeline": span.pipeline, "benchlab.stream": span.stream,
        "benchlab.stage.from": span.stage_from, "benchlab.stage.to": span.stage_to,
        "benchlab.latency": span.latency_ns / 1e9,
    }
    if span.frame is not None:
        attrs["benchlab.frame"] = span.frame
    for label, fig in span.power.items():
        if fig.mean_w is not None:
            attrs[f"benchlab.power.mean.{column_suffix(label)}"] = fig.mean_w
        if fig.energy_j is not None:
            attrs[f"benchlab.energy.{column_suffix(label)}"] = fig.energy_j
    return attrs


class FrameTraceExporter:
    def __init__(self, exporter: SpanExporter, resource: Resource, timebase: TimeBase,
                 max_queue_size: int = 8192) -> None:
        self.resource = resource
        self.timebase = timebase
        self.processor = BatchSpanProcessor(exporter, max_queue_size=max_queue_size)

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
        for frame in frames:
            for span in self.build(frame):
                self.processor.on_end(span)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.processor.shutdown()
