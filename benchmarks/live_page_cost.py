"""What the live page costs the agent: its CPU over the same simulated run (a) with the
Prometheus port off (no page at all), (b) with the port on and nobody watching (the
frames go into the page's ring), (c) with the page open in headless Chromium, polling
as the page does (every second; every 2 s past 16 streams). Medians of --repeats runs; the
machine is shared, so read ratios. --streams 64 --fps 30 is a 64-camera box (two pairs):
the JSON of one poll is printed too.

    python benchmarks/live_page_cost.py [--seconds 40] [--repeats 1] [--streams 1 --fps 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def one(seconds: float, mode: str, streams: int, fps: float) -> tuple[float, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "agent.toml"
        names = ", ".join(f'"cam{i:02d}"' for i in range(streams))
        cfg.write_text(f"[sim]\nfps = {fps}\nstreams = [{names}]\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "otel_benchlab", "--simulate", "--config", str(cfg),
             "--data-root", tmp,
             "--prom-bind", "off" if mode == "off" else f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)  # start-up is not what is measured
        start = cpu_s(proc.pid)
        size = 0
        if mode == "watched":
            from tests.browser import browser

            with browser() as b:
                page = b.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                time.sleep(seconds)
                used = cpu_s(proc.pid) - start
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/live?window=60",
                                              timeout=30).read())
        else:
            time.sleep(seconds)
            used = cpu_s(proc.pid) - start
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    return used / seconds * 100, size


def in_process(fps: float = 60.0, pairs: int = 2) -> tuple[float, float, float]:
    """The page's own work, timed in this process on 15 minutes of frames: ms per second
    of frames added (as the runtime adds them, 10 batches a second), ms per poll of the
    1-minute and the 15-minute window, with the ring full."""
    from otel_benchlab.records import SpanBatch
    from otel_benchlab.views.live_page import LivePage

    class Batch(SpanBatch):
        def __init__(self, start, end, names, codes):
            super().__init__([], start, end, {"sys": (np.full(len(start), 300.0),
                                                     np.full(len(start), 3.0))},
                             {"sys": np.full(len(start), 1.5)})
            self._names = (codes, names)

    page = LivePage("sys", time.time_ns() - time.monotonic_ns())
    names = [("sim", "cam0", f"s{i}", f"s{i + 1}") for i in range(pairs)]
    per_batch = int(fps / 10)
    now = time.monotonic_ns() - 900 * 10**9
    add_s = 0.0
    for _ in range(9000):  # 900 s of batches
        end = now + np.arange(per_batch * pairs) * int(1e8 / (per_batch * pairs))
        codes = np.tile(np.arange(pairs), per_batch)
        b = Batch(end - 10_000_000, end, names, codes)
        t = time.perf_counter()
        page.add(b)
        add_s += time.perf_counter() - t
        now += 100_000_000
    polls = {}
    for window in (60, 900):
        page.snapshot(window)  # the settled seconds are computed once
        t = time.perf_counter()
        for _ in range(10):
            page.snapshot(window)
        polls[window] = (time.perf_counter() - t) / 10 * 1e3
    return add_s / 900 * 1e3, polls[60], polls[900]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--fps", type=float, default=60.0)
    args = ap.parse_args()
    add_ms, poll_60, poll_900 = in_process()
    print("the page's own work, in this process (2 pairs at 60 fps, ring of 15 min):")
    print(f"  adding frames: {add_ms:.3f} ms per second of frames "
          f"({add_ms / 10:.3f} % of a core, watched or not)")
    print(f"  one poll: {poll_60:.2f} ms for the 1-minute window (polled every 1 s: "
          f"{poll_60 / 10:.2f} % of a core), {poll_900:.2f} ms for 15 minutes (every 5 s: "
          f"{poll_900 / 50:.2f} %)")
    runs = {m: [one(args.seconds, m, args.streams, args.fps) for _ in range(args.repeats)]
            for m in ("off", "unwatched", "watched")}
    got = {m: float(np.median([pct for pct, _ in r])) for m, r in runs.items()}
    print(f"agent CPU, % of one core, over {args.seconds:g} s of --simulate "
          f"({args.streams} streams at {args.fps:g} fps, 2 pairs):")
    for mode, pct in got.items():
        print(f"  {mode:<9} {pct:6.2f} %")
    print(f"  page open costs {got['watched'] - got['unwatched']:+.2f} % of a core "
          f"(target < 0.5); nobody watching {got['unwatched'] - got['off']:+.2f} % "
          "(includes serving nothing but the ring's appends)")
    print(f"  one poll of the 1-minute window: {runs['watched'][0][1] / 1000:.1f} kB of JSON")


if __name__ == "__main__":
    main()
