"""A batch of frame traces written a shape at a time is what the SDK's encoder writes for
the same spans, and what writing each frame alone writes."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource

from otel_benchlab.exporters import frame_wire
from otel_benchlab.exporters.otel_traces import FrameSpans, FrameTraceExporter
from otel_benchlab.exporters.span_wire import SpanRequestWriter
from otel_benchlab.processors.attribution import StageShares, attribute_spans
from otel_benchlab.processors.energy import annotate
from otel_benchlab.processors.frames import FrameTrace
from otel_benchlab.processors.power_series import PowerSeries
from otel_benchlab.records import PowerFigure, StageSpan
from otel_benchlab.timebase import TimeBase

RESOURCE = Resource.create({"service.name": "otel-benchlab"})
OFFSET = 1_700_000_000 * 10**9
PAIRS = [("ingress", "encoded"), ("encoded", "inference_done")]
STREAMS = ["cam0", "cam12", "kamera-ü", "c"]  # names of several UTF-8 lengths


def agent_frames(n: int, ids: list[int | None] | None = None) -> list[FrameTrace]:
    """Frames as the agent makes them: float power figures from two sources, streams of
    several name lengths, over and under target, pairs reported in either order."""
    out = []
    for f in range(n):
        frame_id = ids[f % len(ids)] if ids is not None else 10_000 + f
        stream = STREAMS[f % len(STREAMS)]
        t = 10**9 + f * 16_666_667
        ft = FrameTrace("sim", stream, frame_id, (7 << 100) + f * 7919, 50_000 + f, t,
                        t + 9_000_000, over_target=f % 3 == 0)
        pairs = PAIRS if f % 5 else PAIRS[::-1]
        for i, (a, b) in enumerate(pairs):
            s = StageSpan("sim", stream, frame_id, a, b, t + i * 4_000_000,
                          t + (i + 1) * 4_000_000 + f)
            s.span_id = (1 << 63) + 2 * f + i
            s.power = {"SYS": PowerFigure(150.25 + f, 0.6 + f / 1e3, 0.3 + f / 1e3),
                       "GPU 0": PowerFigure(-0.0, float("nan"), float("nan"))}
            ft.spans.append(s)
        out.append(ft)
    return out


def one_at_a_time(frames: list[FrameTrace]) -> bytes:
    return b"".join(frame_wire.frame_bytes(f, OFFSET) for f in frames)


@pytest.fixture
def frame_bytes_calls(monkeypatch) -> list[FrameTrace]:
    """The frames written one at a time (not as part of a shape)."""
    calls: list[FrameTrace] = []
    alone = frame_wire.frame_bytes

    def counted(f: FrameTrace, offset: int) -> bytes:
        calls.append(f)
        return alone(f, offset)

    monkeypatch.setattr(frame_wire, "frame_bytes", counted)
    return calls


def test_agent_frames_are_written_a_shape_at_a_time(frame_bytes_calls):
    frames = agent_frames(200)
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls == []
    assert written == one_at_a_time(frames)


def annotated(frames: list[FrameTrace], passes: int = 1,
              gap_from_ns: int | None = None) -> list[FrameTrace]:
    """The frames' spans given figures by the energy pass, as the agent's are (each span
    then points at its row of the pass's matrix), over ``passes`` batches of spans; no
    GPU samples from ``gap_from_ns`` on."""
    ts = np.arange(0, 10 * 10**9, 10**7, dtype=np.int64)
    gpu_ts = ts if gap_from_ns is None else ts[ts < gap_from_ns]
    series = {"SYS": PowerSeries.from_power(ts, 100 + (ts % 7_000_000) / 1e5),
              "GPU 0": PowerSeries.from_power(gpu_ts, np.full(len(gpu_ts), 55.5))}
    spans = [s for f in frames for s in f.spans]
    for k in range(passes):
        mine = spans[k::passes]
        starts = np.array([s.start_ns for s in mine])
        ends = np.array([s.end_ns for s in mine])
        shares, _, _ = attribute_spans(mine, starts, ends, series, 0, 10 * 10**9, 5 * 10**7,
                                       StageShares(list(series)))
        annotate(mine, series, max_gap_ns=5 * 10**7, attributed=shares)
    return frames


def unmade(frames: list[FrameTrace]) -> bool:
    """No span has made its figures' dict (the writer read the matrices)."""
    return all(s._power is None and s._rows is not None for f in frames for s in f.spans)


def test_figures_of_the_energy_pass_are_written_by_shapes_from_its_matrix(frame_bytes_calls):
    frames = annotated(agent_frames(200))
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls == [] and unmade(frames)
    assert written == one_at_a_time(frames)  # which reads each span's figures' dict
    gpu = frames[0].spans[0].power["GPU 0"]
    assert gpu.mean_w == pytest.approx(55.5) and gpu.energy_j == pytest.approx(55.5 * 0.004)


def test_spans_of_several_energy_passes_in_one_batch_are_written_by_shapes(
        frame_bytes_calls):
    frames = annotated(agent_frames(200), passes=3)
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls == [] and unmade(frames)
    assert written == one_at_a_time(frames)


def test_an_unknown_figure_of_the_energy_pass_is_left_out_by_the_one_frame_writer(
        frame_bytes_calls):
    frames = annotated(agent_frames(200), gap_from_ns=2 * 10**9)  # frames 60 on: no GPU
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls and written == one_at_a_time(frames)
    late = frames[-1].spans[0].power["GPU 0"]
    assert late == PowerFigure(None, None, None)
    assert b"benchlab.energy.gpu_0" not in frame_wire.frame_bytes(frames[-1], OFFSET)


def test_a_batch_written_by_shapes_is_what_the_sdk_writes_for_its_spans():
    exporter = FrameTraceExporter([], RESOURCE, TimeBase(OFFSET))
    items = [FrameSpans(f, exporter) for f in agent_frames(170)]
    spans = [s for item in items for s in item.readable()]
    assert SpanRequestWriter().request_bytes(items) == encode_spans(spans).SerializeToString()


def test_frame_ids_of_every_varint_length_and_none_are_written_by_shapes(frame_bytes_calls):
    ids = [0, 1, 127, 128, 16_383, 16_384, 2**21, 2**28, 2**35, 2**42, 2**49, 2**56,
           2**63 - 1, -1, -(2**63), None]
    frames = agent_frames(len(ids) * 40, ids)
    for f in frames:
        if f.frame is None:
            for s in f.spans:
                s.frame = None
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls == []
    assert written == one_at_a_time(frames)


def test_a_figure_that_is_not_a_float_sends_its_shape_to_the_one_frame_writer(
        frame_bytes_calls):
    frames = agent_frames(40)
    frames[8].spans[1].power["SYS"] = PowerFigure(None, 0.5)  # no samples in the span
    frames[9].spans[0].power["SYS"] = PowerFigure(3, 0.5)  # an integer, from an application
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert frames[8] in frame_bytes_calls and frames[9] in frame_bytes_calls
    assert len(frame_bytes_calls) < len(frames)
    assert written == one_at_a_time(frames)


def test_a_frame_id_outside_int64_is_left_to_the_one_frame_writer(frame_bytes_calls):
    frames = agent_frames(120)
    frames[3].frame = 1 << 64
    for s in frames[3].spans:
        s.frame = 1 << 64
    written = frame_wire.frames_bytes(frames[:3] + frames[4:], OFFSET)
    assert frame_bytes_calls == []
    with pytest.raises(TypeError):  # its int attribute is None: the SDK's encoder takes it
        frame_wire.frames_bytes(frames, OFFSET)
    assert frame_bytes_calls == [frames[3]]
    assert written == one_at_a_time(frames[:3] + frames[4:])


def test_frames_in_a_batch_keep_their_order_across_shapes():
    frames = agent_frames(60)
    frames[10].spans.pop()  # a frame that lingered out with one span: a shape of its own
    for s in frames[20].spans:
        s.power = {}
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert written == one_at_a_time(frames)


def test_items_of_exporters_with_other_time_bases_keep_their_own_offsets():
    first = FrameTraceExporter([], RESOURCE, TimeBase(OFFSET))
    second = FrameTraceExporter([], RESOURCE, TimeBase(OFFSET + 5 * 10**9))
    items = [FrameSpans(f, first if k % 2 else second)
             for k, f in enumerate(agent_frames(40))]
    spans = [s for item in items for s in item.readable()]
    assert SpanRequestWriter().request_bytes(items) == encode_spans(spans).SerializeToString()


def test_an_empty_stream_name_is_written_frame_by_frame(frame_bytes_calls):
    frames = agent_frames(20)
    for f in frames:
        f.stream = ""
        for s in f.spans:
            s.stream = ""
    written = frame_wire.frames_bytes(frames, OFFSET)
    assert len(frame_bytes_calls) == len(frames)
    assert written == one_at_a_time(frames)


def test_frame_items_between_plain_spans_of_their_scope_keep_the_batch_order():
    exporter = FrameTraceExporter([], RESOURCE, TimeBase(OFFSET))
    frames = agent_frames(30)
    items: list = []
    for k, f in enumerate(frames):
        items += exporter.build(f) if k % 7 == 3 else [FrameSpans(f, exporter)]
    spans = [s for item in items for s in (item.readable() if isinstance(item, FrameSpans)
                                           else [item])]
    assert SpanRequestWriter().request_bytes(items) == encode_spans(spans).SerializeToString()
