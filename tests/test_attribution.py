"""Attributed energy adds up: each source's energy is shared among the spans running at each
instant, and the spans' shares plus the idle energy are the source's energy over the
session. Known truth from independent computations, not round numbers."""

from __future__ import annotations

import numpy as np
import pytest

from otel_benchlab.processors.attribution import attribute, innermost_pieces
from otel_benchlab.processors.energy import PowerSeries, energy_between

S = 1_000_000_000
GAP = S


def _streams(n_streams: int, seconds: float, rng,
             longest: float = 0.065) -> tuple[np.ndarray, np.ndarray]:
    """Spans of n streams at 30 fps, stages of 25-65 ms at random phases: they overlap."""
    starts, ends = [], []
    for _ in range(n_streams):
        t = int(rng.uniform(0, 0.033) * S)
        while t < seconds * S:
            d = int(rng.uniform(0.025, longest) * S)
            starts.append(t)
            ends.append(t + d)
            t += int(S / 30) + int(rng.integers(-1_000_000, 1_000_000))
    return np.array(starts, np.int64), np.array(ends, np.int64)


def _inverse_load_integral(starts, ends, i: int) -> float:
    """Seconds of span i weighted by 1/n(t), n = spans running: elementary stretches."""
    bounds = sorted(set(starts.tolist()) | set(ends.tolist()))
    total = 0.0
    for a, b in zip(bounds, bounds[1:], strict=False):
        if a >= starts[i] and b <= ends[i]:
            n = int(np.sum((starts <= a) & (ends >= b)))
            total += (b - a) / 1e9 / n
    return total


def test_at_constant_power_each_span_gets_power_times_the_integral_of_one_over_n():
    rng = np.random.default_rng(3)
    starts, ends = _streams(4, 1.0, rng)
    power = 250.0
    ts = np.arange(-S, 3 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), power))
    t0, t1 = 0, 2 * S
    got = attribute(series, starts, ends, t0, t1, GAP)
    for i in range(len(starts)):
        truth = power * _inverse_load_integral(starts, ends, i)
        assert got.attributed[i] == pytest.approx(truth, rel=1e-9)
    assert got.attributed.sum() + got.idle_j == pytest.approx(power * 2.0, rel=1e-12)
    assert got.total_j == pytest.approx(power * 2.0, rel=1e-12)


@pytest.mark.parametrize("streams", [1, 4, 16])
def test_with_a_varying_power_every_joule_is_attributed_once_or_idle(streams):
    rng = np.random.default_rng(streams)
    # One stream with stages shorter than its frame interval: nothing overlaps.
    starts, ends = _streams(streams, 20.0, rng, 0.030 if streams == 1 else 0.065)
    ts = np.arange(-S, 22 * S, 10_000_000)  # 100 Hz
    watts = 200.0 + 80.0 * np.sin(ts / 1.7e9) + 30.0 * np.sin(ts / 0.23e9)
    series = PowerSeries.from_power(ts, watts)
    t0, t1 = 0, 21 * S
    got = attribute(series, starts, ends, t0, t1, GAP)
    meter, _ = energy_between(series, np.array([t0]), np.array([t1]), GAP)
    assert abs(got.attributed.sum() + got.idle_j - meter[0]) <= 1e-3 * meter[0]
    assert got.total_j == pytest.approx(meter[0], rel=1e-9)
    # The analytic integral of the power (the meter's own truth) within 0.1 % as well.
    analytic = 200.0 * 21 + 80.0 * 1.7 * (1 - np.cos(21 / 1.7)) + 30.0 * 0.23 * (
        1 - np.cos(21 / 0.23))
    assert abs(got.attributed.sum() + got.idle_j - analytic) <= 1e-3 * analytic
    if streams == 1:  # nothing overlaps: attributed = while it ran
        alone, _ = energy_between(series, starts, ends, GAP)
        assert got.attributed == pytest.approx(alone, rel=1e-9)
    else:
        alone, _ = energy_between(series, starts, ends, GAP)
        assert alone.sum() > 1.2 * got.attributed.sum()  # the old figure counts twice


def test_weights_set_the_shares():
    ts = np.arange(0, 3 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), 90.0))
    got = attribute(series, np.array([0, 0]), np.array([S, S]), 0, S, GAP,
                    weights=np.array([1.0, 2.0]))
    assert got.attributed == pytest.approx([30.0, 60.0], rel=1e-12)


def test_a_span_in_a_gap_of_the_samples_gets_no_figure_and_the_rest_still_adds_up():
    ts = np.concatenate([np.arange(0, S, 10_000_000), np.arange(3 * S, 5 * S, 10_000_000)])
    series = PowerSeries.from_power(ts, np.full(len(ts), 100.0))
    got = attribute(series, np.array([S // 4, 2 * S, 4 * S]),
                    np.array([S // 2, 2 * S + S // 2, 4 * S + S // 2]), 0, 5 * S - 10_000_000,
                    GAP // 2)
    assert got.attributed[0] == pytest.approx(25.0) and got.attributed[2] == pytest.approx(50.0)
    assert np.isnan(got.attributed[1])
    assert np.nansum(got.attributed) + got.idle_j == pytest.approx(got.total_j, rel=1e-12)


def test_a_parent_is_charged_only_while_none_of_its_children_runs():
    # Frame 1: a->c contains a->b and b->c; frame 2 runs beside it with one span.
    starts = np.array([0, 0, 4 * S // 10, 0])
    ends = np.array([S, 4 * S // 10, 8 * S // 10, S])
    groups = [("p", "s", 1), ("p", "s", 1), ("p", "s", 1), ("p", "s", 2)]
    ps, pe, owner = innermost_pieces(starts, ends, groups)
    ts = np.arange(0, 2 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), 100.0))
    got = attribute(series, ps, pe, 0, S, GAP, owners=owner, n_spans=4)
    # At every instant two spans run: frame 1's innermost one, and frame 2's.
    assert got.attributed == pytest.approx([10.0, 20.0, 20.0, 50.0], rel=1e-12)
    assert got.idle_j == pytest.approx(0.0, abs=1e-9)


def test_spans_of_different_frames_are_never_nested():
    starts, ends = np.array([0, S // 4]), np.array([S, S // 2])
    ps, pe, owner = innermost_pieces(starts, ends, [1, 2])
    assert list(owner) == [0, 1] and list(ps) == [0, S // 4]
