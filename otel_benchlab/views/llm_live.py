"""The live page's LLM requests (``processors.genai``): per model a ring of its newest
requests (end, time to first token, time per output token, tokens, attributed joules), and
the meter's energy as it is shared out, so a window's figures are the same ones the report
gives: requests and output tokens a second, TTFT and TPOT p50/p95, J per request and per
output token attributed, and the machine's J per output token (the meter's energy over the
window's output tokens, idle included)."""

from __future__ import annotations

from collections import deque

import numpy as np

from otel_benchlab.processors.genai import requests_of
from otel_benchlab.records import SpanBatch

RING = 1 << 16  # requests a model: 15 minutes at 70 requests a second; 3 MiB
FIRST_ROWS = 256  # a model's ring starts here (12 KiB) and doubles as requests come
FIELDS = 6  # end (Unix s), TTFT ms, TPOT ms, input tokens, output tokens, joules


class _Ring:
    """A model's newest requests, at most ``RING``; its rows are allocated as requests
    come, so a model seen once holds 12 KiB, not 3 MiB. Models are pipelines, bounded by
    ``[limits] max_pipelines`` (the batch the page gets is folded: ``requests_of``)."""

    __slots__ = ("rows", "count")

    def __init__(self) -> None:
        self.rows = np.full((FIRST_ROWS, FIELDS), np.nan)
        self.count = 0  # requests ever put

    def put(self, row: tuple[float, ...]) -> None:
        size = len(self.rows)
        if self.count == size < RING:  # full before it ever wrapped: grow, order kept
            self.rows = np.concatenate([self.rows, np.full((size, FIELDS), np.nan)])
            size *= 2
        self.rows[self.count % size] = row
        self.count += 1


class RequestRings:
    def __init__(self, primary: str | None, offset_ns: int) -> None:
        self.primary = primary
        self.offset_ns = offset_ns
        self._rings: dict[str, _Ring] = {}  # model -> its newest requests
        self._meter: deque[tuple[float, float]] = deque(maxlen=4096)  # (Unix s, J)

    @property
    def models(self) -> set[str]:
        return set(self._rings)

    def add_energy(self, meter_j: float, idle_j: float, now_unix_s: float) -> None:
        self._meter.append((now_unix_s, meter_j))

    def add(self, batch: SpanBatch) -> None:
        for i, model, g, joules in requests_of(batch, self.primary):
            ring = self._rings.get(model)
            if ring is None:
                ring = self._rings[model] = _Ring()
            n_out = g.output_tokens
            ring.put((
                (int(batch.end_ns[i]) + self.offset_ns) / 1e9,
                g.ttft_ns / 1e6 if g.ttft_ns else np.nan,
                g.decode_ns / 1e6 / (n_out - 1) if n_out and n_out > 1 and g.decode_ns
                else np.nan,
                np.nan if g.input_tokens is None else g.input_tokens,
                np.nan if n_out is None else n_out, joules))

    def snapshot(self, now_s: float, window_s: float) -> list[dict]:
        since_s = now_s - window_s
        meter = sum(j for t, j in self._meter if t >= since_s)
        out = []
        for model, ring in sorted(self._rings.items()):
            rows = ring.rows
            seen = rows[np.isfinite(rows[:, 0]), 0]
            # A page opened in the first minute: the rates over the time there has been.
            seconds = min(window_s, now_s - float(seen.min())) if len(seen) else window_s
            r = rows[rows[:, 0] >= since_s]
            out.append(_figures(model, r, max(seconds, 1e-3),
                                meter if len(self._rings) == 1 else None))
        return out


def _pct(v: np.ndarray, q: float) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if len(v) else None


def _figures(model: str, r: np.ndarray, window_s: float, meter_j: float | None) -> dict:
    out_tokens = float(np.nansum(r[:, 4]))
    joules, tokens = r[:, 5], r[:, 4]
    known = np.isfinite(joules)
    with_tokens = known & np.isfinite(tokens) & (tokens > 0)
    return {
        "model": model, "requests": int(len(r)),
        "requests_per_s": len(r) / window_s, "output_tokens_per_s": out_tokens / window_s,
        "ttft_ms": {"p50": _pct(r[:, 1], 50), "p95": _pct(r[:, 1], 95)},
        "tpot_ms": {"p50": _pct(r[:, 2], 50), "p95": _pct(r[:, 2], 95)},
        "energy_j_per_request": float(joules[known].mean()) if known.any() else None,
        "energy_j_per_output_token": float(joules[with_tokens].sum() / tokens[with_tokens]
                                           .sum()) if with_tokens.any() else None,
        "machine_energy_j_per_output_token": meter_j / out_tokens
        if meter_j is not None and out_tokens > 0 else None,
    }
