"""Trace requests written in wire format equal the SDK's own encoding of the same spans."""

from __future__ import annotations

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState

from otel_benchlab.exporters.otel_traces import FrameTraceExporter
from otel_benchlab.exporters.span_wire import SpanRequestWriter
from otel_benchlab.processors.frames import FrameTrace
from otel_benchlab.records import PowerFigure, StageSpan
from otel_benchlab.timebase import TimeBase

RESOURCE = Resource.create({"service.name": "otel-benchlab", "host.name": "bench"})
SCOPE = InstrumentationScope("otel_benchlab", "1.0", "https://opentelemetry.io/schemas/1.26")


def ctx(trace_id: int, span_id: int, remote: bool = False, **kw) -> trace_api.SpanContext:
    return trace_api.SpanContext(trace_id, span_id, is_remote=remote,
                                 trace_flags=trace_api.TraceFlags(1), **kw)


def frames(n: int, pairs_vary: bool = False) -> tuple[FrameTraceExporter, list[FrameTrace]]:
    """Frames with and without ids, over and under target, power figures of every kind
    (an integer one too, as an application's span may carry);
    with ``pairs_vary`` some frames have one span, others two."""
    exporter = FrameTraceExporter([], RESOURCE, TimeBase(1_700_000_000 * 10**9))
    out = []
    for f in range(n):
        frame = FrameTrace("sim", f"cam{f % 3}", f if f % 5 else None, (1 << 127) + f,
                           99 + f, 10**9 + f * 16_000_000, 10**9 + f * 16_000_000 + 30_000_000,
                           over_target=f % 2 == 0)
        pairs = [("ingress", "encoded"), ("encoded", "done")]
        for i, (a, b) in enumerate(pairs[:1 + f % 2] if pairs_vary else pairs):
            s = StageSpan("sim", frame.stream, frame.frame, a, b, frame.first_ns + i * 10**7,
                          frame.first_ns + (i + 1) * 10**7)
            s.power = {"sys": PowerFigure(150.5 + f, 1.25),
                       "gpu": PowerFigure(None if f % 2 else 3, 0.0),
                       "cpu": PowerFigure(-0.0, float("nan"))}
            s.span_id = 1000 + 2 * f + i
            frame.spans.append(s)
        out.append(frame)
    return exporter, out


def frame_spans(n: int) -> list[ReadableSpan]:
    exporter, made = frames(n)
    return [span for frame in made for span in exporter.build(frame)]


def same_as_sdk(spans: list[ReadableSpan]) -> bool:
    return SpanRequestWriter().request(spans) == encode_spans(spans)


def test_frame_traces_encode_as_the_sdk_encodes_them():
    spans = frame_spans(50)
    assert len(spans) == 150 and same_as_sdk(spans)


def test_every_scalar_attribute_kind_encodes_as_the_sdk_encodes_it():
    attrs = {"s": "x", "empty": "", "t": True, "f": False, "i": 7, "zero": 0, "neg": -5,
             "big": (1 << 63) - 1, "min": -(1 << 63), "d": 0.1, "dz": 0.0, "inf": float("inf"),
             "unicode": "grüße ✓"}
    span = ReadableSpan("s", context=ctx(5, 6), resource=RESOURCE, attributes=attrs,
                        start_time=1, end_time=2, instrumentation_scope=SCOPE)
    assert same_as_sdk([span])


def test_remote_parent_kind_and_missing_scope_encode_as_the_sdk_does():
    span = ReadableSpan("child", context=ctx(5, 7), parent=ctx(5, 6, remote=True),
                        resource=RESOURCE, kind=SpanKind.SERVER, start_time=10, end_time=20)
    assert same_as_sdk([span])


def test_spans_it_does_not_write_itself_go_through_the_sdk_encoder():
    base = dict(resource=RESOURCE, start_time=10, end_time=20, instrumentation_scope=SCOPE)
    spans = [
        ReadableSpan("events", context=ctx(1, 2), events=[Event("e", {"k": 1}, 15)], **base),
        ReadableSpan("links", context=ctx(1, 3), links=[Link(ctx(9, 9), {"a": "b"})], **base),
        ReadableSpan("status", context=ctx(1, 4), status=Status(StatusCode.ERROR, "bad"),
                     **base),
        ReadableSpan("state", context=ctx(1, 5, trace_state=TraceState([("k", "v")])), **base),
        ReadableSpan("array", context=ctx(1, 6), attributes={"a": (1, 2), "b": "c"}, **base),
    ]
    assert same_as_sdk(spans)


