"""Stage latency and energy histograms: a series per pair (and power source), each
holding every span's value of the batches it was given."""

from __future__ import annotations

from otel_benchlab.exporters.otel_metrics import PipelineMetrics
from otel_benchlab.records import PowerFigure, SpanBatch, StageSpan

MS = 1_000_000


def spans() -> list[StageSpan]:
    out = []
    for i in range(30):
        a, b = [("ingress", "encoded"), ("encoded", "done")][i % 2]
        s = StageSpan("p", "cam0", i, a, b, i * 10 * MS, i * 10 * MS + (i + 1) * MS)
        s.power = {"SYS": PowerFigure(100.0, 0.01 * i if i % 3 else None)}
        if i % 5 == 0:
            s.power["GPU"] = PowerFigure(50.0, 0.5)
        out.append(s)
    return out


def series(histogram) -> dict[tuple, tuple[int, float]]:  # type: ignore[no-untyped-def]
    return {tuple(sorted(attrs.items())): (s.n, round(s.total, 9))
            for attrs, s in histogram._snapshot()}


def key(pair: tuple[str, str], source: str | None = None) -> tuple:
    attrs = {"benchlab.pipeline": "p", "benchlab.stage.from": pair[0],
             "benchlab.stage.to": pair[1]}
    if source:
        attrs["benchlab.power.source"] = source
    return tuple(sorted(attrs.items()))


def test_each_pair_and_source_is_a_series_of_every_value_it_was_given_in_any_batches():
    made = spans()
    metrics = PipelineMetrics()
    metrics.export(SpanBatch.of(made[:11]))
    metrics.export(SpanBatch.of(made[11:]))
    want_latency: dict[tuple, tuple[int, float]] = {}
    want_energy: dict[tuple, tuple[int, float]] = {}
    for s in made:
        k = key((s.stage_from, s.stage_to))
        n, total = want_latency.get(k, (0, 0.0))
        want_latency[k] = (n + 1, total + (s.end_ns - s.start_ns) / 1e9)
        for label, fig in s.power.items():
            if fig.energy_j is not None:  # no figure: not a zero
                k = key((s.stage_from, s.stage_to), label)
                n, total = want_energy.get(k, (0, 0.0))
                want_energy[k] = (n + 1, total + fig.energy_j)
    assert series(metrics.latency) == {k: (n, round(t, 9)) for k, (n, t) in
                                       want_latency.items()}
    assert series(metrics.energy) == {k: (n, round(t, 9)) for k, (n, t) in
                                      want_energy.items()}
    assert len(want_energy) == 4  # SYS and GPU for both pairs
