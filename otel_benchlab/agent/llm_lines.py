"""The live lines and the end-of-run summary of LLM requests (``processors.genai``), per
model: requests and output tokens a second, time to first token and time per output token
(p50, p95), and joules per request and per output token: each request's attributed share,
and the machine's (the meter's energy over all output tokens, idle included, as aggregate
meters count it). Percentiles come from sketches (``views.digest.Sketch``): a model costs
a few kB however long the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.processors.genai import requests_of
from otel_benchlab.records import SpanBatch
from otel_benchlab.views.digest import Sketch


@dataclass
class _Model:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    energy_j: float = 0.0  # attributed, of the requests with a figure
    energy_n: int = 0
    token_j: float = 0.0  # attributed, of the requests with output tokens
    token_n: int = 0  # their output tokens
    first_end: int = 0
    last_end: int = 0
    ttft_ms: Sketch = field(default_factory=Sketch)
    tpot_ms: Sketch = field(default_factory=Sketch)

    def add(self, other: _Model) -> None:
        for name in ("requests", "input_tokens", "output_tokens", "energy_j", "energy_n",
                     "token_j", "token_n"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_end = min(self.first_end or other.first_end, other.first_end)
        self.last_end = max(self.last_end, other.last_end)
        self.ttft_ms.merge(other.ttft_ms)
        self.tpot_ms.merge(other.tpot_ms)


class RequestLines:
    def __init__(self, primary_source: str | None) -> None:
        self.primary = primary_source
        self._w: dict[str, _Model] = {}
        self._t: dict[str, _Model] = {}

    def add(self, batch: SpanBatch) -> None:
        latencies: dict[str, tuple[list[float], list[float]]] = {}
        for i, model, g, joules in requests_of(batch, self.primary):
            m = self._w.setdefault(model, _Model())
            ttft, tpot = latencies.setdefault(model, ([], []))
            m.requests += 1
            m.input_tokens += g.input_tokens or 0
            m.output_tokens += g.output_tokens or 0
            end = int(batch.end_ns[i])
            m.first_end = min(m.first_end or end, end)
            m.last_end = max(m.last_end, end)
            if g.ttft_ns:
                ttft.append(g.ttft_ns / 1e6)
            if g.output_tokens and g.output_tokens > 1 and g.decode_ns:
                tpot.append(g.decode_ns / 1e6 / (g.output_tokens - 1))
            if joules == joules:
                m.energy_j += joules
                m.energy_n += 1
                if g.output_tokens:
                    m.token_j += joules
                    m.token_n += g.output_tokens
        for model, (ttft, tpot) in latencies.items():  # a sketch takes a batch at once
            self._w[model].ttft_ms.add(np.asarray(ttft))
            self._w[model].tpot_ms.add(np.asarray(tpot))

    def _line(self, model: str, m: _Model, seconds: float | None,
              meter_j: float | None = None) -> str:
        rate = (f"{m.requests / seconds:5.1f} req/s {m.output_tokens / seconds:7.1f} "
                "output tok/s") if seconds else "  -- req/s"
        lat = []
        for name, sk in (("TTFT", m.ttft_ms), ("TPOT", m.tpot_ms)):
            if sk.n:
                p50, p95 = sk.quantiles([0.5, 0.95])
                lat.append(f"{name} p50 {p50:.1f} p95 {p95:.1f} ms")
        src = f" {self.primary}" if self.primary else ""
        energy = (f"{m.energy_j / m.energy_n:.2f} J/request, "
                  f"{m.token_j / m.token_n:.3f} J/output token attributed{src}") \
            if m.energy_n and m.token_n else "energy --"
        if meter_j is not None and m.output_tokens:
            energy += f" (machine {meter_j / m.output_tokens:.3f} J/output token)"
        return f"{model}: {m.requests} requests  {rate}  {'  '.join(lat)}  {energy}"

    def lines(self) -> list[str]:
        """Since the last call (folded into the totals)."""
        stamp = time.strftime("%H:%M:%S")
        out = []
        for model, m in self._w.items():
            t = self._t.setdefault(model, _Model())
            since = t.last_end or m.first_end
            seconds = (m.last_end - since) / 1e9 if m.last_end > since else None
            out.append(f"{stamp} {self._line(model, m, seconds)}")
            t.add(m)
        self._w = {}
        return out

    def summary(self, meter_j: float | None) -> list[str]:
        """Over the run; ``meter_j``: the primary source's energy measured (one model: the
        machine's J per output token)."""
        self.lines()
        meter = meter_j if len(self._t) == 1 else None
        out = []
        for model, m in self._t.items():
            seconds = (m.last_end - m.first_end) / 1e9 or None
            out.append("  " + self._line(model, m, seconds, meter))
        return out

    @property
    def models(self) -> set[str]:
        return set(self._t) | set(self._w)
