"""A full span export queue: every span that does not fit is counted, and the one log line
says which of the two causes it is (a slow collector, or a batch the queue cannot hold)."""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.otel_traces import FrameTraceExporter
from otel_benchlab.processors.frames import FrameTrace
from otel_benchlab.records import StageSpan
from otel_benchlab.timebase import TimeBase


class HeldFrames(SpanExporter):
    """Takes frame items and does not return until released (a collector that hangs)."""

    accepts_frame_items = True

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.release.wait(10)
        return SpanExportResult.SUCCESS


def made_frames(n: int) -> list[FrameTrace]:
    out = []
    for f in range(n):
        frame = FrameTrace("p", "cam0", f, (1 << 100) + f, 7 + f, 10**9, 10**9 + 10**7)
        frame.spans = [StageSpan("p", "cam0", f, "a", "b", 10**9, 10**9 + 5 * 10**6),
                       StageSpan("p", "cam0", f, "b", "c", 10**9 + 5 * 10**6, 10**9 + 10**7)]
        out.append(frame)
    return out


def exporter(queue_spans: int) -> tuple[FrameTraceExporter, HeldFrames, AgentCounters]:
    held, counters = HeldFrames(), AgentCounters()
    return FrameTraceExporter([held], Resource.create({}), TimeBase(0), counters,
                              max_queue_size=queue_spans), held, counters


def test_a_batch_larger_than_the_whole_queue_says_to_raise_the_queue_size(caplog):
    traces, held, counters = exporter(30)  # 10 frames of 3 spans
    with caplog.at_level(logging.WARNING, logger="otel_benchlab"):
        traces.export(made_frames(25))
    held.release.set()
    traces.shutdown()
    assert counters.get("export.dropped", signal="traces", reason="queue_full") == 15 * 3
    line = "\n".join(r.getMessage() for r in caplog.records)
    assert "(75 spans) is more than the span export queue holds (30 spans)" in line
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in line


def test_a_batch_that_meets_a_queue_filled_by_a_hanging_collector_blames_the_collector(
        caplog):
    traces, held, counters = exporter(30)  # 10 frames; the worker waits for a batch of 10
    with caplog.at_level(logging.WARNING, logger="otel_benchlab"):
        traces.export(made_frames(8))  # queued, waiting for the export (the collector)
        traces.export(made_frames(8))  # room for 2 of them
    held.release.set()
    traces.shutdown()
    assert counters.get("export.dropped", signal="traces", reason="queue_full") == 6 * 3
    line = "\n".join(r.getMessage() for r in caplog.records)
    assert "the collector is slow or down" in line and "more than the span" not in line
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048" in line


def batch_sizes(traces: FrameTraceExporter) -> list[int]:
    return [p._batch_processor._max_export_batch_size for p, _ in traces.processors]


def test_an_export_batch_holds_the_sdks_512_spans_unless_the_variable_says_otherwise(
        monkeypatch):
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    traces, held, _ = exporter(16384)
    assert batch_sizes(traces) == [512 // 3]  # frame items of 3 spans
    held.release.set()
    traces.shutdown()
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048")
    traces, held, _ = exporter(16384)
    assert batch_sizes(traces) == [2048 // 3]
    held.release.set()
    traces.shutdown()


class Recorded(SpanExporter):
    accepts_frame_items = True

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.batches.append([item.frame.frame for item in spans])
        return SpanExportResult.SUCCESS


def test_frames_handed_over_at_once_are_exported_in_order_in_batches_of_the_batch_size(
        monkeypatch):
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    recorded = Recorded()
    traces = FrameTraceExporter([recorded], Resource.create({}), TimeBase(0),
                                max_queue_size=16384)
    frames = made_frames(1000)
    traces.export(frames[:600])
    deadline = time.monotonic() + 3  # a full batch wakes the worker: not the 5 s timer
    while not recorded.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorded.batches
    traces.export(frames[600:])
    traces.force_flush()
    assert [f for batch in recorded.batches for f in batch] == list(range(1000))
    assert max(len(b) for b in recorded.batches) == 512 // 3
    assert traces.handed == 3000
    traces.shutdown()


def test_frames_handed_to_a_shut_down_exporter_are_not_queued():
    recorded = Recorded()
    traces = FrameTraceExporter([recorded], Resource.create({}), TimeBase(0))
    traces.shutdown()
    traces.export(made_frames(5))
    processor = traces.processors[0][0]
    assert len(processor._batch_processor._queue) == 0
    assert recorded.batches == []
