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
from dataclasses import dataclass, field

from otel_benchlab.components import Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import StageMark
from otel_benchlab.settings import setting_error
from otel_benchlab.timebase import TimeBase

from .follow import FollowedFileReceiver


@dataclass
class LogPatternConfig:
    path: str = ""  # a log file to follow, or "-" for standard input
    pattern: str = ""  # a regular expression; named groups frame (or iteration), ts
    stage: str = ""  # the stage a matching line marks
    pipeline: str = "log"
    stream: str = "main"
    ts_format: str = ""  # strptime format of the ts group; "" = the time the line is read
    from_start: bool = False  # read what the file holds already (default: only new lines)
    # Logs that print one line per iteration (at its end): each match also marks this
    # stage for the next frame, so the pair (next_stage, stage) spans one whole iteration.
    next_stage: str = ""


@dataclass
class IntakeLogConfig:
    """The [intake] key of this receiver: its [[intake.log]] tables."""

    # log files whose lines become marks ([[intake.log]] tables)
    log: list[LogPatternConfig] = field(default_factory=list)


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


def validate(intake: IntakeLogConfig) -> None:
    for i, lp in enumerate(intake.log):
        where = f"intake.log[{i}]"
        if not lp.path or not lp.pattern or not lp.stage:
            raise setting_error(where, "needs path, pattern and stage")
        try:
            rx = re.compile(lp.pattern)
        except re.error as exc:
            raise setting_error(f"{where}.pattern", f"{lp.pattern!r} is not a regular "
                                f"expression: {exc}") from None
        if lp.ts_format and "ts" not in rx.groupindex:
            raise setting_error(f"{where}.ts_format",
                                "is set but the pattern has no (?P<ts>...) group")


COMPONENT = Component(
    "log_pattern", "intake", lambda cfg: bool(cfg.intake.log),
    lambda cfg, ctx: Built(receivers=[LogPatternReceiver(c, ctx.counters, ctx.timebase)
                                      for c in cfg.intake.log]),
    settings=IntakeLogConfig, validate=validate)
