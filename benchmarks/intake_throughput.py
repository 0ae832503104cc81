"""OTLP intake throughput: spans a second the agent takes in per core of its own CPU, with
a quarter of them measured (matched stage spans: power, Parquet, histograms, enriched and
forwarded) and the rest forwarded unchanged to a real OTLP/gRPC collector.

A client sends ready-made ExportTraceServiceRequests (512 spans each) over gRPC as fast as
the agent answers, for --seconds; the agent's CPU time is read from /proc (psutil).
Prints spans/s of wall time, spans per CPU-second of the agent (= spans/s at one core),
and what reached the collector.

Usage: python benchmarks/intake_throughput.py [--seconds 20] [--protocol grpc|http]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import psutil
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import OtlpCollector, free_port  # noqa: E402

SPANS_PER_REQUEST = 512


def make_request(seq: int) -> trace_service_pb2.ExportTraceServiceRequest:
    now = time.time_ns()
    spans = []
    for i in range(SPANS_PER_REQUEST):
        n = seq * SPANS_PER_REQUEST + i
        spans.append(trace_pb2.Span(
            trace_id=(n + 1).to_bytes(16, "big"), span_id=(n + 1).to_bytes(8, "big"),
            name="infer" if i % 4 == 0 else "other", start_time_unix_nano=now - 5_000_000,
            end_time_unix_nano=now, attributes=[KeyValue(key="benchlab.frame",
                                                          value=AnyValue(int_value=n))]))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(
            resource=Resource(attributes=[KeyValue(key="service.name",
                                                   value=AnyValue(string_value="bench"))]),
            scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    args = ap.parse_args()
    collector = OtlpCollector().start()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    (tmp / "agent.toml").write_text('[intake]\nspan_stages = ["infer"]\n')
    listen = "--otlp-listen" if args.protocol == "grpc" else "--otlp-http-listen"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
               BENCHLAB_PROBE_ADDR="off")
    agent = subprocess.Popen(
        [sys.executable, "-m", "otel_benchlab", "--config", str(tmp / "agent.toml"),
         "--data-root", str(tmp / "data"), "--prom-bind", "off", listen,
         f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    for line in agent.stdout:  # the banner ends with the power sources
        if line.startswith("  power sources"):
            break
    proc = psutil.Process(agent.pid)
    requests = [make_request(i) for i in range(64)]
    bodies = [r.SerializeToString() for r in requests]
    stub = trace_service_pb2_grpc.TraceServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{port}"))
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    sent = refused = 0
    while time.monotonic() - t0 < args.seconds:
        i = sent % len(requests)
        try:
            if args.protocol == "grpc":
                stub.Export(requests[i], timeout=10)
            else:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/traces", data=bodies[i],
                    headers={"Content-Type": "application/x-protobuf"}), timeout=10).read()
            sent += 1
        except Exception:
            refused += 1
    wall = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    agent.send_signal(2)
    agent.communicate(timeout=60)
    collector.stop()
    spans = sent * SPANS_PER_REQUEST
    arrived = len(collector.spans())
    print(f"{args.protocol}: {spans} spans in {wall:.1f} s = {spans / wall:,.0f} spans/s; "
          f"agent CPU {cpu:.1f} s ({100 * cpu / wall:.0f} % of a core) = "
          f"{spans / cpu:,.0f} spans per CPU-second")
    print(f"refused (retry later): {refused} requests; forwarded to the collector: "
          f"{arrived} of {spans} spans ({spans // 4} measured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
