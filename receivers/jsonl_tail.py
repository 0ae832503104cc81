"""Follow JSONL files of stage marks in the seed project's format (``--tail-jsonl PATH``,
``[intake] jsonl``): ``{"ts_ns": N, "source": "pipeline", "kv": {"stage": "...",
"frame": N, "stream"?: "...", "pipeline"?: "..."}}``, one object per line.

``ts_ns`` is the host's CLOCK_MONOTONIC or Unix epoch ns, told apart by magnitude (epoch
ns are past 1e18 since 2001; a monotonic clock would need 3 years of uptime to reach
1e17). A line that is not a mark is counted (``benchlab.agent.input.rejected``) and skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from otel_benchlab.components import Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import StageMark
from otel_benchlab.timebase import TimeBase

from .follow import FollowedFileReceiver
from .seed_lines import seed_mark

EPOCH_NS_FLOOR = 10**17


@dataclass
class IntakeJsonlConfig:
    """The [intake] keys of this receiver (the section is shared with the OTLP intake and
    the log patterns)."""

    # Seed-format JSONL mark files to follow (ts_ns monotonic or Unix epoch ns).
    jsonl: list[str] = field(default_factory=list)
    jsonl_from_start: bool = True  # read what the file holds already, then follow it


class JsonlTailReceiver(FollowedFileReceiver):
    thread_name = "jsonl-tail"

    def __init__(self, path: str, counters: AgentCounters, from_start: bool = True,
                 timebase: TimeBase | None = None) -> None:
        self.path = path
        self.name = f"jsonl:{path}"
        self.counters = counters
        self.pipeline = Path(path).stem if path != "-" else "stdin"
        self.timebase = timebase or TimeBase.measure()
        self.from_start = from_start
        for reason in ("not_json", "not_a_mark", "too_long"):
            counters.declare("input.rejected", source="jsonl", reason=reason)

    def _reject(self, reason: str) -> None:
        self.counters.add("input.rejected", 1, f"lines of {self.path} that are not seed "
                          "marks ({\"ts_ns\", \"kv\": {\"stage\", \"frame\"}}) are skipped",
                          source="jsonl", reason=reason)

    def to_mark(self, line: bytes) -> StageMark | None:
        if not line.strip():
            return None
        try:
            rec = json.loads(line)
        except ValueError:  # also not UTF-8
            self._reject("not_json")
            return None
        m = seed_mark(rec)
        if m is None:
            self._reject("not_a_mark")
            return None
        ts = m["ts_ns"]
        if ts >= EPOCH_NS_FLOOR:
            ts = self.timebase.to_mono_ns(ts)
        kv = m["kv"]
        return StageMark(ts, kv.get("pipeline") or self.pipeline,
                         kv.get("stream") or m["source"] or "main", kv["stage"], kv["frame"])

    def marks(self, line: bytes) -> list[StageMark]:
        mark = self.to_mark(line)
        return [] if mark is None else [mark]


COMPONENT = Component(
    "jsonl_tail", "intake", lambda cfg: bool(cfg.intake.jsonl),
    lambda cfg, ctx: Built(receivers=[
        JsonlTailReceiver(p, ctx.counters, cfg.intake.jsonl_from_start, ctx.timebase)
        for p in cfg.intake.jsonl]),
    settings=IntakeJsonlConfig)
