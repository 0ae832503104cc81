"""A flood of new names: the agent's memory and its answers while an application sends
stage spans each with a new stream name (as one that uses a request id or a client
address as the stream), through both doors.

- probe: ``s`` records over the probe socket (otel_benchlab.probe, 128 a datagram) at
  about --rate spans a second;
- otlp: an OpenTelemetry SDK application at its defaults (BatchSpanProcessor, OTLP/gRPC
  exporter) sending one ``infer`` span a request to the agent's OTLP intake, paced so the
  SDK's queue of 2,048 does not drop (its export rate is the limit, a few thousand a s).

The agent runs as users run it: --simulate for power (the emulated BENCHLAB and GPU, no
simulated pipeline), Prometheus and the live page on, Parquet and CapFrameX on, OTLP
export off (no collector here). For each count of distinct streams it prints the agent's
RSS before, at the peak during the flood and after it has settled, the longest answer of
/metrics and /api/live (polled every 0.2 s throughout, each in its own thread so a slow
answer is seen as slow), the exit time after SIGINT, and whether Parquet holds every span
with its own stream name. Target: RSS grows less than 100 MB at 100,000 streams, both
pages answer within 1 s throughout, a clean exit with every row in Parquet.

Usage: python benchmarks/cardinality.py [--counts 1000,10000,100000] [--doors probe,otlp]
       [--rate 50000] [--settle 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.servers import free_port  # noqa: E402

OTLP_APP = textwrap.dedent("""
    import sys, time
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    tp = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = tp.get_tracer("app")
    for n in range(int(sys.argv[1])):
        with tracer.start_as_current_span("infer", attributes={
                "benchlab.frame": n, "benchlab.stream": f"client-{n}"}):
            pass
        if n % 500 == 499:
            time.sleep(0.1)  # 5,000 a second: the SDK's queue (2,048) never fills
    tp.shutdown()
""")


def send_probe(addr: str, count: int, rate: float, names: bool = True) -> int:
    from otel_benchlab.probe import Probe

    sender = Probe(addr, pipeline="cams")
    t0 = time.monotonic()
    for n in range(count):
        now = time.monotonic_ns()
        sender.stage_span(now - 500_000, now, "cams", f"req-{n}" if names else "req",
                          "decode.start",
                          "decode.end", n)
        if n % 1000 == 999:
            sender.flush()
            ahead = (n + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    sender.close()
    return sender.dropped


def send_otlp(port: int, count: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    subprocess.run([sys.executable, "-c", OTLP_APP, str(count)], env=env, check=True,
                   timeout=3600)


class Poller:
    """/metrics and /api/live polled every 0.2 s, each in its own thread; the longest
    answer of each, and the agent's highest RSS seen."""

    def __init__(self, prom_port: int, pid: int) -> None:
        self.urls = {"metrics": f"http://127.0.0.1:{prom_port}/metrics",
                     "live": f"http://127.0.0.1:{prom_port}/api/live?window=60"}
        self.longest = dict.fromkeys(self.urls, 0.0)
        self.failed = dict.fromkeys(self.urls, 0)
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(k,), daemon=True)
                         for k in self.urls]
        self._threads.append(threading.Thread(target=self._rss, daemon=True))

    def _poll(self, key: str) -> None:
        while not self._stop.wait(0.2):
            t0 = time.monotonic()
            try:
                urllib.request.urlopen(self.urls[key], timeout=30).read()
            except OSError:
                self.failed[key] += 1
            self.longest[key] = max(self.longest[key], time.monotonic() - t0)

    def _rss(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> Poller:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)


def run(door: str, count: int, rate: float, settle_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        probe_port, intake_port, prom_port = free_port(), free_port(), free_port()
        cfg = Path(tmp) / "agent.toml"
        cfg.write_text('[sim]\nsources = ["benchlab", "gpu"]\n[intake]\n'
                       f'span_stages = ["infer"]\notlp_grpc = "127.0.0.1:{intake_port}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
        env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                   BENCHLAB_PROBE_ADDR=f"udp://127.0.0.1:{probe_port}")
        agent = subprocess.Popen(
            [sys.executable, "-m", "otel_benchlab", "--simulate", "--config", str(cfg),
             "--data-root", tmp, "--session", "flood", "--prom-bind",
             f"127.0.0.1:{prom_port}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in agent.stdout:
            if line.startswith("  power sources"):
                break
        threading.Thread(target=agent.stdout.read, daemon=True).start()
        time.sleep(3.0)
        before = psutil.Process(agent.pid).memory_info().rss
        dropped = 0
        with Poller(prom_port, agent.pid) as poller:
            t0 = time.monotonic()
            if door == "probe":
                dropped = send_probe(f"udp://127.0.0.1:{probe_port}", count, rate)
            else:
                send_otlp(intake_port, count)
            sent_s = time.monotonic() - t0
            time.sleep(settle_s)  # the spans' energy is shared out ~10 s after they end
        after = psutil.Process(agent.pid).memory_info().rss
        t_stop = time.monotonic()
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=600)
        exit_s = time.monotonic() - t_stop
        table = ds.dataset(Path(tmp) / "sessions/flood/aligned").to_table(
            columns=["pipeline", "stream", "power_source"])
        table = table.filter(pc.equal(table["power_source"], "sys"))
        mine = table.filter(pc.equal(table["pipeline"], "cams" if door == "probe" else "svc"))
        return {"door": door, "streams": count, "sent_s": sent_s, "dropped": dropped,
                "before_mb": before / 2**20, "peak_mb": poller.peak_rss / 2**20,
                "after_mb": after / 2**20, "metrics_s": poller.longest["metrics"],
                "live_s": poller.longest["live"],
                "failed": sum(poller.failed.values()), "exit_s": exit_s,
                "rc": agent.returncode, "rows": mine.num_rows,
                "names": len(pc.unique(mine["stream"])),
                "overflow_said": err.count("overflow [kind=stream]")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1000,10000,100000")
    ap.add_argument("--doors", default="probe,otlp")
    ap.add_argument("--rate", type=float, default=50_000, help="probe spans a second")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds after the flood")
    args = ap.parse_args()
    print(f"{'door':5} {'streams':>8} {'sent s':>7} {'RSS before':>10} {'peak':>7} "
          f"{'growth':>7} {'settled':>8} {'/metrics':>9} {'/api/live':>9} {'exit s':>7} "
          f"{'rows':>8} {'names':>8}  rc")
    for door in args.doors.split(","):
        for count in (int(c) for c in args.counts.split(",")):
            r = run(door, count, args.rate, args.settle)
            print(f"{r['door']:5} {r['streams']:8d} {r['sent_s']:7.1f} "
                  f"{r['before_mb']:8.0f} MB {r['peak_mb']:4.0f} MB "
                  f"{r['peak_mb'] - r['before_mb']:+4.0f} MB {r['after_mb']:5.0f} MB "
                  f"{r['metrics_s']:7.2f} s {r['live_s']:7.2f} s {r['exit_s']:7.1f} "
                  f"{r['rows']:8d} {r['names']:8d}  {r['rc']}"
                  + (f"  (probe dropped {r['dropped']})" if r["dropped"] else "")
                  + (f"  ({r['failed']} polls failed)" if r["failed"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
