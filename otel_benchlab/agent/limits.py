"""Bounds on the names that hold memory in the agent. Pipelines, streams and stage pairs
come from applications the agent does not control (a request id or a client address used
as a stream, a service name per pod); every figure the agent keeps per name in memory (the
live page's rings, the live lines and summary, the latency and energy histograms' series,
the CapFrameX captures) is kept for at most ``max_pipelines`` pipelines, ``max_streams``
streams of each and ``max_pairs`` stage pairs of each. A name past its bound has its figures
folded into one overflow name, ``_other`` (as the OpenTelemetry SDK folds series past its
cardinality limit into ``otel.metric.overflow``), counted in
``benchlab.agent.overflow{kind}`` and said once, naming the first name that overflowed.
Per-frame rows (Parquet aligned and raw, traces) keep their real names: they are data.

Names are admitted first come, first kept, for the agent's lifetime: what a page or a
histogram shows under a name is always that name's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_benchlab.components import Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import SpanBatch, Unpaired

OVERFLOW = "_other"

HINTS = {
    "pipeline": "more pipelines than [limits] max_pipelines = {limit}: pipeline {name!r} and "
                "every new one after it are shown as pipeline '_other' on the live page, in "
                "the live lines, histograms and CapFrameX; Parquet and traces keep every name. "
                "A pipeline is a service (service.name, the probe's pipeline): raise the "
                "limit, or give per-request detail as a frame id, not as a name",
    "stream": "more streams of pipeline {pipeline!r} than [limits] max_streams = {limit}: "
              "stream {name!r} and every new one after it are shown as stream '_other'; "
              "Parquet and traces keep every name. A stream is a camera or a worker: raise "
              "the limit, or put a request id or client address in the frame id instead",
    "pair": "more stage pairs of pipeline {pipeline!r} than [limits] max_pairs = {limit}: "
            "{name!r} and every new one after it are shown as pair '_other->_other'; "
            "Parquet and traces keep every name. Raise the limit, or name stages by what "
            "they do, not by a request",
}


@dataclass
class LimitsConfig:
    # Pipelines whose figures are kept apart in memory (live page, live lines, histograms,
    # CapFrameX captures); a new pipeline past this is shown as pipeline "_other".
    max_pipelines: int = 32
    # Streams of each pipeline kept apart on the live page; past this, stream "_other".
    max_streams: int = 256
    # Stage pairs of each pipeline kept apart; past this, pair "_other->_other".
    max_pairs: int = 32
    # Marks waiting for their partner, all pairs together; past this the oldest are
    # evicted and counted as unpaired (reason evicted).
    max_pending_marks: int = 200_000
    # Frames waiting for their trace to be complete; past this the oldest are ended and
    # exported as they are.
    max_pending_frames: int = 100_000


class KeyLimits:
    """Which names keep figures of their own; ``fold`` maps any name to the one its
    figures are kept under. Memory: the admitted names, at most ``max_pipelines`` x
    (1 + ``max_streams`` + ``max_pairs``) strings."""

    def __init__(self, cfg: LimitsConfig, counters: AgentCounters) -> None:
        self.cfg = cfg
        self.counters = counters
        self._streams: dict[str, set[str]] = {}  # admitted pipeline -> admitted streams
        self._pairs: dict[str, set[tuple[str, str]]] = {}
        for kind in HINTS:
            counters.declare("overflow", kind=kind)

    def _overflow(self, kind: str, n: int, name: str, pipeline: str = "") -> None:
        if not n:
            return
        limit = getattr(self.cfg, f"max_{kind}s")
        self.counters.add("overflow", n, HINTS[kind].format(limit=limit, name=name,
                                                           pipeline=pipeline), kind=kind)

    def pipeline(self, name: str, n: int = 1) -> str:
        if name in self._streams:
            return name
        if len(self._streams) < self.cfg.max_pipelines:
            self._streams[name] = set()
            self._pairs[name] = set()
            return name
        self._overflow("pipeline", n, name)
        return OVERFLOW

    def pair(self, pipeline: str, stage_from: str, stage_to: str,
             n: int = 1) -> tuple[str, str]:
        """The pair's name under ``pipeline`` (already folded)."""
        pairs = self._pairs.get(pipeline)
        if pairs is None:  # the overflow pipeline keeps its pairs under the same bound
            pairs = self._pairs.setdefault(pipeline, set())
        key = (stage_from, stage_to)
        if key in pairs:
            return key
        if len(pairs) < self.cfg.max_pairs:
            pairs.add(key)
            return key
        self._overflow("pair", n, f"{stage_from}->{stage_to}", pipeline)
        return OVERFLOW, OVERFLOW

    def stream(self, pipeline: str, name: str, n: int = 1) -> str:
        streams = self._streams.get(pipeline)
        if streams is None:
            streams = self._streams.setdefault(pipeline, set())
        if name in streams:
            return name
        if len(streams) < self.cfg.max_streams:
            streams.add(name)
            return name
        self._overflow("stream", n, name, pipeline)
        return OVERFLOW

    def fold(self, pipeline: str, stream: str, stage_from: str, stage_to: str,
             n: int = 1) -> tuple[str, str, str, str]:
        p = self.pipeline(pipeline, n)
        a, b = self.pair(p, stage_from, stage_to, n)
        return p, self.stream(p, stream, n), a, b

    def fold_batch(self, batch: SpanBatch, count: bool = True) -> SpanBatch:
        """The batch as the in-memory figures see it: the same spans and columns, their
        names folded (a batch whose names are all admitted is returned as it is). Its
        overflow is counted once: ``count=False`` for a second look at the same spans."""
        codes, names = batch.names()
        counts = np.bincount(codes, minlength=len(names)).tolist() if count else \
            [0] * len(names)
        folded = [self.fold(*name, n=n) for name, n in zip(names, counts, strict=True)]
        if folded == names:
            return batch
        index: dict[tuple[str, str, str, str], int] = {}
        remap = np.array([index.setdefault(f, len(index)) for f in folded], np.int64)
        return batch.renamed(remap[codes], list(index))

    def fold_unpaired(self, items: list[Unpaired]) -> list[Unpaired]:
        out = []
        for u in items:
            p = self.pipeline(u.pipeline)
            a, b = self.pair(p, u.stage_from, u.stage_to)
            out.append(u if (p, a, b) == (u.pipeline, u.stage_from, u.stage_to) else
                       Unpaired(p, a, b, u.reason, u.mark))
        return out


# Settings only: the runtime folds names with these (KeyLimits).
COMPONENT = Component("limits", "limits", settings=LimitsConfig,
                      ranges={"max_pipelines": (1, 100_000), "max_streams": (1, 1_000_000),
                              "max_pairs": (1, 100_000),
                              "max_pending_marks": (1, 100_000_000),
                              "max_pending_frames": (1, 100_000_000)})
