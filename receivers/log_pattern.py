"""Marks from log lines (``[[intake.log]]``): a log file (or ``-``, standard input) is
followed, and each line matching ``pattern`` becomes a mark of ``stage``.

The named group ``frame`` (or ``iteration``) is the frame id; a ``ts`` group with
``ts_format`` (strptime; ``%s`` for epoch seconds with a fraction) gives the line's own time,
otherwise the time the line was read. Example: a training job's ``iteration 1200 ...`` lines
become marks, so every iteration gets its energy; with ``next_stage`` each line also marks
that stage for the next frame, so one line per iteration is enough. Lines that do not
match are not counted (a log holds other lines); a match whose frame or time does not
parse is.
"""

from __future__ import annotations

import datetime as dt
import re
import time

from otel_benchlab.components import Built, Component
from otel_benchlab.config import LogPatternConfig
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import StageMark
from otel_benchlab.timebase import TimeBase

from .follow import FollowedFileReceiver


class LogPatternReceiver(FollowedFileReceiver):
    thread_name = "log-pattern"

    def __init__(self, cfg: LogPatternConfig, counters: AgentCounters,
                 timebase: TimeBase | None = None) -> None:
        self.cfg = cfg
        self.path, self.from_start = cfg.path, cfg.from_start
        self.name = f"log:{cfg.path}"
        self.counters = counters
        self.pattern = re.compile(cfg.pattern.encode())
        groups = self.pattern.groupindex
        self.frame_group = "frame" if "frame" in groups else (
            "iteration" if "iteration" in groups else None)
        self.has_ts = "ts" in groups and bool(cfg.ts_format)
        self.timebase = timebase or TimeBase.measure()
        for reason in ("bad_frame", "bad_time", "too_long"):
            counters.declare("input.rejected", source="log", reason=reason)

    def _reject(self, reason: str) -> None:
        self.counters.add("input.rejected", 1, f"lines of {self.cfg.path} matching "
                          f"{self.cfg.pattern!r} whose frame or time does not parse are "
                          "skipped", source="log", reason=reason)

    def _time(self, text: str) -> int | None:
        fmt = self.cfg.ts_format
        try:
            if fmt == "%s":
                unix_ns = int(float(text) * 1e9)
            else:
                when = dt.datetime.strptime(text, fmt)
                if when.tzinfo is None:
                    when = when.astimezone()  # the host's local time, as logs write it
                unix_ns = int(when.timestamp() * 1e9)
        except (ValueError, OverflowError):
            return None
        return self.timebase.to_mono_ns(unix_ns)

    def marks(self, line: bytes) -> list[StageMark]:
        now = time.monotonic_ns()
        m = self.pattern.search(line)
        if m is None:
            return []
        frame = None
        if self.frame_group:
            try:
                frame = int(m.group(self.frame_group))
            except (TypeError, ValueError):
                self._reject("bad_frame")
                return []
        ts = now
        if self.has_ts:
            found = self._time((m.group("ts") or b"").decode("utf-8", "replace"))
            if found is None:
                self._reject("bad_time")
                return []
            ts = found
        c = self.cfg
        marks = [StageMark(ts, c.pipeline, c.stream, c.stage, frame)]
        if c.next_stage:
            marks.append(StageMark(ts, c.pipeline, c.stream, c.next_stage,
                                   None if frame is None else frame + 1))
        return marks


COMPONENT = Component(
    "log_pattern", "intake.log", lambda cfg: bool(cfg.intake.log),
    lambda cfg, ctx: Built(receivers=[LogPatternReceiver(c, ctx.counters, ctx.timebase)
                                      for c in cfg.intake.log]))
