"""LLM serving: a GenAI request span (vLLM's and SGLang's ``llm_request``) measured as its
phases, so that a request is charged for the time it ran, not the time it waited.

A request span runs from the request's arrival to its end. Its latency attributes cut it
into ``arrived -> scheduled`` (queued), ``scheduled -> first_token`` (prefill) and
``first_token -> finished`` (decode). Only prefill and decode share a power source: at each
instant among the phases running then, in proportion to weight x token rate (prefill:
input tokens / prefill seconds x ``prefill_weight``; decode: output tokens / decode
seconds x ``decode_weight``). Queued time gets nothing; time with no phase running is
idle. The request's energy is its prefill share plus its decode share, so requests + idle
add up to the meter. Ordinary stage spans on the same source share with the phases, each
with its ``[attribution]`` weight (default 1): a decode at 40 tokens/s weighs as 40 of
them; give the GPU to the LLM phases alone with ``[attribution] sources``.

A span without token counts is measured with the phase weights alone and has no
per-token figure; phase times that do not fit inside the span (negative, or past its
end) make it one phase, ``arrived -> finished``, that shares the power; both are counted
(``benchlab.agent.genai.incomplete{reason}``).
"""

from __future__ import annotations

import fnmatch
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.components import Component
from otel_benchlab.processors.ids import hash64
from otel_benchlab.records import SpanBatch, StageSpan

PHASES = ("queued", "prefill", "decode", "request")
STAGES = {"queued": ("arrived", "scheduled"), "prefill": ("scheduled", "first_token"),
          "decode": ("first_token", "finished"), "request": ("arrived", "finished")}
SHARING = ("prefill", "decode", "whole")  # the phases that share a source's power
SLACK_NS = 1_000_000  # latencies are rounded floats: a phase may pass its neighbour by this


@dataclass
class GenAIConfig:
    # Incoming spans whose name matches one of these (names or globs) are LLM requests,
    # measured by phase (their tokens from gen_ai.usage.*, their phases from
    # gen_ai.latency.*).
    spans: list[str] = field(default_factory=lambda: ["llm_request"])
    prefill_weight: float = 1.0  # a prefill phase's weight per input token a second
    decode_weight: float = 1.0  # a decode phase's weight per output token a second


@dataclass(slots=True)
class GenAIPhase:
    """What a phase span knows of its request. ``phase`` is one of ``PHASES`` or
    ``whole`` (a request whose phases did not fit: measured as one)."""

    request: tuple[int, int]  # the request span's (trace id, span id)
    phase: str
    request_id: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    weight: float = 0.0  # its share's weight (0: it shares no power)
    # the request span only: its phases' shares, J per source, once they are known
    shares: dict[str, dict[str, float]] | None = None
    decode_ns: int = 0  # the request span only: for time per output token
    ttft_ns: int = 0  # the request span only: arrival to first token

    @property
    def shares_power(self) -> bool:
        return self.phase in SHARING


# The span attributes ``RequestSpans.phases`` reads (the intake looks up only these).
REQUEST_ATTRIBUTES = frozenset({
    "gen_ai.response.model", "gen_ai.request.model", "gen_ai.request.id",
    "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
    "gen_ai.latency.time_in_queue", "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_to_first_token"})


def _number(attrs: dict, *keys: str) -> float | None:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _count(attrs: dict, *keys: str) -> int | None:
    v = _number(attrs, *keys)
    return int(v) if v is not None and v >= 0 else None


