"""What a probe call costs the application: ``probe.mark`` and ``with probe.stage`` per
call, with a receiver listening (a bound datagram socket drained by a thread, as the agent
does) and with nothing listening. Median of several runs; target <= 5 us per call.

Usage: python benchmarks/probe_cost.py [--calls 200000] [--runs 7]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_benchlab import probe  # noqa: E402
from tests.servers import free_port  # noqa: E402


def drain(port: int, received, ready) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    ready.set()
    while True:
        data = rx.recv(65536)
        with received.get_lock():
            received.value += data.count(b"\n")


def per_call_us(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for n in range(calls):
        fn(n)
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    port = free_port()
    received = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    # The receiver in a process of its own, as the agent is (not competing for this GIL).
    multiprocessing.Process(target=drain, args=(port, received, ready), daemon=True).start()
    ready.wait(10)
    p = probe.Probe(f"udp://127.0.0.1:{port}", pipeline="bench")

    def mark(n: int) -> None:
        p.mark("decoded", frame=n)

    def stage(n: int) -> None:
        with p.stage("encode", frame=n):
            pass

    dead = probe.Probe(f"udp://127.0.0.1:{free_port()}", pipeline="bench")
    rows = []
    for name, fn, who in (("probe.mark", mark, p), ("probe.stage", stage, p),
                          ("probe.mark, no agent", lambda n: dead.mark("decoded", frame=n),
                           dead)):
        times = [per_call_us(fn, args.calls) for _ in range(args.runs)]
        who.flush()
        rows.append((name, statistics.median(times), min(times), max(times)))
    time.sleep(0.3)
    print(f"{'call':24} {'median us':>10} {'min':>7} {'max':>7}")
    for name, med, lo, hi in rows:
        print(f"{name:24} {med:10.2f} {lo:7.2f} {hi:7.2f}")
    total = 2 * args.calls * args.runs
    print(f"listening: sent {p.sent} of {total}, dropped {p.dropped}, received "
          f"{received.value}; no agent: dropped {dead.dropped} (counted where the kernel "
          f"reported it), sent {dead.sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
