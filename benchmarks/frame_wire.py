"""Writing frame traces in wire format: a batch of frames a shape at a time
(``frame_wire.frames_bytes``, what the export thread does) against one frame at a time
(``frame_wire.frame_bytes``, what it did), in microseconds of CPU a frame; and a shape at a
time with the figures where the agent has them, in the energy pass's matrix (``PowerRows``),
not in a dict a span.

Batches are what the agent's span export thread writes at high rates: 170 frames (the
OTel default export batch of 512 spans, 3 spans a frame), 16 streams, 2 stage pairs, 3
power sources with float figures, frame ids counting up. Both give the same bytes
(checked here and in tests/test_frame_wire.py).

Usage: python benchmarks/frame_wire.py [--batch 170] [--streams 16] [--sources 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from otel_benchlab.exporters.frame_wire import frame_bytes, frames_bytes
from otel_benchlab.processors.frames import FrameTrace
from otel_benchlab.records import PowerFigure, PowerRows, StageSpan

PAIRS = [("ingress", "encoded"), ("encoded", "inference_done")]
OFFSET = 1_700_000_000 * 10**9


def batch(n: int, streams: int, sources: int, first: int) -> list[FrameTrace]:
    out = []
    for k in range(n):
        f = first + k
        stream = f"cam{f % streams}"
        t = 10**12 + f * 1_041_667
        trace_id = ((f * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)) << 60 | f
        ft = FrameTrace("load", stream, f // streams, trace_id, f * 31 + 7, t,
                        t + 4_000_000, over_target=False)
        for i, (a, b) in enumerate(PAIRS):
            s = StageSpan("load", stream, ft.frame, a, b, t + i * 2_000_000,
                          t + (i + 1) * 2_000_000 + k)
            s.span_id = f * 17 + i
            s.power = {f"SRC{j}": PowerFigure(100.0 + j + k / 7, 0.2 + k / 1e4)
                       for j in range(sources)}
            ft.spans.append(s)
        out.append(ft)
    return out


def with_matrix(frames: list[FrameTrace]) -> list[FrameTrace]:
    """The frames with their figures in one matrix, as the energy pass leaves them."""
    spans = [s for ft in frames for s in ft.spans]
    labels = tuple(spans[0].power)
    values = np.array([[x for label in labels for x in s.power[label]] for s in spans])
    PowerRows(labels, values.reshape(len(spans), 2 * len(labels))).attach(spans)
    return frames


def cpu_us_per_frame(write, batches: list[list[FrameTrace]]) -> float:
    t = time.process_time()
    for b in batches:
        write(b)
    return (time.process_time() - t) / sum(map(len, batches)) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=170)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    batches = [batch(args.batch, args.streams, args.sources, i * args.batch)
               for i in range(60)]

    def one_at_a_time(frames: list[FrameTrace]) -> bytes:
        return b"".join([frame_bytes(f, OFFSET) for f in frames])

    def by_shape(frames: list[FrameTrace]) -> bytes:
        return frames_bytes(frames, OFFSET)

    matrices = [with_matrix(batch(args.batch, args.streams, args.sources, i * args.batch))
                for i in range(60)]
    assert all(one_at_a_time(b) == by_shape(b) == by_shape(m)
               for b, m in zip(batches[:5], matrices, strict=False))
    alone, shaped, rows = [], [], []
    for _ in range(args.rounds):  # interleaved: the host's noise falls on all
        alone.append(cpu_us_per_frame(one_at_a_time, batches))
        shaped.append(cpu_us_per_frame(by_shape, batches))
        rows.append(cpu_us_per_frame(by_shape, matrices))
    a, s, m = statistics.median(alone), statistics.median(shaped), statistics.median(rows)
    print(f"{args.batch} frames a batch, {args.streams} streams, {len(PAIRS)} pairs, "
          f"{args.sources} power sources; median of {args.rounds} rounds of "
          f"{len(batches)} batches")
    print(f"one frame at a time: {a:.2f} us a frame ({min(alone):.2f}-{max(alone):.2f})")
    print(f"a shape at a time:   {s:.2f} us a frame ({min(shaped):.2f}-{max(shaped):.2f})")
    print(f"  figures in the energy pass's matrix: {m:.2f} us a frame "
          f"({min(rows):.2f}-{max(rows):.2f})")
    print(f"ratio: {s / a:.2f}; from the matrix {m / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
