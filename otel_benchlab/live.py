"""The compact live line: per pair, frames/s, latency percentiles, power, energy/frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.records import StageSpan, Unpaired


@dataclass
class _Window:
    latencies: list[float] = field(default_factory=list)
    power: list[float] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    unpaired: int = 0


class LiveStats:
    def __init__(self, primary_source: str | None) -> None:
        self.primary = primary_source
        self._w: dict[tuple[str, str, str], _Window] = {}

    def add(self, spans: list[StageSpan]) -> None:
        for s in spans:
            w = self._w.setdefault((s.pipeline, s.stage_from, s.stage_to), _Window())
            w.latencies.append(s.latency_ns / 1e6)
            fig = s.power.get(self.primary) if self.primary else None
            if fig is not None and fig.mean_w is not None:
                w.power.append(fig.mean_w)
            if fig is not None and fig.energy_j is not None:
                w.energy.append(fig.energy_j)

    def add_unpaired(self, items: list[Unpaired]) -> None:
        for u in items:
            self._w.setdefault((u.pipeline, u.stage_from, u.stage_to), _Window()).unpaired += 1

    def lines(self, seconds: float) -> list[str]:
        out = []
        for (pipeline, a, b), w in sorted(self._w.items()):
            n = len(w.latencies)
            if n:
                p50, p95, p99 = np.percentile(w.latencies, [50, 95, 99])
                lat = f"p50 {p50:6.2f} p95 {p95:6.2f} p99 {p99:6.2f} ms"
            else:
                lat = "no frames"
            pw = f"{np.mean(w.power):6.1f} W" if w.power else "   -- W"
            ej = f"{1e3 * np.mean(w.energy):7.1f} mJ/frame" if w.energy else "   -- mJ/frame"
            src = f" {self.primary}" if self.primary else ""
            out.append(f"{pipeline} {a}->{b}: {n / seconds:5.1f} fps  {lat}  {pw}{src}  "
                       f"{ej}  unpaired {w.unpaired}")
        self._w.clear()
        return out
