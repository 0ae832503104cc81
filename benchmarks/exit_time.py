"""How long exit takes: the agent (--simulate) with OTLP going to a port where nothing
listens (the quick start's case on a laptop), and to a collector that accepts connections
and never answers; time from the signal to the process's exit, median of --runs. Also
--duration N's total wall time.

Usage: python benchmarks/exit_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import BlackHole, free_port  # noqa: E402
from tests.test_end_to_end import wait_started  # noqa: E402


def agent(endpoint: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_benchlab", "--simulate", "--prom-bind", "off",
         "--data-root", tempfile.mkdtemp(prefix="exit-"), *args],
        env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_started(proc)
    return proc


def signal_to_exit(endpoint: str, signals: list[signal.Signals], gap_s: float = 0.5) -> float:
    proc = agent(endpoint)
    time.sleep(5)
    t0 = time.monotonic()
    for i, sig in enumerate(signals):
        if i:
            time.sleep(gap_s)
            t0 = time.monotonic()
        proc.send_signal(sig)
    proc.communicate(timeout=120)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    down = f"http://127.0.0.1:{free_port()}"
    hole = BlackHole().start()
    hang = f"http://127.0.0.1:{hole.port}"
    cases = {
        "Ctrl-C, nothing listening": lambda: signal_to_exit(down, [signal.SIGINT]),
        "SIGTERM, nothing listening": lambda: signal_to_exit(down, [signal.SIGTERM]),
        "Ctrl-C, collector hangs": lambda: signal_to_exit(hang, [signal.SIGINT]),
        "second Ctrl-C 0.5 s after the first, collector hangs":
            lambda: signal_to_exit(hang, [signal.SIGINT, signal.SIGINT]),
    }
    for name, fn in cases.items():
        print(f"{name}: signal to exit, median {np.median([fn() for _ in range(args.runs)]):.2f} s")
    walls = []
    for _ in range(args.runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "otel_benchlab", "--simulate", "--prom-bind", "off",
                        "--duration", "20", "--data-root", tempfile.mkdtemp(prefix="exit-")],
                       env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": down},
                       capture_output=True, timeout=120)
        walls.append(time.monotonic() - t0)
    print(f"--duration 20, nothing listening: whole process {np.median(walls):.1f} s (median)")
    hole.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
