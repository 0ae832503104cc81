"""What the agent says of a session as it runs and when it ends: the live page's status
(sources up, losses) and the summary session.json records (counts, losses, and each
source's energy split into what the spans were attributed and idle)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from otel_benchlab.processors.live_attribution import energy_split
from otel_benchlab.session.folder import PROGRESS_NAME
from otel_benchlab.session.temp_files import replace_with

log = logging.getLogger(__name__)

# The running agent (runtime.Agent), which calls these; named loosely so that neither
# module imports the other.
Agent = Any


def live_status(agent: Agent) -> dict:
    """For the live page: each power source up or down (as benchlab.source.up says of
    the devices that feed it), and the loss counters."""
    up = agent.telemetry.samples.sources_up()
    feeds = {label: [src for src, pairs in agent._power_sensors.items()
                     if any(lbl == label for _, lbl in pairs)] for label in agent.labels}
    return {"session": agent.session.id,
            "sources": [{"name": label, "up": any(up.get(src, False)
                                                  for src in feeds[label])}
                        for label in agent.labels],
            "losses": {**{f"unpaired {k}": v for k, v in agent.unpaired_by_reason.items()},
                       "queue dropped": agent.counters.get("queue.dropped"),
                       "late": agent.counters.get("input.late"),
                       "export failures": agent.counters.get("export.failures")}}

def energy_summary(agent: Agent) -> dict:
    """Per source: the meter's energy over the session (where known), how much of it
    the spans were attributed and how much was idle (no span running); they add up."""
    a = agent.attribution
    if a is None:
        return {}
    return {"energy_j": {label: energy_split(a.total_j[j], a.assigned_j[j], a.idle_j[j])
                         for j, label in enumerate(a.labels)},
            "unattributed_spans": a.unattributed,
            # What the totals cover: the agent's start to the last span shared out.
            "energy_window_unix_ns": [a.start_ns + agent.timebase.offset_ns,
                                      a.done_to + agent.timebase.offset_ns]}

def session_summary(agent: Agent) -> dict:
    return {
        "marks": agent.marks_total, "samples": agent.samples_total,
        "spans": agent.spans_total, "measured_spans": agent.measured_total,
        "unpaired": dict(agent.unpaired_by_reason),
        # frames per pipeline (`otel-benchlab sessions` lists them from the store)
        "frames": agent.stats.frames_by_pipeline(),
        "traces": {"sampled": agent.frames.sampled,
                   "kept_over_target": agent.frames.kept_over_target,
                   "unsampled": agent.frames.unsampled},
        "queue_dropped": agent.counters.get("queue.dropped"),
        "late": {lbl["source"]: n for lbl, n in agent.counters.items("input.late")},
        # LLM request spans measured without per-token figures or as one phase, by why
        "genai_incomplete": {lbl["reason"]: n for lbl, n in
                             agent.counters.items("genai.incomplete") if n},
        **energy_summary(agent),
        "export_failures": agent.counters.get("export.failures"),
        "export_dropped": agent.counters.get("export.dropped"),
        "write_errors": agent.counters.get("write.errors"),
        "close_errors": list(getattr(agent, "close_errors", [])),
        "capframex_files": [str(p) for p in agent.files.captures_written],
    }


class Progress:
    """``.progress.json`` in a running session, every ``every_s``: the summary so far (the
    counts and losses session.json records at the end) and when, so that ``report`` of a
    session still being written says it is running and counts its losses as the agent
    does. Hidden: uploads and readers of the parts never see it."""

    def __init__(self, agent: Agent, every_s: float = 5.0) -> None:
        self.agent = agent
        self.every_s = every_s
        self._next = 0.0
        self._failing = False

    def tick(self, now_s: float) -> None:
        if now_s < self._next:
            return
        self._next = now_s + self.every_s
        doc = {"as_of": dt.datetime.now(dt.timezone.utc).isoformat(),
               "summary": session_summary(self.agent)}
        try:
            replace_with(self.agent.session.path / PROGRESS_NAME,
                         json.dumps(doc, default=str).encode())
            self._failing = False
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write %s: %s; a report of the running session will not "
                            "have its counts", PROGRESS_NAME, exc)
            self._failing = True
