"""How fast can the BENCHLAB reader poll, and what does a sample cost?

Runs the byte-exact emulator in a separate process on a pseudo-terminal and, in this
process, (1) requests READ_SENSORS back to back to find the raw round-trip rate, and
(2) runs the real polling loop (deadline polling, decode, emit) at rising target rates to
find the fastest rate it sustains without skipping slots. CPU per sample is this process's
CPU time (the reader only; the emulator has its own process) divided by samples.

A rate counts as sustained when it delivers at least 97 % of its samples and skips at most
0.5 % of its slots. ``--device PATH`` measures a real BENCHLAB instead of the emulator.

Usage: python benchmarks/benchlab_poll_rate.py [--seconds 3] [--product original|benchlab2]
       python benchmarks/benchlab_poll_rate.py --device /dev/ttyACM0
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.benchlab import BenchlabReceiver
from otel_benchlab.receivers.benchlab_layout import READ_SENSORS, decode
from otel_benchlab.receivers.benchlab_port import open_device

EMULATOR = """
import sys
from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator
e = BenchlabEmulator({product}, {fw}).start()
print(e.path, flush=True)
sys.stdin.read()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--product", choices=["original", "benchlab2"], default="original")
    ap.add_argument("--device", metavar="PATH", help="a real BENCHLAB instead of the emulator")
    args = ap.parse_args()
    product, fw = (0x11, 5) if args.product == "benchlab2" else (0x10, 6)
    emu = None
    if args.device:
        path = args.device
    else:
        emu = subprocess.Popen([sys.executable, "-c", EMULATOR.format(product=product, fw=fw)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        path = emu.stdout.readline().strip()
    try:
        port, ident = open_device(path)
        size = ident.layout.sensor_size
        rtts = []
        c0, t0 = time.process_time(), time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            raw, a, b = port.request(bytes([READ_SENSORS]), size)
            decode(raw, ident.layout)
            rtts.append(b - a)
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        port.close()
        n = len(rtts)
        print(f"{ident.product} {ident.firmware} ({size}-byte reply) on {path}")
        print(f"back to back: {n / wall:,.0f} samples/s, round trip median "
              f"{statistics.median(rtts) / 1e3:.0f} us (p99 "
              f"{sorted(rtts)[int(n * 0.99)] / 1e3:.0f} us), reader CPU "
              f"{cpu / n * 1e6:.0f} us per request+decode")
        best = 0
        for hz in (50, 100, 200, 400, 800, 1600):
            counters = AgentCounters()
            rx = BenchlabReceiver(path, hz, counters)
            got = []
            c0 = time.process_time()
            rx.start(got.append)
            time.sleep(args.seconds)
            rx.stop()
            cpu = time.process_time() - c0
            skipped = counters.get("read.overruns")
            errors = counters.get("read.errors")
            rate = len(got) / args.seconds
            ok = skipped <= 0.005 * hz * args.seconds and errors == 0 and rate >= 0.97 * hz
            print(f"polling at {hz:4d} Hz: {rate:7.1f} samples/s, {skipped} slots skipped, "
                  f"{errors} errors, {cpu / max(len(got), 1) * 1e6:.0f} us CPU per sample"
                  f"{'' if ok else '  <- not sustained'}")
            if ok:
                best = hz
        print(f"fastest sustained poll rate ({'device' if args.device else 'emulator'}): "
              f"{best} Hz")
    finally:
        if emu is not None:
            emu.stdin.close()
            emu.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
