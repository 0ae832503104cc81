"""What measuring costs a GStreamer pipeline: the same pipeline with and without the
latency tracer that `otel-benchlab gst` turns on.

1. Whole pipeline: `gst-launch-1.0` run time for N buffers, unsynced (as fast as it goes),
   plain and under `otel-benchlab gst` (tracer on, records parsed, a full agent session).
2. Frame latency: the encoder's per-frame latency measured by in-process pad probes
   (otel_benchlab.probe.gstreamer), with and without the tracer in the same process
   (needs PyGObject; skipped otherwise).
Medians of --runs runs, alternated.

Usage: python benchmarks/gst_overhead.py [--buffers 600] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_benchlab.counters import AgentCounters  # noqa: E402
from otel_benchlab.receivers.gst_tracer import TRACER_ENV  # noqa: E402
from otel_benchlab.receivers.probe import ProbeReceiver  # noqa: E402

PIPELINE = ("videotestsrc num-buffers={n} ! video/x-raw,width=640,height=480 ! "
            "x264enc name=enc tune=zerolatency ! fakesink")
ENDED = re.compile(r"Execution ended after (\d+):(\d+):(\d+\.\d+)")

APP = textwrap.dedent("""
    import sys
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    from otel_benchlab.probe import Probe
    from otel_benchlab.probe import gstreamer
    Gst.init(None)
    pipeline = Gst.parse_launch(sys.argv[2])
    probe = Probe(sys.argv[1], pipeline="bench")
    attached = gstreamer.attach(pipeline, ["enc"], probe=probe)
    pipeline.set_state(Gst.State.PLAYING)
    pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND,
                                          Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    attached.detach()
""")


def gst_seconds(text: str) -> float:
    m = ENDED.search(text)
    if not m:
        raise RuntimeError("no 'Execution ended' line:\\n" + text[-2000:])
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)


def plain(n: int) -> float:
    out = subprocess.run(["gst-launch-1.0", "-e", *PIPELINE.format(n=n).split()],
                         capture_output=True, text=True, check=True)
    return gst_seconds(out.stdout)


def measured(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
        env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                   BENCHLAB_PROBE_ADDR="off")
        out = subprocess.run([sys.executable, "-m", "otel_benchlab", "gst", "--data-root", tmp,
                              "--prom-bind", "off", "--", *PIPELINE.format(n=n).split()],
                             capture_output=True, text=True, env=env, check=True)
        return gst_seconds(out.stderr)  # the child's stdout goes to the agent's stderr


def probe_latency_ms(n: int, tracer: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        addr = f"unix://{tmp}/p.sock"
        marks: list = []
        rx = ProbeReceiver(addr, AgentCounters())
        rx.start(lambda batch: marks.extend(batch) or True)  # a datagram's records
        env = {**os.environ, **(TRACER_ENV if tracer else {})}
        subprocess.run([sys.executable, "-c", APP, addr, PIPELINE.format(n=n)], env=env,
                       capture_output=True, check=True)
        time.sleep(0.3)
        rx.stop()
    frames: dict[int, dict[str, int]] = {}
    for m in marks:
        frames.setdefault(m.frame, {})[m.stage] = m.ts_ns
    lat = [(f["enc.src"] - f["enc.sink"]) / 1e6 for f in frames.values() if len(f) == 2]
    return statistics.median(lat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buffers", type=int, default=600)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    a, b = [], []
    for _ in range(args.runs):
        a.append(plain(args.buffers))
        b.append(measured(args.buffers))
    pa, pb = statistics.median(a), statistics.median(b)
    print(f"{args.buffers} buffers, 640x480 x264enc zerolatency, unsynced:")
    print(f"  gst-launch-1.0 alone        median {pa:.3f} s  ({args.buffers / pa:.0f} fps)")
    print(f"  under otel-benchlab gst     median {pb:.3f} s  ({args.buffers / pb:.0f} fps)  "
          f"ratio {pb / pa:.3f}")
    try:
        import gi  # noqa: F401
    except ImportError:
        print("  (PyGObject not installed: frame latency with/without the tracer skipped)")
        return 0
    x, y = [], []
    for _ in range(args.runs):
        x.append(probe_latency_ms(args.buffers, False))
        y.append(probe_latency_ms(args.buffers, True))
    print(f"  encoder median latency by in-process probe: {statistics.median(x):.2f} ms "
          f"without the tracer, {statistics.median(y):.2f} ms with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
