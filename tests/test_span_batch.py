"""A batch of finished spans as columns: what metrics, live lines and the aligned table read
instead of each span's attributes."""

from __future__ import annotations

import math
import random

import numpy as np

from otel_benchlab.processors.energy import annotate
from otel_benchlab.processors.power_series import PowerSeries
from otel_benchlab.records import PowerFigure, SpanBatch, StageSpan
from otel_benchlab.session.schema import spans_to_table
from otel_benchlab.timebase import TimeBase

MS = 1_000_000


def some_spans(n: int, seed: int = 1) -> list[StageSpan]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.choice([("in", "enc"), ("enc", "out")])
        t0 = rng.randrange(0, 900) * MS
        out.append(StageSpan(rng.choice(["p", "q"]), f"cam{rng.randrange(3)}",
                             rng.choice([None, i]), a, b, t0, t0 + rng.randrange(0, 50) * MS,
                             rng.getrandbits(128), rng.getrandbits(64)))
    return out


def power_series() -> dict[str, PowerSeries]:
    ts = np.arange(0, 1000 * MS, 10 * MS, dtype=np.int64)
    watts = np.random.default_rng(0).uniform(50, 300, len(ts))
    gappy = ts[(ts < 400 * MS) | (ts > 600 * MS)]  # no samples from 400 to 600 ms
    return {"sys": PowerSeries.from_power(ts, watts),
            "gpu": PowerSeries.from_power(gappy, np.full(len(gappy), 80.0))}


def test_by_pair_gives_each_pairs_positions_in_batch_order_pairs_in_the_order_first_seen():
    spans = some_spans(300)
    want: dict[tuple[str, str, str], list[int]] = {}
    for i, s in enumerate(spans):
        want.setdefault((s.pipeline, s.stage_from, s.stage_to), []).append(i)
    got = SpanBatch.of(spans).by_pair()
    assert [(key, idx.tolist()) for key, idx in got] == list(want.items())


def test_annotates_columns_are_the_figures_it_sets_on_each_span():
    spans = some_spans(400)
    batch = annotate(spans, power_series(), max_gap_ns=50 * MS)
    again = SpanBatch.of(spans)
    assert list(batch.power) == list(again.power) == ["sys", "gpu"]
    for label in batch.power:
        for made, read in zip(batch.power[label], again.power[label], strict=True):
            np.testing.assert_array_equal(made, read)  # NaN where a figure is None
    gpu_unknown = [s.power["gpu"].energy_j is None for s in spans]
    assert any(gpu_unknown) and not all(gpu_unknown)
    assert all(type(s.power["sys"]) is PowerFigure for s in spans)


def test_the_aligned_table_of_a_batch_equals_the_table_of_its_spans():
    spans = some_spans(400)
    batch = annotate(spans, power_series(), max_gap_ns=50 * MS)
    by_columns = spans_to_table(batch, TimeBase(7), ["sys", "gpu", "cpu"])
    by_spans = spans_to_table(list(spans), TimeBase(7), ["sys", "gpu", "cpu"])
    assert by_columns.equals(by_spans)
    assert by_columns.column("energy_j_cpu").null_count == len(spans)  # a source not there
    row = by_columns.slice(5, 1).to_pylist()[0]
    s = spans[5]
    assert (row["pipeline"], row["stream"], row["stage_from"], row["stage_to"], row["frame"]) \
        == (s.pipeline, s.stream, s.stage_from, s.stage_to, s.frame)
    assert row["trace_id"] == f"{s.trace_id:032x}" and row["span_id"] == f"{s.span_id:016x}"
    assert math.isclose(row["energy_j"], s.power["sys"].energy_j)


def test_concat_keeps_every_batchs_rows_and_a_source_missing_from_one_is_unknown_there():
    first, second = some_spans(50, seed=2), some_spans(30, seed=3)
    for s in first:
        s.power = {"sys": PowerFigure(100.0, 1.0)}
    for s in second:
        s.power = {"gpu": PowerFigure(50.0, None)}
    joined = SpanBatch.concat([SpanBatch.of(first), SpanBatch.of(second)])
    assert joined.spans == first + second
    np.testing.assert_array_equal(joined.start_ns, [s.start_ns for s in first + second])
    sys_energy = joined.power["sys"][1]
    assert (sys_energy[:50] == 1.0).all() and np.isnan(sys_energy[50:]).all()
    gpu_mean, gpu_energy = joined.power["gpu"]
    assert np.isnan(gpu_mean[:50]).all() and (gpu_mean[50:] == 50.0).all()
    assert np.isnan(gpu_energy).all()
    assert spans_to_table(joined, TimeBase(0), ["sys", "gpu"]).equals(
        spans_to_table(first + second, TimeBase(0), ["sys", "gpu"]))
