"""The agent's CPU (% of one core) and peak RSS while simulating 60 fps x 3 stages with
sensors at 10 Hz, all exporters on: OTLP/gRPC to a local collector (built from
opentelemetry-proto, as in the tests), Prometheus scraped every second, Parquet, CapFrameX.

Usage: python benchmarks/agent_footprint.py [--seconds 60] [--agent-python PY]
                                           [--baseline-python PY] [--rounds N]
                                           [--load simulate|external]
Targets: <= 2 % of one core, <= 120 MB peak RSS.

``--load simulate`` (the default) is ``otel-benchlab --simulate``: the simulated pipeline,
the BENCHLAB emulator and the simulated GPU run inside the agent and are counted with it.
``--load external`` measures what the agent costs on a real bench: the BENCHLAB emulator
runs in a process of its own on a pseudo-terminal that the agent reads as its device
(``[benchlab] device``), and a second process sends 60 fps x 3 stages of marks through
``otel_benchlab.probe`` (UDP), as an instrumented application does; only the agent's
process is measured (no simulated GPU: BENCHLAB and the host's CPU are the sensors).
The default window (60 s after 10 s) takes in the first Parquet part write (at 60 s).

``--baseline-python`` measures a second installation (an earlier build) in the same run,
alternating with the agent round by round, and prints the ratio of the medians: on a
shared machine only figures taken side by side compare.

Measure the agent as it is deployed: ``--agent-python`` names the interpreter of a plain
``pip install .`` (no test extras). Builds before aafd330 let pyarrow load pandas, where
installed, on its first array (some 40 MB); the agent now hides it (``no_pandas.py``), and
the line above the figures says whether the interpreter has pandas.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import OtlpCollector, free_port  # noqa: E402

# The BENCHLAB emulator in a process of its own: prints its pseudo-terminal, serves it.
EMULATOR = """
import time
from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator
emulator = BenchlabEmulator().start()
print(emulator.path, flush=True)
time.sleep(3600)
"""
# An application's pipeline: 60 frames a second through 3 stages, marked by the probe.
PIPELINE = """
import sys, time
from otel_benchlab.probe import Probe
probe = Probe(sys.argv[1], pipeline="app")
end = time.monotonic() + float(sys.argv[2])
frame = 0
while time.monotonic() < end:
    t = time.monotonic_ns()
    for k, stage in enumerate(("ingress", "encoded", "inference_done")):
        probe.mark_at(t + k * 8_000_000, stage, frame)
    frame += 1
    time.sleep(max(0.0, 1 / 60 - (time.monotonic_ns() - t) / 1e9))
probe.close()
"""


def private_bytes(pid: int) -> int:
    """Memory of the process's own (Private_Clean + Private_Dirty in smaps_rollup): RSS
    without the pages of shared libraries (Arrow's, gRPC's) that other processes share."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) * 1024 for line in text.splitlines()
               if line.startswith(("Private_Clean:", "Private_Dirty:")))


