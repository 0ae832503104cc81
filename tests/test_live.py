"""The live lines: per pair, frames/s on the spans' own times, latency percentiles, the
primary source's mean power and energy per frame, over the spans of the window."""

from __future__ import annotations

from otel_benchlab.agent.live import LiveStats
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
    assert "(while running   500.0)" in first  # only frames with an energy figure
    assert "attributed    -- mJ/frame" in first  # none shared out in these spans
    assert "p encoded->done:  10.0 fps  p50   4.00" in second
    assert "-- W SYS" in second and "(while running    --)" in second  # no SYS figures


def test_unpaired_marks_and_other_pipelines_keep_lines_of_their_own():
    from otel_benchlab.records import StageMark, Unpaired

    stats = LiveStats(None, [("a", "b")])
    stats.add(SpanBatch.of([span("p2", ("a", "b"), 1000, 5, {}),
                            span("p1", ("a", "b"), 1000, 7, {})]))
    stats.add_unpaired([Unpaired("p1", "a", "b", "timeout", StageMark(1, "p1", "c", "a", 1))])
    lines = stats.lines()
    assert len(lines) == 2 and "p1 a->b" in lines[0] and "unpaired 1" in lines[0]
    assert "p2 a->b" in lines[1] and "unpaired 0" in lines[1] and "-- W " in lines[1]


def test_energy_per_frame_is_the_meters_energy_over_the_frames_and_its_split():
    stats = LiveStats("sys", [("a", "b"), ("b", "c")])
    spans = []
    for i in range(10):  # 10 frames, two stages each
        spans.append(span("p", ("a", "b"), 1000 + 100 * i, 10,
                          {"sys": PowerFigure(300.0, 3.0, 1.25)}))
        spans.append(span("p", ("b", "c"), 1010 + 100 * i, 10,
                          {"sys": PowerFigure(300.0, 3.0, 2.5)}))
    stats.add(SpanBatch.of(spans))
    stats.add_energy(40.0, 2.5)  # the meter's joules in the window, of them idle
    *pairs, pipeline = stats.lines()
    assert "attributed  1250.0 mJ/frame (while running  3000.0)" in pairs[0]
    # 40 J over 10 frames; the stages' 10 x (1.25 + 2.5) J + 2.5 J idle make it.
    assert pipeline.endswith("p energy per frame: 4000.0 mJ sys (the meter's energy / "
                             "frames: stages attributed 3750.0 + idle 250.0)")
