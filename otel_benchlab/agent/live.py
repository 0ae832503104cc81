"""The live lines and the end-of-run summary: per pair, frames/s, latency percentiles,
power, energy per frame, unpaired marks; per pipeline, energy per frame as MLPerf Power
counts it (the meter's energy over the window / the frames completed in it, which is the
mean power / frames per second).

Two energies per pair, labelled: ``attributed`` (the frames' share of the source: at each
instant its power is split among the spans running; these add up, with idle, to the
meter's) and ``while running`` (the source's energy while the span ran: with overlapping
spans the same joules count for each).

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

from otel_benchlab.agent.llm_lines import RequestLines
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
    attributed: list[float] = field(default_factory=list)
    first_end: int = 0
    last_end: int = 0
    unpaired: int = 0


@dataclass
class _Total:
    frames: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, np.int64))
    energy_sum: float = 0.0
    energy_n: int = 0
    attributed_sum: float = 0.0
    attributed_n: int = 0
    unpaired: int = 0
    last_end: int = 0  # end of the newest span shown in a live line


class LiveStats:
    def __init__(self, primary_source: str | None,
                 pair_order: list[tuple[str, str]] | None = None) -> None:
        self.primary = primary_source
        self.order = {p: i for i, p in enumerate(pair_order or [])}
        self._w: dict[tuple[str, str, str], _Window] = {}
        self._t: dict[tuple[str, str, str], _Total] = {}
        # The primary source's energy shared out in the window and over the run:
        # [meter J, idle J]; the frames of each pipeline over the run.
        self._meter_w = [0.0, 0.0]
        self._meter_t = [0.0, 0.0]
        self._frames_t: dict[str, int] = {}
        self.requests = RequestLines(primary_source)  # LLM requests, by model
        self.energy_listeners: list = []  # told of each (meter J, idle J) shared out

    def add_energy(self, meter_j: float, idle_j: float) -> None:
        """The primary source's energy shared out since the last call (``meter_j``), of it
        ``idle_j`` with no span running: the same stretch of time as the spans added."""
        self._meter_w[0] += meter_j
        self._meter_w[1] += idle_j
        for listener in self.energy_listeners:
            listener(meter_j, idle_j)

    def _keys(self, keys) -> list[tuple[str, str, str]]:
        # An LLM model's phases are said as requests and tokens (RequestLines).
        keys = [k for k in keys if k[0] not in self.requests.models]
        return sorted(keys, key=lambda k: (self.order.get((k[1], k[2]), len(self.order)),
                                           k[1], k[2], k[0]))

    def add(self, batch: SpanBatch) -> None:
        if any(s.genai is not None for s in batch.spans):
            self.requests.add(batch)
        # Each pair's figures taken in bulk from the batch's columns.
        latency_ms = (batch.end_ns - batch.start_ns) / 1e6
        primary = batch.power.get(self.primary) if self.primary else None
        shares = batch.attributed.get(self.primary) if self.primary else None
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
            if shares is not None:
                mine = shares[idx]
                w.attributed += mine[~np.isnan(mine)].tolist()

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
            t.attributed_sum += float(np.sum(w.attributed)) if w.attributed else 0.0
            t.attributed_n += len(w.attributed)
            t.unpaired += w.unpaired
            out.append((key, w, t, fps))
        self._w = {}
        return out

    def _pipelines(self, counts: dict[tuple[str, str, str], int]) -> dict[str, int]:
        """Frames completed per pipeline: the spans of its last configured pair."""
        last: dict[str, tuple[int, int]] = {}
        for (pipeline, a, b), n in counts.items():
            rank = self.order.get((a, b), -1)
            if pipeline not in last or rank > last[pipeline][0]:
                last[pipeline] = (rank, n)
        return {p: n for p, (_, n) in last.items()}

    def frames_by_pipeline(self) -> dict[str, int]:
        """Frames completed so far per pipeline (the session's summary records them)."""
        counts = {key: t.frames for key, t in self._t.items()}
        for key, w in self._w.items():
            counts[key] = counts.get(key, 0) + len(w.latencies)
        return self._pipelines(counts)

    def _per_frame(self, meter: list[float], frames: dict[str, int],
                   attributed: dict[str, float]) -> list[str]:
        """Per pipeline: the meter's energy / its frames (one pipeline), and its stages'
        attributed energy / its frames."""
        out = []
        for pipeline, n in frames.items():
            if pipeline in self.requests.models:
                continue
            if not n or not self.primary or (meter[0] <= 0 and not attributed.get(pipeline)):
                continue  # no frames, or nothing shared out yet
            mine = 1e3 * attributed.get(pipeline, 0.0) / n
            if len(frames) == 1 and meter[0] > 0:
                out.append(f"{pipeline} energy per frame: {1e3 * meter[0] / n:.1f} mJ "
                           f"{self.primary} (the meter's energy / frames: stages attributed "
                           f"{mine:.1f} + idle {1e3 * meter[1] / n:.1f})")
            else:
                out.append(f"{pipeline} energy per frame: {mine:.1f} mJ {self.primary} "
                           "attributed to its stages")
        return out

    def lines(self, now_s: float | None = None) -> list[str]:
        stamp = time.strftime("%H:%M:%S")
        out = []
        counts: dict[tuple[str, str, str], int] = {}
        attributed: dict[str, float] = {}
        for (pipeline, a, b), w, _, fps in self._fold():
            n = len(w.latencies)
            counts[(pipeline, a, b)] = n
            attributed[pipeline] = attributed.get(pipeline, 0.0) + float(np.sum(w.attributed))
            if n:
                p50, p95, p99 = np.percentile(w.latencies, [50, 95, 99])
                lat = f"p50 {p50:6.2f} p95 {p95:6.2f} p99 {p99:6.2f} ms"
            else:
                lat = "no frames"
            pw = f"{np.mean(w.power):6.1f} W" if w.power else "   -- W"
            src = f" {self.primary}" if self.primary else ""
            ea = f"attributed {1e3 * np.mean(w.attributed):7.1f}" if w.attributed else \
                "attributed    --"
            ej = f"while running {1e3 * np.mean(w.energy):7.1f}" if w.energy else \
                "while running    --"
            out.append(f"{stamp} {pipeline} {a}->{b}: {fps:5.1f} fps  {lat}  {pw}{src}  "
                       f"{ea} mJ/frame ({ej})  unpaired {w.unpaired}")
        meter, self._meter_w = self._meter_w, [0.0, 0.0]
        self._meter_t = [self._meter_t[0] + meter[0], self._meter_t[1] + meter[1]]
        frames = self._pipelines(counts)
        for p, n in frames.items():
            self._frames_t[p] = self._frames_t.get(p, 0) + n
        out += [f"{stamp} {line}" for line in self._per_frame(meter, frames, attributed)]
        return out + self.requests.lines()

    def summary(self, ran_s: float, session_dir: Path, counts: dict) -> list[str]:
        """The end-of-run summary: every pair over the whole run, and where the files are."""
        self.lines()  # what came since the last live line, into the totals
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
            ea = f"attributed {1e3 * t.attributed_sum / t.attributed_n:.1f}" if \
                t.attributed_n else "attributed --"
            ej = (f"{ea} mJ/frame (while running {1e3 * t.energy_sum / t.energy_n:.1f})"
                  + (f" {self.primary}" if self.primary else "")) if t.energy_n else \
                "energy --"
            out.append(f"  {pipeline} {a}->{b}: {t.frames} frames  {lat}  {ej}  "
                       f"unpaired {t.unpaired}")
        attributed: dict[str, float] = {}
        for (pipeline, _, _), t in self._t.items():
            attributed[pipeline] = attributed.get(pipeline, 0.0) + t.attributed_sum
        out += [f"  {line}" for line in self._per_frame(self._meter_t, self._frames_t,
                                                         attributed)]
        meter = counts.get("energy_j", {}).get(self.primary or "")
        out += self.requests.summary(meter["total"] if meter else None)
        for label, e in counts.get("energy_j", {}).items():
            out.append(f"  energy {label}: {e['total']:.1f} J measured = "
                       f"{e['attributed']:.1f} J attributed to spans + {e['idle']:.1f} J idle")
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
