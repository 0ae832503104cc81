"""The live lines and the end-of-run summary: per pair, frames/s, latency percentiles,
power, energy per frame, unpaired marks.

Pairs are shown in the configured order. Frames/s is measured on the spans' own times
(the frames that ended since the last line, over the time between their ends), so a first
window that starts before the pipeline does, or spans released a moment late, do not
skew it. The run's totals keep latencies in a log histogram (1 % wide bins), so a
summary after days costs the same memory as after a minute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from otel_benchlab.records import SpanBatch, Unpaired

_BIN = np.log(1.01)  # latency histogram: 1 % wide bins from 1 us
_BINS = 2000  # up to ~ 1 us * 1.01**2000 = 440 s


def _bin(latency_ms: np.ndarray) -> np.ndarray:
    idx = np.floor(np.log(np.maximum(latency_ms, 1e-3) / 1e-3) / _BIN).astype(np.int64)
    return np.clip(idx, 0, _BINS - 1)


def _percentiles(hist: np.ndarray, qs: list[float]) -> list[float]:
    cum = np.cumsum(hist)
    out = []
    for q in qs:
        i = int(np.searchsorted(cum, q / 100 * cum[-1]))
        out.append(1e-3 * 1.01 ** (i + 0.5))  # the bin's middle
    return out


@dataclass
class _Window:
    latencies: list[float] = field(default_factory=list)
    power: list[float] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    first_end: int = 0
    last_end: int = 0
    unpaired: int = 0


@dataclass
class _Total:
    frames: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, np.int64))
    energy_sum: float = 0.0
    energy_n: int = 0
    unpaired: int = 0
    last_end: int = 0  # end of the newest span shown in a live line


class LiveStats:
    def __init__(self, primary_source: str | None,
                 pair_order: list[tuple[str, str]] | None = None) -> None:
        self.primary = primary_source
        self.order = {p: i for i, p in enumerate(pair_order or [])}
        self._w: dict[tuple[str, str, str], _Window] = {}
        self._t: dict[tuple[str, str, str], _Total] = {}

    def _keys(self, keys) -> list[tuple[str, str, str]]:
        return sorted(keys, key=lambda k: (self.order.get((k[1], k[2]), len(self.order)),
                                           k[1], k[2], k[0]))

    def add(self, batch: SpanBatch) -> None:
        # Each pair's figures taken in bulk from the batch's columns.
        latency_ms = (batch.end_ns - batch.start_ns) / 1e6
        primary = batch.power.get(self.primary) if self.primary else None
        for key, idx in batch.by_pair():
            ends = batch.end_ns[idx]
            w = self._w.get(key)
            if w is None:
                w = self._w[key] = _Window(first_end=int(ends[0]))
            w.latencies += latency_ms[idx].tolist()
            # 0: not set yet (a window opened by unpaired marks before any span)
            w.first_end = min(w.first_end or int(ends.min()), int(ends.min()))
            w.last_end = max(w.last_end, int(ends.max()))
            if primary is not None:
                mean, energy = primary[0][idx], primary[1][idx]
                w.power += mean[~np.isnan(mean)].tolist()
                w.energy += energy[~np.isnan(energy)].tolist()

    def add_unpaired(self, items: list[Unpaired]) -> None:
        for u in items:
            self._w.setdefault((u.pipeline, u.stage_from, u.stage_to), _Window()).unpaired += 1

    def _fold(self) -> list[tuple[tuple[str, str, str], _Window, _Total, float]]:
        """Move the window into the totals; (key, window, total, frames/s) per pair."""
        out = []
        for key in self._keys(self._w):
            w = self._w[key]
            t = self._t.setdefault(key, _Total())
            n = len(w.latencies)
            fps = 0.0
            if n and t.last_end and w.last_end > t.last_end:
                fps = n / ((w.last_end - t.last_end) / 1e9)
            elif n > 1 and w.last_end > w.first_end:
                fps = (n - 1) / ((w.last_end - w.first_end) / 1e9)
            if n:
                t.frames += n
                t.hist += np.bincount(_bin(np.asarray(w.latencies)), minlength=_BINS)
                t.last_end = max(t.last_end, w.last_end)
            t.energy_sum += float(np.sum(w.energy)) if w.energy else 0.0
            t.energy_n += len(w.energy)
            t.unpaired += w.unpaired
            out.append((key, w, t, fps))
        self._w = {}
        return out

    def lines(self, now_s: float | None = None) -> list[str]:
        stamp = time.strftime("%H:%M:%S")
        out = []
        for (pipeline, a, b), w, _, fps in self._fold():
            n = len(w.latencies)
            if n:
                p50, p95, p99 = np.percentile(w.latencies, [50, 95, 99])
                lat = f"p50 {p50:6.2f} p95 {p95:6.2f} p99 {p99:6.2f} ms"
            else:
                lat = "no frames"
            pw = f"{np.mean(w.power):6.1f} W" if w.power else "   -- W"
            ej = f"{1e3 * np.mean(w.energy):7.1f} mJ/frame" if w.energy else "   -- mJ/frame"
            src = f" {self.primary}" if self.primary else ""
            out.append(f"{stamp} {pipeline} {a}->{b}: {fps:5.1f} fps  {lat}  {pw}{src}  "
                       f"{ej}  unpaired {w.unpaired}")
        return out

    def summary(self, ran_s: float, session_dir: Path, counts: dict) -> list[str]:
        """The end-of-run summary: every pair over the whole run, and where the files are."""
        self._fold()
        out = [f"summary: {ran_s:.1f} s, {counts.get('marks', 0)} marks, "
               f"{counts.get('samples', 0)} samples, {counts.get('spans', 0)} spans"]
        for key in self._keys(self._t):
            pipeline, a, b = key
            t = self._t[key]
            if t.frames:
                p50, p95, p99 = _percentiles(t.hist, [50, 95, 99])
                lat = f"p50 {p50:.2f} p95 {p95:.2f} p99 {p99:.2f} ms"
            else:
                lat = "no frames"
            ej = (f"{1e3 * t.energy_sum / t.energy_n:.1f} mJ/frame"
                  + (f" ({self.primary})" if self.primary else "")) if t.energy_n else \
                "energy --"
            out.append(f"  {pipeline} {a}->{b}: {t.frames} frames  {lat}  {ej}  "
                       f"unpaired {t.unpaired}")
        lost = {k: counts.get(k) for k in ("queue_dropped", "export_dropped", "write_errors")
                if counts.get(k)}
        if lost:
            out.append("  losses: " + ", ".join(f"{k} {v}" for k, v in lost.items()))
        if counts.get("undelivered"):
            out.append("  not delivered at exit: " + ", ".join(
                f"{k}: {v}" for k, v in counts["undelivered"].items()))
        out.append(f"  files: {session_dir}/aligned/ and raw/ (Parquet), "
                   f"{len(counts.get('capframex_files', []))} CapFrameX files in "
                   f"{session_dir}/capframex/")
        return out
