"""In-process GStreamer probes agree with GStreamer's own latency tracer on the same frames
(both in one real pipeline's process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.gst_tracer import TRACER_ENV, TracerSpans
from otel_benchlab.receivers.probe import ProbeReceiver

try:
    import gi

    gi.require_version("Gst", "1.0")
    HAVE_GI = True
except (ImportError, ValueError):
    HAVE_GI = False

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not HAVE_GI, reason="GStreamer's Python bindings (PyGObject) are not installed; "
    "scripts/test.sh installs them")]

APP = textwrap.dedent("""
    import sys
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    from otel_benchlab.probe import Probe
    from otel_benchlab.probes import gstreamer
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=300 ! video/x-raw,width=640,height=480 ! "
        "x264enc name=enc tune=zerolatency ! fakesink")
    probe = Probe(sys.argv[1], pipeline="app")
    attached = gstreamer.attach(pipeline, ["enc"], probe=probe)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    attached.detach()
    print(probe.sent, probe.dropped, attached.dropped)
    sys.exit(0 if msg and msg.type == Gst.MessageType.EOS else 1)
""")


def test_probe_latencies_agree_with_the_tracer_within_half_a_millisecond(tmp_path):
    addr = f"unix://{tmp_path}/probe.sock"
    marks: list = []
    rx = ProbeReceiver(addr, AgentCounters())
    rx.start(lambda batch: marks.extend(batch) or True)  # a datagram's records
    try:
        app = subprocess.run([sys.executable, "-c", APP, addr], capture_output=True,
                             timeout=120, env={**os.environ, **TRACER_ENV})
        time.sleep(0.3)
    finally:
        rx.stop()
    assert app.returncode == 0, app.stderr.decode()[-2000:]
    sent, dropped, probe_dropped = map(int, app.stdout.split())
    assert sent == 600 and dropped == 0 and probe_dropped == 0

    by_frame: dict[int, dict[str, int]] = {}
    for m in marks:
        by_frame.setdefault(m.frame, {})[m.stage] = m.ts_ns
    probe_ms = [(f["enc.src"] - f["enc.sink"]) / 1e6 for _, f in sorted(by_frame.items())
                if "enc.sink" in f and "enc.src" in f]
    spans = TracerSpans("app", "main", stages=["enc"])
    traced = []
    for line in app.stderr.decode("utf-8", "replace").splitlines():
        traced += spans.feed(line, time.monotonic_ns())
    tracer_ms = [s.latency_ns / 1e6 for s in traced + spans.flush()
                 if s.stage_from == "enc.sink"]
    assert len(probe_ms) == len(tracer_ms) == 300
    diff = np.abs(np.array(probe_ms) - np.array(tracer_ms))
    assert np.median(diff) < 0.5, (np.median(diff), np.median(probe_ms))
