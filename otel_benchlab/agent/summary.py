"""What the agent says of a session as it runs and when it ends: the live page's status
(sources up, losses) and the summary session.json records (counts, losses, and each
source's energy split into what the spans were attributed and idle)."""

from __future__ import annotations

from typing import Any

from otel_benchlab.processors.live_attribution import energy_split

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
        **energy_summary(agent),
        "export_failures": agent.counters.get("export.failures"),
        "export_dropped": agent.counters.get("export.dropped"),
        "write_errors": agent.counters.get("write.errors"),
        "close_errors": list(agent.close_errors),
        "capframex_files": [str(p) for p in agent.files.captures_written],
    }