def measure(py: str, args: argparse.Namespace) -> tuple[float, float, float, int, int, str]:
    """(CPU % of one core, peak RSS MB, peak private MB, spans the collector received, exit
    status, stderr tail) of one agent run."""
    collector = OtlpCollector().start()
    prom = free_port()
    data = tempfile.mkdtemp(prefix="bench-agent-")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
           "OTEL_METRIC_EXPORT_INTERVAL": args.export_ms, "PATH": "/usr/bin:/bin",
           "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": args.sample_ratio}
    helpers: list[subprocess.Popen] = []
    load = ["--simulate"]
    if args.load == "external":
        emulator = subprocess.Popen([py, "-c", EMULATOR], stdout=subprocess.PIPE, text=True,
                                    cwd=data)
        device = emulator.stdout.readline().strip()
        addr = f"udp://127.0.0.1:{free_port()}"
        env["BENCHLAB_PROBE_ADDR"] = addr
        config = Path(data) / "agent.toml"
        config.write_text(f'pairs = [["ingress", "encoded"], ["encoded", "inference_done"]]\n'
                          f'[benchlab]\ndevice = "{device}"\n')
        seconds = args.seconds + args.warmup + 5
        helpers = [emulator, subprocess.Popen([py, "-c", PIPELINE, addr, str(seconds)],
                                              cwd=data)]
        load = ["--config", str(config)]
    proc = subprocess.Popen(
        [py, "-m", "otel_benchlab", *load, "--sample-hz", "10",
         "--duration", str(args.seconds + args.warmup), "--data-root", data,
         "--prom-bind", f"127.0.0.1:{prom}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=data)  # not the source tree, so the installed package is what runs
    p = psutil.Process(proc.pid)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(args.scrape_s):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=2).read()

    threading.Thread(target=scrape, daemon=True).start()
    time.sleep(args.warmup)
    c0, t0 = p.cpu_times(), time.monotonic()
    peak = private = 0
    while time.monotonic() - t0 < args.seconds and proc.poll() is None:
        peak = max(peak, p.memory_info().rss)
        private = max(private, private_bytes(proc.pid))
        time.sleep(0.5)
    c1, t1 = p.cpu_times(), time.monotonic()
    try:
        hwm = next(int(line.split()[1]) * 1024 for line in
                   Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        hwm = peak
    stop.set()
    _, err = proc.communicate(timeout=120)
    for h in helpers:
        h.terminate()
        h.wait(timeout=10)
    collector.stop()
    cpu = 100 * ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0)
    return (cpu, max(peak, hwm) / 2**20, private / 2**20, len(collector.spans()),
            proc.returncode, err[-2000:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--agent-python", default=sys.executable,
                    help="interpreter that runs the agent (default: this one)")
    ap.add_argument("--baseline-python", help="interpreter of a baseline installation, "
                    "measured alternately in the same run")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scrape-s", type=float, default=15.0,
                    help="Prometheus scrape interval (a common setting is 15 s)")
    ap.add_argument("--export-ms", default="60000",
                    help="OTEL_METRIC_EXPORT_INTERVAL (the OpenTelemetry default is 60000)")
    ap.add_argument("--sample-ratio", default="1.0", help="OTEL_TRACES_SAMPLER_ARG")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds not counted for CPU")
    ap.add_argument("--load", choices=("simulate", "external"), default="simulate",
                    help="the load inside the agent (--simulate) or in processes of its own")
    args = ap.parse_args()
    runs: dict[str, list[tuple[float, float, float, int, int, str]]] = {"agent": [],
                                                                          "baseline": []}
    for _ in range(args.rounds):
        runs["agent"].append(measure(args.agent_python, args))
        if args.baseline_python:
            runs["baseline"].append(measure(args.baseline_python, args))
    has_pandas = subprocess.run([args.agent_python, "-c", "import pandas"],
                                capture_output=True).returncode == 0
    print(f"agent ({args.agent_python}; load {args.load}; "
          f"pandas {'present' if has_pandas else 'absent'}; "
          f"traces sampled at {args.sample_ratio}; scrape every {args.scrape_s} s; "
          f"OTLP metrics every {args.export_ms} ms; {args.rounds} round(s) of "
          f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up)")
    medians = {}
    for who, got in runs.items():
        if not got:
            continue
        cpu = statistics.median(r[0] for r in got)
        rss = statistics.median(r[1] for r in got)
        private = statistics.median(r[2] for r in got)
        medians[who] = (cpu, rss)
        print(f"{who}: CPU {' / '.join(f'{r[0]:.2f}' for r in got)} % of one core "
              f"(median {cpu:.2f}; target <= 2), peak RSS median {rss:.1f} MB "
              f"(target <= 120), of it private {private:.1f} MB; spans received "
              f"{[r[3] for r in got]}, exit {[r[4] for r in got]}")
        for r in got:
            if r[4]:
                print(r[5])
    if "baseline" in medians:
        (a_cpu, a_rss), (b_cpu, b_rss) = medians["agent"], medians["baseline"]
        print(f"agent / baseline: CPU {a_cpu / b_cpu:.2f}x, RSS {a_rss / b_rss:.2f}x")
    cpu, rss = medians["agent"]
    return 0 if cpu <= 2 and rss <= 120 and not any(r[4] for r in runs["agent"]) else 1


if __name__ == "__main__":
    sys.exit(main())
