"""Power and energy over an interval: a power source's samples as a series, and its
energy and mean power over any [start, end].

A power source is a series of (ts, value) samples, either power in W or a monotonic
energy counter in J. Both are kept as a cumulative energy E(t) at the sample times, so
energy over [start, end] is E(end) - E(start):
- power: E grows by the trapezoid between samples, and E(t) inside a sample interval
  integrates the linearly interpolated power up to t (a 10 ms span between two 100 ms
  samples gets an honest value);
- energy counter: E(t) is the counter interpolated linearly (resets are stitched).
Where two samples around or inside the span are further apart than ``max_gap_ns``, or the
span is outside the samples, the result is NaN: missing, not invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PowerSeries:
    """Arrays of one power source: times (int64 ns), cumulative J, power W (power kind)."""

    ts: np.ndarray
    cum: np.ndarray
    power: np.ndarray | None  # None for energy counters

    @classmethod
    def from_power(cls, ts: np.ndarray, watts: np.ndarray) -> PowerSeries:
        ts = np.asarray(ts, dtype=np.int64)
        watts = np.asarray(watts, dtype=np.float64)
        steps = np.diff(ts) * 1e-9 * (watts[1:] + watts[:-1]) * 0.5
        cum = np.concatenate([[0.0], np.cumsum(steps)]) if len(ts) else np.zeros(0)
        return cls(ts, cum, watts)

    @classmethod
    def from_counter(cls, ts: np.ndarray, joules: np.ndarray) -> PowerSeries:
        ts = np.asarray(ts, dtype=np.int64)
        j = np.asarray(joules, dtype=np.float64)
        if len(j) > 1:  # stitch counter resets (driver reload, wrap) into one monotonic line
            drops = np.diff(j) < 0
            offset = np.concatenate([[0.0], np.cumsum(np.where(drops, j[:-1], 0.0))])
            j = j + offset
        return cls(ts, j - (j[0] if len(j) else 0.0), None)


def _cum_at(s: PowerSeries, t: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """E(t) and the index i of the sample interval [ts[i], ts[i+1]] holding each t."""
    n = len(s.ts)
    if n == 0:
        return np.full(len(t), np.nan), np.zeros(len(t), dtype=np.int64)
    i = np.searchsorted(s.ts, t, side="right") - 1
    inside = (i >= 0) & (t <= s.ts[-1])
    i = np.clip(i, 0, n - 1)
    j = np.minimum(i + 1, n - 1)
    h = (s.ts[j] - s.ts[i]).astype(np.float64)
    dt = (t - s.ts[i]).astype(np.float64)
    frac = np.divide(dt, h, out=np.zeros_like(dt), where=h > 0)
    if s.power is None:
        e = s.cum[i] + (s.cum[j] - s.cum[i]) * frac
    else:
        p_t = s.power[i] + (s.power[j] - s.power[i]) * frac
        e = s.cum[i] + dt * 1e-9 * (s.power[i] + p_t) * 0.5
    ok = inside & ((h <= max_gap_ns) | (dt == 0))
    return np.where(ok, e, np.nan), i


def energy_between(s: PowerSeries, start_ns: np.ndarray, end_ns: np.ndarray,
                   max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy (J) and mean power (W) of one source over each [start, end]; NaN if unknown."""
    start_ns = np.asarray(start_ns, dtype=np.int64)
    end_ns = np.asarray(end_ns, dtype=np.int64)
    e0, i0 = _cum_at(s, start_ns, max_gap_ns)
    e1, i1 = _cum_at(s, end_ns, max_gap_ns)
    energy = e1 - e0
    if len(s.ts) > 1:  # any gap inside the span makes it unknown too
        bad = np.concatenate([[0], np.cumsum(np.diff(s.ts) > max_gap_ns)])
        energy = np.where(bad[i1] - bad[i0] > 0, np.nan, energy)
    dur = (end_ns - start_ns) * 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(dur > 0, energy / np.where(dur > 0, dur, 1.0), np.nan)
    if s.power is not None:  # a zero-length span still has a power: the one at that instant
        zero = (dur == 0) & ~np.isnan(energy)
        if zero.any():
            p, _ = power_at(s, start_ns[zero], max_gap_ns)
            mean[zero] = p
    return energy, mean


def power_at(s: PowerSeries, t: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolated power at each t (NaN where unknown) and the interval index."""
    if s.power is None or len(s.ts) == 0:
        return np.full(len(t), np.nan), np.zeros(len(t), dtype=np.int64)
    e, i = _cum_at(s, t, max_gap_ns)
    n = len(s.ts)
    j = np.minimum(i + 1, n - 1)
    h = (s.ts[j] - s.ts[i]).astype(np.float64)
    frac = np.divide((t - s.ts[i]).astype(np.float64), h, out=np.zeros(len(t)), where=h > 0)
    p = s.power[i] + (s.power[j] - s.power[i]) * frac
    return np.where(np.isnan(e), np.nan, p), i