class RequestSpans:
    """Makes a GenAI request span's phase spans (``phases``), and gives each request span
    the sum of its phases' shares once they are shared out (``settle``)."""

    MAX_OPEN = 100_000  # requests whose phases came before the request span was released

    def __init__(self, cfg: GenAIConfig) -> None:
        self.cfg = cfg
        self.exact = {p for p in cfg.spans if not any(c in p for c in "*?[")}
        self.globs = [p for p in cfg.spans if p not in self.exact]
        self._open: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def matches(self, name: str) -> bool:
        return name in self.exact or any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    def phases(self, attrs: dict, service: str, start_ns: int, end_ns: int, trace_id: int,
               span_id: int, problem: list[str]) -> list[StageSpan]:
        """The request's spans (monotonic ns): its phases, then the request itself, with
        the span's own ids on the request. ``problem`` gets why it is incomplete."""
        model = str(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
                    or service)
        rid = str(attrs.get("gen_ai.request.id") or f"{span_id:016x}")
        n_in = _count(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
        n_out = _count(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
        if n_in is None or n_out is None:
            problem.append("no_tokens")
        queue = _number(attrs, "gen_ai.latency.time_in_queue")
        prefill = _number(attrs, "gen_ai.latency.time_in_model_prefill")
        ttft = _number(attrs, "gen_ai.latency.time_to_first_token")
        cuts = None
        if queue is not None and (prefill is not None or ttft is not None):
            scheduled = start_ns + int(queue * 1e9)
            first = scheduled + int(prefill * 1e9) if prefill is not None else \
                start_ns + int(ttft * 1e9)
            if queue >= 0 and start_ns <= scheduled <= first <= end_ns + SLACK_NS:
                cuts = (scheduled, min(first, end_ns))
        if cuts is None:
            problem.append("bad_phases" if queue is not None else "no_phases")
        key = (trace_id, span_id)

        def span(phase: str, s: int, e: int, weight: float, sid: int) -> StageSpan:
            a, b = STAGES.get(phase, STAGES["request"])
            out = StageSpan(model, service, None, a, b, s, e, trace_id, sid, foreign=True)
            out.genai = GenAIPhase(key, phase, rid, model, n_in, n_out, weight)
            return out

        def rate(tokens: int | None, s: int, e: int, per: float) -> float:
            return per * (tokens / ((e - s) / 1e9) if tokens and e > s else 1.0)

        def sid(phase: str) -> int:
            return hash64(f"{span_id}\0{phase}") & ((1 << 63) - 1)

        request = span("request", start_ns, end_ns, 0.0, span_id)
        if cuts is None:
            request.genai.phase = "whole"
            request.genai.weight = rate(n_out, start_ns, end_ns, self.cfg.decode_weight)
            return [request]
        scheduled, first = cuts
        request.genai.decode_ns = end_ns - first
        request.genai.ttft_ns = first - start_ns
        return [span("queued", start_ns, scheduled, 0.0, sid("queued")),
                span("prefill", scheduled, first,
                     rate(n_in, scheduled, first, self.cfg.prefill_weight), sid("prefill")),
                span("decode", first, end_ns, rate(n_out, first, end_ns,
                                                   self.cfg.decode_weight), sid("decode")),
                request]

    def settle(self, spans: list[StageSpan], got: np.ndarray, labels: list[str]) -> bool:
        """``got`` (spans x sources, attributed J) of spans released together: phases add
        to their request's sum; a request span gets the sum (and the split by phase).
        Whether any request span was among them."""
        if not any(s.genai is not None for s in spans):
            return False
        requests = False
        known = np.nan_to_num(got[:len(spans)])
        for i, s in enumerate(spans):
            g = s.genai
            if g is None or g.phase not in ("prefill", "decode"):
                continue
            acc = self._open.get(g.request)
            if acc is None:
                acc = self._open[g.request] = np.zeros((2, len(labels)))
                while len(self._open) > self.MAX_OPEN:
                    self._open.popitem(last=False)
            acc[0 if g.phase == "prefill" else 1] += known[i]
        for i, s in enumerate(spans):
            g = s.genai
            if g is None or g.phase != "request":
                continue
            requests = True
            acc = self._open.pop(g.request, None)
            if acc is None:
                continue
            got[i] = acc.sum(axis=0)
            g.shares = {label: {"prefill": float(acc[0, j]), "decode": float(acc[1, j])}
                        for j, label in enumerate(labels)}
        return requests


def requests_of(batch: SpanBatch, source: str | None
                ) -> Iterator[tuple[int, str, GenAIPhase, float]]:
    """The request spans of a released batch: (position, its model as the batch names
    its pipeline, what it knows, its attributed J of ``source``, NaN where none). The model
    is the batch's name, not ``GenAIPhase.model``: a batch folded at ``[limits]
    max_pipelines`` keeps a flood of model names under ``_other`` in memory too."""
    shares = batch.attributed.get(source) if source else None
    codes, names = batch.names()
    for i, s in enumerate(batch.spans):
        g = s.genai
        if g is not None and g.phase in ("request", "whole"):
            yield (i, names[codes[i]][0], g,
                   float(shares[i]) if shares is not None else float("nan"))


def request_figures(span: StageSpan) -> list[tuple[str, float]]:
    """What a forwarded request span gains besides its power (``benchlab.energy.
    attributed.<src>``, added as for any span): J per output token, and the prefill and
    decode shares, per source."""
    from otel_benchlab.session.schema import column_suffix

    g = span.genai
    if g is None or g.phase not in ("request", "whole"):
        return []
    out = []
    for label, fig in span.power.items():
        sfx = column_suffix(label)
        if fig.energy_attr_j is not None and g.output_tokens:
            out.append((f"benchlab.energy.per_output_token.{sfx}",
                        fig.energy_attr_j / g.output_tokens))
        for phase, joules in (g.shares or {}).get(label, {}).items():
            out.append((f"benchlab.energy.{phase}.{sfx}", joules))
    return out


COMPONENT = Component("genai", "genai", settings=GenAIConfig,
                      ranges={"prefill_weight": (0.0, 1e6), "decode_weight": (0.0, 1e6)})
