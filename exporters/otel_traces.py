"""Frames as OpenTelemetry traces: one trace per frame, a root span ``frame`` from its first
to its last mark, and one child span per stage pair, named by the pair.

The spans are rebuilt after the fact from marks with exact timestamps and the frame's
deterministic ids (so a Parquet row's trace_id finds its trace), and handed to the SDK's
batch span processor, which exports them from its own thread. To an exporter that writes
frames itself (the gRPC one, see ``span_wire``) a frame goes as one item, ``FrameSpans``,
and its spans are written straight from the frame: no ``ReadableSpan`` is made for them,
which was a third of the agent's CPU at high frame rates. Every other exporter (console,
HTTP) gets the ``ReadableSpan``s.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_benchlab import __version__
from otel_benchlab.components import Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import StageSpan
from otel_benchlab.session.schema import power_keys
from otel_benchlab.settings import setting_error
from otel_benchlab.timebase import TimeBase

from .frame_wire import frame_bytes, frames_bytes
from .otlp import span_count


@dataclass
class TracesConfig:
    # share of frames exported as traces (OTEL_TRACES_SAMPLER_ARG)
    sample_ratio: float = 1.0
    # Frames whose pair latency is over its target are always traced ("A->B" = seconds).
    latency_targets_s: dict[str, float] = field(default_factory=dict)


SCOPE = InstrumentationScope("otel_benchlab", __version__)
_SAMPLED = trace_api.SpanContext(0, 0, is_remote=False, trace_flags=trace_api.TraceFlags(1))


def span_attributes(span: StageSpan) -> dict[str, object]:
    attrs: dict[str, object] = {
        "benchlab.pipeline": span.pipeline, "benchlab.stream": span.stream,
        "benchlab.stage.from": span.stage_from, "benchlab.stage.to": span.stage_to,
        "benchlab.latency": span.latency_ns / 1e9,
    }
    if span.frame is not None:
        attrs["benchlab.frame"] = span.frame
    for label, fig in span.power.items():
        for key, value in zip(power_keys(label), fig, strict=True):
            if value is not None:
                attrs[key] = value
    return attrs


class FrameSpans:
    """One frame's trace as one item of a batch span processor whose exporter writes
    frames itself (``accepts_frame_items``). ``encode_many`` writes items' spans as the
    SDK's encoder writes the ``ReadableSpan``s of ``readable`` (tests hold them equal)."""

    __slots__ = ("frame", "owner", "span_count", "resource")
    context = _SAMPLED  # all the batch processor looks at: exported frames are sampled
    instrumentation_scope = SCOPE

    def __init__(self, frame, owner: FrameTraceExporter) -> None:  # type: ignore[no-untyped-def]
        self.frame = frame
        self.owner = owner
        # Plain attributes: counted and grouped a few times a frame on the way out.
        self.span_count: int = 1 + len(frame.spans)  # a finished frame: no more spans
        self.resource: Resource = owner.resource

    def readable(self) -> list[ReadableSpan]:
        return self.owner.build(self.frame)

    @staticmethod
    def encode_many(items: Sequence[FrameSpans]) -> bytes:
        """``ScopeSpans.spans`` entries of each item (its root, then one span per pair),
        joined in order, written in one pass (see ``frame_wire.frames_bytes``)."""
        owner = items[0].owner
        if all(i.owner is owner for i in items):  # one processor's batch: the agent's case
            return frames_bytes([i.frame for i in items], owner.timebase.offset_ns)
        return b"".join([frame_bytes(i.frame, i.owner.timebase.offset_ns) for i in items])


