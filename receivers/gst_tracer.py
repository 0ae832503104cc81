"""A GStreamer pipeline run as a child (``gst-launch-1.0``) with GStreamer's latency tracer;
its records, parsed from the child's stderr, become measured stage spans.

GStreamer stamps the records in C (``GST_TRACERS=latency(flags=pipeline+element)``), so no
Python runs on the pipeline's streaming threads. Two kinds of record:

- ``element-latency``: one buffer through one element, from its sink pad to its src pad
  -> a span ``<element>.sink -> <element>.src``;
- ``latency``: one buffer from the source element's src pad to the sink element's sink pad
  -> a span ``<source>.src -> <sink>.sink``.

``ts`` counts ns from the child's ``gst_init`` on the host's monotonic clock; the offset to
CLOCK_MONOTONIC is the smallest delay seen between a record's stamp and its arrival here
(the first records are held until ``CALIBRATE_RECORDS`` have come, so they use a good
offset too). The tracer gives no buffer id, so a span's frame is the buffer's ordinal at
that element: the same buffer at every element of a linear pipeline that drops nothing;
an element that drops, merges or splits buffers (and tee/mixers, which the tracer
mis-correlates) shifts the ordinals of what follows it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from otel_benchlab.records import SensorInfo, StageSpan

from . import Emit

log = logging.getLogger("otel_benchlab")

TRACER_ENV = {"GST_TRACERS": "latency(flags=pipeline+element)", "GST_DEBUG": "GST_TRACER:7",
              "GST_DEBUG_NO_COLOR": "1"}
CALIBRATE_RECORDS = 32
CALIBRATE_S = 0.5
_FIELD = re.compile(r'([\w-]+)=\((\w+)\)("(?:[^"\\]|\\.)*"|[^,;]*)')


def parse_record(line: str) -> tuple[str, dict[str, str]] | None:
    """('element-latency' | 'latency', fields) for a tracer record line, else None."""
    for kind in ("element-latency", "latency"):
        at = line.find(f":: {kind}, ")
        if at >= 0:
            body = line[at + len(kind) + 5:]
            return kind, {k: v.strip('"') for k, _, v in _FIELD.findall(body)}
    return None


class TracerSpans:
    """Tracer records -> StageSpans: stage names, ordinals as frames, and the clock offset.
    Pure logic over lines and their arrival times (tested without GStreamer)."""

    def __init__(self, pipeline: str, stream: str, stages: list[str] | None = None) -> None:
        self.pipeline = pipeline
        self.stream = stream
        self.stages = set(stages or [])
        self.records = 0
        self.offset_ns: int | None = None
        self._ordinal: dict[tuple[str, str], int] = {}
        self._held: list[tuple[str, str, int, int]] = []
        self._first_arrival: int | None = None
        self._calibrated = False

    def _span(self, a: str, b: str, ts: int, latency: int) -> StageSpan:
        key = (a, b)
        n = self._ordinal.get(key, 0)
        self._ordinal[key] = n + 1
        end = ts + (self.offset_ns or 0)
        return StageSpan(self.pipeline, self.stream, n, a, b, end - latency, end)

    def feed(self, line: str, arrival_ns: int) -> list[StageSpan]:
        rec = parse_record(line)
        if rec is None:
            return []
        kind, f = rec
        try:
            ts, latency = int(f["ts"]), int(f["time"])
        except (KeyError, ValueError):
            return []
        if kind == "element-latency":
            element = f.get("element", "")
            if not element or (self.stages and element not in self.stages):
                return []
            a, b = f"{element}.sink", f"{element}.src"
        else:
            src, sink = f.get("src-element", ""), f.get("sink-element", "")
            if not src or not sink:
                return []
            a, b = f"{src}.src", f"{sink}.sink"
        self.records += 1
        delay = arrival_ns - ts
        if self.offset_ns is None or delay < self.offset_ns:
            self.offset_ns = delay
        if self._first_arrival is None:
            self._first_arrival = arrival_ns
        if self._calibrated:
            return [self._span(a, b, ts, latency)]
        self._held.append((a, b, ts, latency))
        if len(self._held) >= CALIBRATE_RECORDS or \
                arrival_ns - self._first_arrival >= CALIBRATE_S * 1e9:
            self._calibrated = True
            return self.flush()
        return []

    def flush(self) -> list[StageSpan]:
        held, self._held = self._held, []
        return [self._span(a, b, ts, lat) for a, b, ts, lat in held]


def signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


class GstLaunchReceiver:
    """Runs ``gst-launch-1.0 -e PIPELINE`` and emits its tracer spans; ``on_exit(rc)`` is
    called once the child has ended (EOS, error or killed)."""

    name = "gstreamer"

    def __init__(self, pipeline_args: list[str], stages: list[str] | None = None,
                 pipeline_name: str = "gst", stream: str = "main",
                 on_exit: Callable[[int], None] | None = None,
                 launcher: str = "gst-launch-1.0") -> None:
        self.args = pipeline_args
        self.spans = TracerSpans(pipeline_name, stream, stages)
        self.on_exit = on_exit
        self.launcher = launcher
        self.returncode: int | None = None
        self.problem: str | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stderr_tail: deque[str] = deque(maxlen=8)

    def sensors(self) -> list[SensorInfo]:
        return []

    def identities(self) -> list[dict]:
        return [{"launcher": self.launcher, "pipeline": " ".join(self.args)}]

    def start(self, emit: Emit) -> None:
        exe = shutil.which(self.launcher)
        if exe is None:
            self.problem = (f"{self.launcher} is not installed; install GStreamer's tools "
                            "(Debian: apt-get install gstreamer1.0-tools)")
            self._finish(127)
            return
        env = {**os.environ, **TRACER_ENV}
        self._proc = subprocess.Popen([exe, "-e", *self.args], env=env, stdin=subprocess.DEVNULL,
                                      stdout=sys.stderr.fileno(), stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._read, args=(emit,), name="gst-tracer",
                                        daemon=True)
        self._thread.start()

    def _read(self, emit: Emit) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            now = time.monotonic_ns()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if " GST_TRACER " in line:
                for span in self.spans.feed(line, now):
                    emit(span)
                continue
            self._stderr_tail.append(line)
            print(line, file=sys.stderr, flush=True)
        for span in self.spans.flush():
            emit(span)
        self._finish(proc.wait())

    def _finish(self, rc: int) -> None:
        self.returncode = rc
        if self.problem is None:
            self.problem = self._diagnose(rc)
        if self.problem:
            log.error("%s", self.problem)
        if self.on_exit is not None:
            self.on_exit(rc)

    def _diagnose(self, rc: int) -> str | None:
        said = " / ".join(x for x in self._stderr_tail if x.strip())[-400:]
        n = self.spans.records
        if rc < 0:
            return (f"{self.launcher} was killed by {signal_name(rc)} after {n} tracer "
                    "records; the session holds what it measured until then")
        if rc != 0 and n == 0:
            return (f"the pipeline did not run ({self.launcher} exit status {rc})"
                    + (f": {said}" if said else "") + "; check the pipeline with "
                    f"`{self.launcher} -v ...`")
        if rc != 0:
            return (f"the pipeline failed after {n} tracer records ({self.launcher} exit "
                    f"status {rc})" + (f": {said}" if said else ""))
        if n == 0:
            return ("the pipeline ran but GStreamer's latency tracer reported nothing: the "
                    "elements named with --stage may not exist, or the pipeline moved no "
                    "buffers (GStreamer 1.16 or newer is needed for element latency)")
        return None

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # -e: EOS first, so the last buffers are traced
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)
