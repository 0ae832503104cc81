"""Energy over an interval: integral of power with linear interpolation; missing, not guessed."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from otel_benchlab.processors.energy import EnergyAnnotator
from otel_benchlab.processors.power_series import PowerSeries, energy_between
from otel_benchlab.records import StageSpan

MS = 1_000_000
GAP = 500 * MS


def series(ts_ms, watts) -> PowerSeries:
    return PowerSeries.from_power(np.array(ts_ms, np.int64) * MS, np.array(watts, float))


@given(p=st.floats(0.1, 2000), a=st.integers(0, 900), d=st.integers(0, 900))
def test_constant_power_gives_power_times_duration(p, a, d):
    s = series(range(0, 2001, 100), [p] * 21)
    e, m = energy_between(s, np.array([a * MS]), np.array([(a + d) * MS]), GAP)
    assert math.isclose(e[0], p * d / 1000, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(m[0], p, rel_tol=1e-9)


def test_short_span_between_two_samples_uses_the_interpolated_ramp():
    s = series([0, 100], [100.0, 200.0])  # power ramps 100 -> 200 W over 100 ms
    e, m = energy_between(s, np.array([40 * MS]), np.array([50 * MS]), GAP)
    assert math.isclose(m[0], 145.0)  # mean of 140 W and 150 W
    assert math.isclose(e[0], 1.45)


def test_span_outside_the_samples_is_missing():
    s = series([0, 100], [10.0, 10.0])
    e, _ = energy_between(s, np.array([50 * MS]), np.array([150 * MS]), GAP)
    assert np.isnan(e[0])


def test_gap_around_or_inside_the_span_makes_it_missing():
    s = series([0, 100, 1000, 1100], [10.0] * 4)
    e, _ = energy_between(s, np.array([50 * MS, 200 * MS, 1010 * MS]),
                          np.array([1050 * MS, 300 * MS, 1050 * MS]), GAP)
    assert np.isnan(e[0]) and np.isnan(e[1]) and math.isclose(e[2], 0.4)


def test_energy_counter_is_interpolated_at_both_ends_and_resets_are_stitched():
    ts = np.array([0, 100, 200, 300], np.int64) * MS
    joules = np.array([1000.0, 1010.0, 5.0, 15.0])  # counter reset between 100 and 200 ms
    s = PowerSeries.from_counter(ts, joules)
    e, m = energy_between(s, np.array([50 * MS]), np.array([250 * MS]), GAP)
    assert math.isclose(e[0], 5 + 5 + 5)  # stitched: 1000,1010,1015,1025
    assert math.isclose(m[0], 75.0)


def test_annotator_waits_for_a_sample_past_the_span_end():
    ann = EnergyAnnotator({"SYS": "power"}, GAP, keep_ns=5_000 * MS)
    ann.add_power("SYS", 0, 50.0)
    span = StageSpan("p", "s", 1, "A", "B", 10 * MS, 20 * MS)
    ann.add_span(span)
    assert ann.release(30 * MS).spans == []
    ann.add_power("SYS", 100 * MS, 50.0)
    [done] = ann.release(110 * MS).spans
    assert math.isclose(done.power["SYS"].energy_j, 0.5)


def test_annotator_gives_up_after_the_gap_and_leaves_the_value_missing():
    ann = EnergyAnnotator({"SYS": "power"}, GAP, keep_ns=5_000 * MS)
    ann.add_power("SYS", 0, 50.0)
    ann.add_span(StageSpan("p", "s", 1, "A", "B", 10 * MS, 20 * MS))
    [done] = ann.release(20 * MS + GAP + 1).spans
    assert done.power["SYS"].energy_j is None and done.power["SYS"].mean_w is None