class FrameTraceExporter:
    """Hands finished frames' spans to one SDK batch span processor per exporter.

    The processor's queue is bounded and, when full, silently drops the oldest span; every
    span that cannot be queued is counted here (``benchlab.agent.export.dropped``,
    ``reason=queue_full``) instead, and never queued."""

    def __init__(self, exporters: list[SpanExporter], resource: Resource, timebase: TimeBase,
                 counters: AgentCounters | None = None,
                 max_queue_size: int | None = None, spans_per_frame: int = 3) -> None:
        self.resource = resource
        self.timebase = timebase
        self.counters = counters or AgentCounters()
        if max_queue_size is None:
            # More than the SDK's 2048: a second of frames is handed over at once, and
            # this holds two seconds of a node's worth (16 cameras at 60 fps, 8 stages:
            # 7,680 spans a second); full (a collector down) it holds ~6 MB more than 8,192 did.
            max_queue_size = _bsp_size("OTEL_BSP_MAX_QUEUE_SIZE", 16384)
        # The SDK's 512. At tens of thousands of marks a second the export thread falls
        # behind by its per-request cost and OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048 keeps it
        # up (the queue-full line says so); as a default it held ~5 MB more while a
        # collector hung (soak at 4x: 173 against 168 MB), for nothing at a bench's rates.
        batch = _bsp_size("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        # (processor, takes frames): the queue and batch sizes are counted in spans (as
        # OTEL_BSP_* say) and a frame item holds ``spans_per_frame`` of them.
        self.processors: list[tuple[BatchSpanProcessor, bool]] = []
        for e in exporters:
            frames = bool(getattr(e, "accepts_frame_items", False))
            per = max(1, spans_per_frame) if frames else 1
            self.processors.append((BatchSpanProcessor(
                e, max_queue_size=max(1, max_queue_size // per),
                max_export_batch_size=max(1, min(batch, max_queue_size) // per)), frames))
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
        spans: list[ReadableSpan] | None = None
        for processor, takes_frames in self.processors:
            if takes_frames:
                items: list = [FrameSpans(f, self) for f in frames]
            else:
                if spans is None:
                    spans = [span for frame in frames for span in self.build(frame)]
                items = spans
            room = _room(processor)
            take = items if room is None or room >= len(items) else items[:room]
            if len(take) < len(items):
                self.counters.add("export.dropped", span_count(items) - span_count(take),
                                  _queue_full_hint(processor, items), signal="traces",
                                  reason="queue_full")
            _hand_over(processor, take)
            self.handed += span_count(take)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return all(p.force_flush(timeout_millis) for p, _ in self.processors)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        for p, _ in self.processors:
            inner = getattr(p, "_batch_processor", None)  # its shutdown takes a bound
            inner.shutdown(timeout_millis) if inner is not None else p.shutdown()


def _bsp_size(variable: str, default: int) -> int:
    """A positive OTEL_BSP_* size, else the default (as the SDK reads them)."""
    try:
        value = int(os.environ.get(variable, "").strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _queue_full_hint(processor: BatchSpanProcessor, items: list) -> str:
    """What to do about a full queue: a collector that does not keep up, or a batch (about
    a second of frames) larger than the whole queue, which no collector can help."""
    q = _queue(processor)
    size = q.maxlen if q is not None else None
    if size is not None and len(items) > size:
        per = span_count(items) / len(items)
        return (f"a second of frames ({span_count(items)} spans) is more than the span "
                f"export queue holds ({int(size * per)} spans); spans are dropped, Parquet "
                "keeps every frame. Raise OTEL_BSP_MAX_QUEUE_SIZE above twice the spans a "
                "second (0.5-0.7 KB of memory a queued span), or sample traces "
                "(OTEL_TRACES_SAMPLER_ARG)")
    return ("the span export queue is full (the collector is slow or down); spans are "
            "dropped, Parquet keeps every frame. At tens of thousands of spans a second the "
            "export itself may be what is slow: OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048 sends "
            "them in fewer requests")


def _hand_over(processor: BatchSpanProcessor, items: list) -> None:
    """``on_end`` for each item (all sampled, and there is room for them): the processor's
    queue taken in one ``extendleft``, what its ``emit`` does one item at a time (with a
    process-id check each), ~1 us an item at ten thousand frames a second. Item by item
    where this SDK version does not show its queue or the processor is shut down."""
    inner = getattr(processor, "_batch_processor", None)
    q = _queue(processor)
    wake = getattr(inner, "_worker_awaken", None)
    if (q is None or wake is None or getattr(inner, "_shutdown", True)
            or getattr(inner, "_pid", None) != os.getpid()):
        for item in items:
            processor.on_end(item)
        return
    q.extendleft(items)  # the order of appendleft one at a time: the worker takes the oldest
    if len(q) >= inner._max_export_batch_size and not wake.is_set():
        wake.set()


def _queue(processor: BatchSpanProcessor) -> deque | None:
    """The processor's bounded queue; None where this SDK version does not show it."""
    q = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return q if q is not None and getattr(q, "maxlen", None) is not None else None


def _room(processor: BatchSpanProcessor) -> int | None:
    """Free places in the processor's queue; None where this SDK version does not show
    them."""
    q = _queue(processor)
    return None if q is None else q.maxlen - len(q)


def validate(traces: TracesConfig) -> None:
    if not 0.0 <= traces.sample_ratio <= 1.0:
        raise setting_error("traces.sample_ratio", "must be between 0 and 1")


# Settings only: the runtime builds the trace exporter every agent has (telemetry.py).
COMPONENT = Component("traces", "traces", settings=TracesConfig,
                      ranges={"latency_targets_s": (0, 3600)}, validate=validate)
