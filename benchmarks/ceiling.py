"""The ceiling: the highest stage-mark rate one agent sustains without dropping, and how its
CPU grows with the rate.

A load process sends marks over the probe transport (otel_benchlab.probe, batched
datagrams, as applications do) at a fixed rate: frames with ids through 3 stages (2 pairs),
spread over 16 streams. The agent runs as users run it: the emulated BENCHLAB for power,
every exporter on (OTLP to a local collector, Prometheus, Parquet, CapFrameX), every frame
traced. For each rate it measures the agent's CPU (psutil) and what it dropped over
--seconds: marks (queue.dropped, input.dropped) and trace spans (export.dropped, from
/metrics); the ceiling is the highest rate with nothing dropped.

The agent hands its traces to the SDK's batch span processor a second at a time, so the
processor's queue must hold more than a second of spans (here one span a mark: a frame of 3
marks is a root and 2 stage spans); the agent's default (16,384 spans) holds about 16,000
marks/s of such frames. As a user at these rates would, the run sets
OTEL_BSP_MAX_QUEUE_SIZE to 3 seconds of the highest rate asked (--bsp-queue to choose).
It sets OTEL_BSP_MAX_EXPORT_BATCH_SIZE to 2,048 as well (--bsp-batch to choose; 512 is the
SDK's): with 512 the export thread fell behind at 45,000 marks/s by its per-request cost.

Usage: python benchmarks/ceiling.py [--seconds 60] [--rates 180,5000,20000,50000,80000]
       [--bsp-queue SPANS] [--bsp-batch SPANS] [--agent-python PYTHON]

To compare two builds, run it once with each installation's Python as --agent-python, one
after the other, at a rate both take: the CPU at the same rate is the figure that compares.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import OtlpCollector, free_port  # noqa: E402

STAGES = ("ingress", "encoded", "inference_done")
STREAMS = 16


def load(addr: str, rate: float, seconds: float, ready) -> None:
    """Send ``rate`` marks a second for ``seconds`` (frames of 3 stages, 2 ms apart)."""
    from otel_benchlab.probe import Probe

    p = Probe(addr, pipeline="load")
    frames_per_s = rate / len(STAGES)
    t0 = time.monotonic()
    sent_frames = 0
    ready.set()
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(now * frames_per_s)
        base = time.monotonic_ns()
        while sent_frames < due:
            stream = f"cam{sent_frames % STREAMS}"
            for k, stage in enumerate(STAGES):
                p.mark_at(base + k * 2_000_000, stage, sent_frames, stream)
            sent_frames += 1
        time.sleep(0.002)
    p.flush()
    p.close()


def counter(body: str, name: str) -> float:
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rates", default="180,5000,20000,50000,80000")
    ap.add_argument("--bsp-queue", type=int, default=0,
                    help="OTEL_BSP_MAX_QUEUE_SIZE for the agent (default: 3 s of the "
                         "highest rate)")
    ap.add_argument("--bsp-batch", type=int, default=2048,
                    help="OTEL_BSP_MAX_EXPORT_BATCH_SIZE for the agent (0: unset, the SDK's "
                         "512)")
    ap.add_argument("--agent-python", default=sys.executable,
                    help="the Python of the installation to measure (default: this one)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    bsp_queue = args.bsp_queue or int(3 * max(rates))
    collector = OtlpCollector().start()
    tmp = Path(tempfile.mkdtemp(prefix="ceiling-"))
    addr = f"udp://127.0.0.1:{free_port()}"
    prom = free_port()
    (tmp / "agent.toml").write_text(
        'pairs = [["ingress", "encoded"], ["encoded", "inference_done"]]\n'
        '[sim]\nsources = ["benchlab"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(BENCHLAB_PROBE_ADDR=addr,
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
               OTEL_BSP_MAX_QUEUE_SIZE=str(bsp_queue))
    if args.bsp_batch:
        env["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = str(args.bsp_batch)
    agent = subprocess.Popen(
        [args.agent_python, "-m", "otel_benchlab", "--simulate", "--config",
         str(tmp / "agent.toml"), "--data-root", str(tmp / "data"), "--prom-bind",
         f"127.0.0.1:{prom}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=tmp)  # not the source tree, whose otel_benchlab/ would shadow the install
    for line in agent.stdout:
        if line.startswith("  power sources"):
            break
    proc = psutil.Process(agent.pid)
    url = f"http://127.0.0.1:{prom}/metrics"
    rows = []
    try:
        for rate in rates:
            before = urllib.request.urlopen(url, timeout=30).read().decode()
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            # Spawned, not forked: a fork of this process, whose collector runs gRPC
            # threads, sometimes died at once (one round then read 0 marks).
            spawn = multiprocessing.get_context("spawn")
            ready = spawn.Event()
            sender = spawn.Process(target=load, args=(addr, rate, args.seconds, ready))
            sender.start()
            sender.join()
            time.sleep(3)  # the agent drains and processes the last second
            wall = time.monotonic() - t0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            after = urllib.request.urlopen(url, timeout=30).read().decode()
            dropped = sum(counter(after, n) - counter(before, n) for n in (
                "benchlab_agent_queue_dropped_total", "benchlab_agent_input_dropped_total"))
            traces = counter(after, "benchlab_agent_export_dropped_total") - \
                counter(before, "benchlab_agent_export_dropped_total")
            # What arrived, from the spans the agent made (2 per frame of 3 marks): the
            # sender shares the machine and may fall short of the rate it was asked for.
            spans = sum(counter(after, n) - counter(before, n) for n in (
                "benchlab_pipeline_latency_seconds_count",))
            got = spans * len(STAGES) / (len(STAGES) - 1) / args.seconds
            rows.append((got, 100 * cpu / wall, dropped + traces))
            print(f"  {rate:>9,.0f} marks/s asked, {got:>9,.0f} paired: agent CPU "
                  f"{100 * cpu / wall:5.1f} % of a core, dropped {dropped:,.0f} marks and "
                  f"{traces:,.0f} trace spans", flush=True)
    finally:
        agent.send_signal(2)
        agent.wait(timeout=120)
        collector.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the agent's session: 0.3-1.2 GB a run
    ok = [r for r, _, d in rows if d == 0]
    print(f"ceiling: {max(ok) if ok else 0:,.0f} marks/s paired and traced with nothing "
          f"dropped (target >= 50,000 on one core; OTEL_BSP_MAX_QUEUE_SIZE={bsp_queue}, "
          f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={args.bsp_batch or 'unset (512)'}); "
          f"CPU per 1000 marks/s: "
          + ", ".join(f"{c / (r / 1000):.2f} %" if r else "-" for r, c, _ in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
