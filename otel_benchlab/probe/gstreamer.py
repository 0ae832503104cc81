"""In-process stage marks for Python GStreamer applications.

    from otel_benchlab.probe import gstreamer
    gstreamer.attach(pipeline, elements=["dec", "enc"])

Puts a buffer probe on each named element's sink and src pads. On the streaming thread a
probe only stamps CLOCK_MONOTONIC and appends (time, pad, PTS) to a queue: measured at
13-20 us a call, where doing the GI and span work there cost 35-80 us and slowed the
pipeline itself. A worker thread (``FLUSH_S``) turns them into marks ``<element>.sink`` and
``<element>.src`` (the stage names ``otel-benchlab gst`` gives the same element), with the
buffer's running time as the frame id: running time, not raw PTS, because encoders shift
PTS (x264enc by 1000 h) while the running time of a frame is the same before and after
the element. Segment events travel in the same queue, so every buffer is mapped with the
segment it was pushed in. Marks go to the agent like any ``probe`` marks; configure the
pairs ``<element>.sink -> <element>.src``.

The GIL is the cost of any Python on GStreamer's threads: with a busy Python thread in the
process, an encoder's median latency rose from 8.9 to 14.4 ms once probes were attached,
and ``sys.setswitchinterval(0.0005)`` brought it back to 9.9 ms (shared/spec/gstreamer.md).
``attach`` sets that interval unless ``switch_interval=None``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from otel_benchlab.probe import Probe, default

FLUSH_S = 0.02
MAX_PENDING = 65_536


@dataclass
class Attachment:
    """What ``attach`` did; ``detach()`` removes the probes and stops the worker."""

    probe: Probe
    pads: list[tuple[Any, int]] = field(default_factory=list)
    dropped: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def detach(self) -> None:
        for pad, probe_id in self.pads:
            pad.remove_probe(probe_id)
        self.pads.clear()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.probe.flush()


def attach(pipeline: Any, elements: list[str], probe: Probe | None = None,
           stream: str = "main", pipeline_name: str | None = None,
           switch_interval: float | None = 0.0005) -> Attachment:
    """Mark every buffer entering and leaving each of ``elements`` (names in ``pipeline``)."""
    from gi.repository import Gst  # the application has GStreamer's bindings already

    target = probe or default()
    name = pipeline_name or pipeline.get_name()
    pending: deque[tuple] = deque()
    done = Attachment(target)
    none = Gst.CLOCK_TIME_NONE
    now = time.monotonic_ns
    ok = Gst.PadProbeReturn.OK

    def on_buffer(pad: Any, info: Any, key: str) -> Any:
        # The streaming thread: a time stamp, the PTS and an append; nothing else.
        if len(pending) < MAX_PENDING:
            pending.append((now(), key, info.get_buffer().pts))
        else:
            done.dropped += 1
        return ok

    def on_event(pad: Any, info: Any, key: str) -> Any:
        event = info.get_event()
        if event.type == Gst.EventType.SEGMENT:
            seg = event.parse_segment()
            pending.append((0, key, None, (seg.base, seg.start, seg.rate)))
        return ok

    for element_name in elements:
        element = pipeline.get_by_name(element_name)
        if element is None:
            raise ValueError(f"no element named {element_name!r} in pipeline {name!r}")
        for direction, pads in (("sink", element.sinkpads), ("src", element.srcpads)):
            for pad in pads:
                key = f"{element_name}.{direction}"
                done.pads.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, on_buffer,
                                                     key)))
                done.pads.append((pad, pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM,
                                                     on_event, key)))

    segments: dict[str, tuple[int, int, float]] = {}

    def work() -> None:
        while True:
            stopping = done._stop.wait(FLUSH_S)
            while pending:
                item = pending.popleft()
                if len(item) == 4:
                    segments[item[1]] = item[3]
                    continue
                ts, key, pts = item
                if pts == none:
                    continue
                base, start, rate = segments.get(key, (0, 0, 1.0))
                running = base + int((pts - start) / abs(rate or 1.0))
                target.mark_at(ts, key, running, stream, name)
            if stopping:
                return

    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    done._thread = threading.Thread(target=work, name="benchlab-gst-probe", daemon=True)
    done._thread.start()
    return done
