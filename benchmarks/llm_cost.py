"""What measuring LLM requests costs the agent: its CPU while a server sends ``--rate``
requests a second (vLLM's ``llm_request`` spans with vLLM's attributes, through the
OpenTelemetry SDK at its defaults, over gRPC to the agent's intake), against the same agent
with no requests, in alternated rounds. The agent runs as a user runs it: the emulated
BENCHLAB for power, every default output (Parquet, CapFrameX, the live page, forwarding to
a real OTLP collector). Prints the agent's CPU in each round and the median difference.

    python benchmarks/llm_cost.py [--rate 200] [--seconds 30] [--rounds 3]

Target (issue 35): the extra CPU at 200 requests/s under 2 % of a core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import OtlpCollector, free_port  # noqa: E402

# A server finishing ``rate`` requests a second, each made as vLLM makes it (a span when
# the request ends, its times set, vLLM's attributes), through the SDK at its defaults.
SERVER = textwrap.dedent("""
    import os, random, sys, time
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    tp = TracerProvider(resource=Resource.create({"service.name": "vllm"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = tp.get_tracer("vllm.tracing")
    rng = random.Random(1)
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + k / rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        end = time.time_ns()
        q, p, d = rng.uniform(0, .2), rng.uniform(.02, .08), rng.uniform(.3, 2.0)
        n_in, n_out = rng.randint(50, 2000), rng.randint(20, 600)
        start = end - int((q + p + d) * 1e9)
        span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=start,
            attributes={"gen_ai.response.model": "llama-3-8b",
                        "gen_ai.request.id": f"cmpl-{k}", "gen_ai.request.max_tokens": 1024,
                        "gen_ai.request.temperature": 0.7, "gen_ai.request.top_p": 1.0,
                        "gen_ai.request.n": 1, "gen_ai.usage.num_sequences": 1,
                        "gen_ai.usage.prompt_tokens": n_in,
                        "gen_ai.usage.completion_tokens": n_out,
                        "gen_ai.latency.time_in_queue": q,
                        "gen_ai.latency.time_to_first_token": q + p,
                        "gen_ai.latency.e2e": q + p + d,
                        "gen_ai.latency.time_in_scheduler": 0.001,
                        "gen_ai.latency.time_in_model_prefill": p,
                        "gen_ai.latency.time_in_model_decode": d,
                        "gen_ai.latency.time_in_model_inference": p + d})
        span.end(end_time=end)
        k += 1
    tp.shutdown()
    print(k)
""")


def agent_cpu(seconds: float, rate: float | None) -> tuple[float, int]:
    """(the agent's CPU seconds over ``seconds`` of steady running, requests sent)."""
    collector = OtlpCollector().start()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="llm-cost-"))
    (tmp / "agent.toml").write_text('[sim]\nsources = ["benchlab"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
               BENCHLAB_PROBE_ADDR="off")
    agent = subprocess.Popen(
        [sys.executable, "-m", "otel_benchlab", "--simulate", "--config",
         str(tmp / "agent.toml"), "--data-root", str(tmp / "data"), "--prom-bind",
         f"127.0.0.1:{free_port()}", "--otlp-listen", f"127.0.0.1:{port}"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in agent.stdout:  # the banner ends with the power sources
        if line.startswith("  power sources"):
            break
    server = None
    if rate:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(rate), str(seconds + 15)],
            env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"},
            stdout=subprocess.PIPE, text=True)
    time.sleep(15)  # warm: the first spans through the attribution delay and forwarding
    proc = psutil.Process(agent.pid)
    cpu0 = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    sent = int(server.communicate(timeout=120)[0].strip() or 0) if server else 0
    agent.send_signal(2)
    agent.communicate(timeout=60)
    collector.stop()
    return cpu, sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    extra = []
    for r in range(args.rounds):
        idle, _ = agent_cpu(args.seconds, None)
        busy, sent = agent_cpu(args.seconds, args.rate)
        extra.append(100 * (busy - idle) / args.seconds)
        print(f"round {r + 1}: agent {100 * idle / args.seconds:.1f} % of a core with no "
              f"requests, {100 * busy / args.seconds:.1f} % at {args.rate:g} requests/s "
              f"({sent} sent): +{extra[-1]:.2f} %", flush=True)
    print(f"extra CPU at {args.rate:g} requests/s: median +{statistics.median(extra):.2f} % "
          f"of a core (rounds: {', '.join(f'{x:+.2f}' for x in extra)}); target < 2 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
