"""Host power sources: CPU per sample for each receiver, and how far a span's energy is
from the truth when it comes from an energy counter (NVML, RAPL) against when it comes
from sampled power at the same rate.

1. CPU per read of each source (NVML through the fake library in tests/fake_nvml, which
   costs next to nothing itself; RAPL and hwmon on a fake sysfs tree; the CPU source),
   median of --reads reads.
2. Accuracy: a fake GPU whose power is 200 + 100 sin(2 pi t / 0.7) W and whose counter is
   its exact integral, read at --hz through the real NVML receiver for --seconds; random
   spans of 5-200 ms get their energy from the counter samples (linear between them) and
   from the power samples (trapezoid between them), both through the agent's
   EnergyAnnotator, against the exact integral.

Usage: python benchmarks/host_sources.py [--hz 10] [--seconds 20] [--reads 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_benchlab.counters import AgentCounters  # noqa: E402
from otel_benchlab.processors.energy import EnergyAnnotator  # noqa: E402
from otel_benchlab.receivers.host import HostConfig  # noqa: E402
from otel_benchlab.receivers.host_cpu import CpuUtilization  # noqa: E402
from otel_benchlab.receivers.hwmon import open_hwmon  # noqa: E402
from otel_benchlab.receivers.nvml import open_nvml  # noqa: E402
from otel_benchlab.receivers.rapl import open_rapl  # noqa: E402
from otel_benchlab.records import StageSpan  # noqa: E402
from tests.fake_sysfs import machine  # noqa: E402

FAKE = Path(__file__).resolve().parent.parent / "tests" / "fake_nvml" / "pynvml.py"


def fake_nvml():
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_us(source, reads: int) -> float:
    times = []
    for _ in range(reads):
        t0 = time.thread_time_ns()
        source.read()
        times.append(time.thread_time_ns() - t0)
    return statistics.median(times) / 1e3


CURVE_TEXT = {"wave": "200 +- 100 W, a 0.7 s sine",
              "bursts": "400 W for 30 ms of every 110 ms, 150 W between"}


def accuracy(nv, curve: str, hz: float, seconds: float) -> None:
    nv.configure({"gpus": [{"uuid": "GPU-aaaa", "watts": curve}]})
    (gpus,), _ = open_nvml(HostConfig(), AgentCounters(), loader=lambda: nv)
    t_origin = nv._state["t0"]
    counter = EnergyAnnotator({"c": "energy"}, max_gap_ns=int(3e9 / hz), keep_ns=10**12)
    power = EnergyAnnotator({"p": "power"}, max_gap_ns=int(3e9 / hz), keep_ns=10**12)
    period = 1.0 / hz
    deadline = time.monotonic()
    end = deadline + seconds
    while time.monotonic() < end:
        t = time.monotonic_ns()
        v = gpus.read()
        counter.add_power("c", t, v["gpu0.energy"])
        power.add_power("p", t, v["gpu0.power"])
        deadline += period
        time.sleep(max(0.0, deadline - time.monotonic()))
    for shortest, longest in ((0.005, 0.2), (1.0, 3.0)):
        compare(nv, curve, hz, seconds, t_origin, counter, power, shortest, longest)


def compare(nv, curve, hz, seconds, t_origin, counter, power, shortest, longest) -> None:
    rng = random.Random(7)
    spans = []
    lo, hi = t_origin + 1.0, t_origin + seconds - 1.0 - longest
    for _ in range(2000):
        start = rng.uniform(lo, hi)
        spans.append((start, start + rng.uniform(shortest, longest)))
    errs_c, errs_p = [], []
    for a, b in spans:
        s1 = StageSpan("b", "s", None, "x", "y", int(a * 1e9), int(b * 1e9))
        s2 = StageSpan("b", "s", None, "x", "y", int(a * 1e9), int(b * 1e9))
        counter.add_span(s1)
        power.add_span(s2)
    done_c = counter.release(time.monotonic_ns())
    done_p = power.release(time.monotonic_ns())
    for sc, sp in zip(done_c, done_p, strict=True):
        a = sc.start_ns / 1e9 - t_origin
        b = sc.end_ns / 1e9 - t_origin
        joules = nv.CURVES[curve][1]
        truth = joules(b) - joules(a)
        if sc.power["c"].energy_j is not None:
            errs_c.append(abs(sc.power["c"].energy_j - truth) / truth)
        if sp.power["p"].energy_j is not None:
            errs_p.append(abs(sp.power["p"].energy_j - truth) / truth)
    print(f"\nspan energy vs the exact integral, {len(errs_c)} spans of "
          f"{shortest * 1e3:g}-{longest * 1e3:g} ms, "
          f"samples at {hz:g} Hz, power {CURVE_TEXT[curve]}:")
    for name, e in (("from the energy counter", errs_c), ("from sampled power", errs_p)):
        e = np.array(e) * 100
        print(f"  {name:24} median error {np.median(e):5.2f} %, p95 {np.percentile(e, 95):6.2f} %"
              f", max {e.max():6.2f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--curve", choices=["wave", "bursts", "both"], default="both")
    args = ap.parse_args()
    nv = fake_nvml()
    nv.configure({"gpus": [{"uuid": "GPU-aaaa", "watts": "wave"}]})
    counters = AgentCounters()
    (gpus,), _ = open_nvml(HostConfig(), counters, loader=lambda: nv)
    with tempfile.TemporaryDirectory() as tmp:
        root = machine(Path(tmp))
        cfg = HostConfig(sysfs_root=str(root))
        (rapl,), _ = open_rapl(cfg, counters)
        (hwmon,), _ = open_hwmon(cfg, counters)
        print("CPU per read (median):")
        for name, src in (("nvml (1 GPU, 15 fields; fake library)", gpus), ("rapl (3 zones)", rapl),
                          ("hwmon (2 chips, 5 channels)", hwmon), ("cpu", CpuUtilization())):
            print(f"  {name:40} {cpu_us(src, args.reads):8.1f} us")
        calls = nv._state["calls"]
        t0 = time.thread_time_ns()
        for _ in range(200):
            gpus.read()
        per = (time.thread_time_ns() - t0) / 200 / (nv._state["calls"] - calls) * 200
        print(f"  (the receiver's own cost per NVML call, fake library: {per / 1e3:.1f} us; "
              "a real driver call adds its own, often 0.1-2 ms)")

    for curve in (["wave", "bursts"] if args.curve == "both" else [args.curve]):
        accuracy(nv, curve, args.hz, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