def test_spans_of_several_resources_and_scopes_are_grouped_as_the_sdk_groups_them():
    other = Resource.create({"service.name": "other"})
    spans = [ReadableSpan(f"s{i}", context=ctx(1, i + 1),
                          resource=RESOURCE if i % 2 else other,
                          instrumentation_scope=SCOPE if i % 3 else InstrumentationScope("b"),
                          start_time=i, end_time=i + 1) for i in range(12)]
    assert same_as_sdk(spans)


def test_a_frame_item_writes_its_spans_as_the_sdk_encodes_its_readable_spans():
    from otel_benchlab.exporters.otel_traces import FrameSpans

    exporter, made = frames(40, pairs_vary=True)
    items = [FrameSpans(f, exporter) for f in made]
    spans = [s for item in items for s in item.readable()]
    assert sum(item.span_count for item in items) == len(spans)
    assert SpanRequestWriter().request(items) == encode_spans(spans)


def test_frame_ids_of_every_varint_length_and_negative_ones_encode_as_the_sdk_does():
    from otel_benchlab.exporters.otel_traces import FrameSpans

    exporter, made = frames(24)
    ids = [0, 1, 127, 128, 16_383, 16_384, 2**21, 2**28, 2**35, 2**42, 2**49, 2**56,
           2**63 - 1, -1, -(2**63), 5_000_000, 2**32 + 7, 300, 2**62, 99, 2**56 - 1,
           2**49 - 1, 2**42 - 1, 2**35 - 1]
    for frame, frame_id in zip(made, ids, strict=True):
        frame.frame = frame_id
        for s in frame.spans:
            s.frame = frame_id
    items = [FrameSpans(f, exporter) for f in made]
    spans = [s for item in items for s in item.readable()]
    assert SpanRequestWriter().request_bytes(items) == encode_spans(spans).SerializeToString()


def test_an_exporter_that_writes_frames_gets_frame_items_the_others_readable_spans():
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_benchlab.exporters.otel_traces import FrameSpans

    class FrameWriter(InMemorySpanExporter):
        accepts_frame_items = True

        def export(self, spans):  # type: ignore[no-untyped-def]
            self.items = getattr(self, "items", []) + list(spans)
            return SpanExportResult.SUCCESS

    writer, plain = FrameWriter(), InMemorySpanExporter()
    _, made = frames(10, pairs_vary=True)
    exporter = FrameTraceExporter([writer, plain], RESOURCE, TimeBase(0))
    exporter.export(made)
    exporter.shutdown()
    assert all(isinstance(i, FrameSpans) for i in writer.items) and len(writer.items) == 10
    assert len(plain.get_finished_spans()) == sum(1 + len(f.spans) for f in made)
    assert exporter.handed == 2 * len(plain.get_finished_spans())


def test_the_grpc_exporter_sends_the_written_bytes_also_on_a_new_channel():
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_benchlab.exporters.otel_traces import FrameSpans
    from otel_benchlab.exporters.otlp import TraceBytesStub, sdk_exporter_class
    from tests.servers import OtlpCollector

    collector = OtlpCollector().start()
    exporter = sdk_exporter_class("grpc", "traces")(
        endpoint=f"http://127.0.0.1:{collector.port}", timeout=5)
    made_by, made = frames(6, pairs_vary=True)
    items = [FrameSpans(f, made_by) for f in made]
    try:
        assert exporter.export(items[:3]) == SpanExportResult.SUCCESS
        # What the SDK does after UNAVAILABLE: a new channel and stub; still ours.
        exporter._initialize_channel_and_stub()
        assert isinstance(exporter._client, TraceBytesStub)
        assert exporter.export(items[3:]) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
        collector.stop()
    assert collector.trace_requests == [
        encode_spans([s for item in part for s in item.readable()])
        for part in (items[:3], items[3:])]
