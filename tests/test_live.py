"""The live lines: per pair, frames/s on the spans' own times, latency percentiles, the
primary source's mean power and energy per frame, over the spans of the window."""

from __future__ import annotations

from otel_benchlab.live import LiveStats
from otel_benchlab.records import PowerFigure, SpanBatch, StageSpan

MS = 1_000_000


def span(pipeline: str, pair: tuple[str, str], end_ms: int, latency_ms: int,
         power: dict[str, PowerFigure]) -> StageSpan:
    s = StageSpan(pipeline, "cam0", end_ms, pair[0], pair[1], (end_ms - latency_ms) * MS,
                  end_ms * MS)
    s.power = power
    return s


def test_a_line_per_pair_with_its_frames_latencies_and_the_primary_sources_figures():
    stats = LiveStats("SYS", [("ingress", "encoded"), ("encoded", "done")])
    spans = []
    for i in range(11):  # 11 frames 100 ms apart: 10 fps
        spans.append(span("p", ("ingress", "encoded"), 1000 + 100 * i, 10 + i,
                          {"SYS": PowerFigure(100.0 + i, 0.5 if i % 2 else None),
                           "GPU": PowerFigure(999.0, 9.0)}))
        spans.append(span("p", ("encoded", "done"), 1000 + 100 * i, 4,
                          {"GPU": PowerFigure(50.0, 1.0)} if i else {}))
    stats.add(SpanBatch.of(spans[:9]))  # a batch may end anywhere
    stats.add(SpanBatch.of(spans[9:]))
    first, second = stats.lines()
    assert "p ingress->encoded:  10.0 fps  p50  15.00" in first
    assert " 105.0 W SYS " in first  # the mean of 100..110 W
    assert "500.0 mJ/frame" in first  # only frames with an energy figure
    assert "p encoded->done:  10.0 fps  p50   4.00" in second
    assert "-- W SYS" in second and "-- mJ/frame" in second  # no SYS figures there


def test_unpaired_marks_and_other_pipelines_keep_lines_of_their_own():
    from otel_benchlab.records import StageMark, Unpaired

    stats = LiveStats(None, [("a", "b")])
    stats.add(SpanBatch.of([span("p2", ("a", "b"), 1000, 5, {}),
                            span("p1", ("a", "b"), 1000, 7, {})]))
    stats.add_unpaired([Unpaired("p1", "a", "b", "timeout", StageMark(1, "p1", "c", "a", 1))])
    lines = stats.lines()
    assert len(lines) == 2 and "p1 a->b" in lines[0] and "unpaired 1" in lines[0]
    assert "p2 a->b" in lines[1] and "unpaired 0" in lines[1] and "-- W " in lines[1]
