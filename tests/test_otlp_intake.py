"""The OTLP intake: a real OpenTelemetry SDK application sends to the agent as to its
collector; the test's collector upstream gets every span and metric, the measured ones
with their power added, and the agent's Parquet holds their exact latencies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.dataset as ds
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_benchlab.config import ConfigError
from otel_benchlab.receivers.otlp_intake import IntakeConfig, refuse_loop

from .servers import OtlpCollector, OtlpHttpCollector, free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e

APP = textwrap.dedent("""
    import json, os, sys, time
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    resource = Resource.create({"service.name": "detector"})
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=500)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    requests = mp.get_meter("app").create_counter("app.requests")
    tracer = tp.get_tracer("app")
    for n in range(40):
        with tracer.start_as_current_span("request", attributes={"benchlab.frame": n}) as root:
            root.add_event("decoded", {"benchlab.frame": n})
            with tracer.start_as_current_span("infer", attributes={"benchlab.frame": n,
                                                                    "benchlab.stream": "cam1"}):
                time.sleep(0.004)
            root.add_event("encoded", {"benchlab.frame": n})
            with tracer.start_as_current_span("postprocess", attributes={"k": "v"}):
                pass
        requests.add(1)
        time.sleep(0.02)
    tp.shutdown()
    mp.shutdown()
    json.dump([{"name": s.name, "trace": f"{s.context.trace_id:032x}",
                "span": f"{s.context.span_id:016x}", "start": s.start_time,
                "end": s.end_time} for s in memory.get_finished_spans()], sys.stdout)
""")


def _attrs(span) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_application_sends_to_the_agent_as_to_its_collector(tmp_path, protocol):
    upstream = (OtlpCollector if protocol == "grpc" else OtlpHttpCollector)().start()
    intake_port = free_port()
    cfg = tmp_path / "agent.toml"
    cfg.write_text('pairs = [["decoded", "encoded"]]\n[sim]\nsources = ["benchlab"]\n'
                   '[intake]\nspan_stages = ["inf*"]\nevent_stages = ["decoded", "encoded"]\n')
    listen = "--otlp-listen" if protocol == "grpc" else "--otlp-http-listen"
    up = f"http://127.0.0.1:{upstream.port}"
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
                  "--session", "in", "--prom-bind", "off", listen, f"127.0.0.1:{intake_port}"),
        env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=up, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                      OTEL_METRIC_EXPORT_INTERVAL="60000", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_started(agent)
        endpoint = f"http://127.0.0.1:{intake_port}"
        app = subprocess.run([sys.executable, "-c", APP], capture_output=True, text=True,
                             timeout=60, env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                                                       OTEL_EXPORTER_OTLP_PROTOCOL=protocol))
        assert app.returncode == 0, app.stderr
        sent = json.loads(app.stdout)
        time.sleep(1.0)
    finally:
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
        upstream.stop()
    assert agent.returncode == 0, err

    apps = [(res, sp) for res, sp in upstream.spans()
            if _attrs(res).get("service.name") == "detector"]  # not the agent's own traces
    got = {(f"{sp.trace_id.hex()}", f"{sp.span_id.hex()}"): (res, sp) for res, sp in apps}
    assert len(apps) == len(got) == len(sent)  # each once: nothing was retried
    for s in sent:  # every span the application made arrived upstream, with its own ids
        res, sp = got[(s["trace"], s["span"])]
        assert sp.name == s["name"]
        assert (sp.start_time_unix_nano, sp.end_time_unix_nano) == (s["start"], s["end"])
        attrs = _attrs(sp)
        if s["name"] == "infer":
            assert attrs["benchlab.energy.sys"] > 0 and attrs["benchlab.power.mean.sys"] > 0
        else:
            assert not any(k.startswith("benchlab.energy") for k in attrs)
        if s["name"] == "postprocess":
            assert attrs == {"k": "v"}
    assert "app.requests" in upstream.metrics()

    table = ds.dataset(tmp_path / "data/sessions/in/aligned").to_table().to_pandas()
    rows = table[table.power_source == "sys"]
    infer = rows[rows.stage_from == "infer.start"].sort_values("frame")
    expected = sorted((s for s in sent if s["name"] == "infer"), key=lambda s: s["start"])
    assert list(infer.trace_id) == [s["trace"] for s in expected]
    assert list(infer.start_unix_ns) == [s["start"] for s in expected]
    assert list(infer.latency_ms) == pytest.approx([(s["end"] - s["start"]) / 1e6
                                                    for s in expected], abs=1e-9)
    assert set(infer.stream) == {"cam1"} and set(infer.pipeline) == {"detector"}
    assert (rows.stage_from == "decoded").sum() == 40  # events became marks and paired


def test_an_intake_on_the_agents_own_export_endpoint_is_refused():
    with pytest.raises(ConfigError, match="sent back to itself"):
        refuse_loop(IntakeConfig(otlp_grpc="127.0.0.1:4317"), {"traces": "localhost:4317"})
    refuse_loop(IntakeConfig(otlp_grpc="127.0.0.1:4317"), {"traces": "collector:4317"})


def test_the_agent_refuses_to_start_with_a_loop(tmp_path):
    port = free_port()
    proc = subprocess.run(
        agent_cmd("--data-root", str(tmp_path), "--prom-bind", "off", "--otlp-listen",
                  f"127.0.0.1:{port}", "--duration", "1"),
        env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://localhost:{port}"),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "sent back to itself" in proc.stderr
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())


def _request(name: str = "other"):
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    span = trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name,
                          start_time_unix_nano=time.time_ns() - 1000,
                          end_time_unix_nano=time.time_ns())
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])])


def test_a_full_forward_queue_asks_the_application_to_retry():
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    from otel_benchlab.counters import AgentCounters
    from otel_benchlab.exporters.otlp import OtlpConfig
    from otel_benchlab.exporters.otlp_forward import OtlpForwarder
    from otel_benchlab.receivers.otlp_enricher import IntakeEnricher
    from otel_benchlab.receivers.otlp_intake import OtlpIntakeReceiver

    from .servers import BlackHole

    hang = BlackHole().start()
    counters = AgentCounters()
    forwarder = OtlpForwarder(OtlpConfig(endpoint=f"http://127.0.0.1:{hang.port}",
                                         timeout_s=3), counters, {}, max_requests=1)
    port = free_port()
    rx = OtlpIntakeReceiver(IntakeConfig(otlp_grpc=f"127.0.0.1:{port}"), counters, forwarder,
                            IntakeEnricher(forwarder, 1.0, 1))
    rx.start(lambda r: True)
    stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    codes = []
    try:
        for _ in range(4):  # one being sent (hanging), one queued, then no room
            try:
                stub.Export(_request(), timeout=5)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
            time.sleep(0.2)
    finally:
        rx.stop()
        forwarder.shutdown(0.5)
        hang.stop()
    assert codes[:2] == ["OK", "OK"] and "UNAVAILABLE" in codes[2:]
    assert counters.get("forward.dropped", signal="traces", reason="queue_full") >= 1


def test_a_body_that_is_not_protobuf_is_refused_and_counted(tmp_path):
    import urllib.error
    import urllib.request

    from otel_benchlab.counters import AgentCounters
    from otel_benchlab.exporters.otlp import OtlpConfig
    from otel_benchlab.exporters.otlp_forward import OtlpForwarder
    from otel_benchlab.receivers.otlp_enricher import IntakeEnricher
    from otel_benchlab.receivers.otlp_intake import OtlpIntakeReceiver

    counters = AgentCounters()
    forwarder = OtlpForwarder(OtlpConfig(traces_exporter=["none"], metrics_exporter=["none"]),
                              counters, {"OTEL_LOGS_EXPORTER": "none"}, max_requests=4)
    port = free_port()
    rx = OtlpIntakeReceiver(IntakeConfig(otlp_http=f"127.0.0.1:{port}"), counters, forwarder,
                            IntakeEnricher(forwarder, 1.0, 4))
    rx.start(lambda r: True)
    url = f"http://127.0.0.1:{port}/v1/traces"
    answers = []
    try:
        for body, ctype in ((b"\xff\x00garbage", "application/x-protobuf"),
                            (b"{}", "application/json"),
                            (_request().SerializeToString(), "application/x-protobuf")):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    url, data=body, headers={"Content-Type": ctype}), timeout=5)
                answers.append(200)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)
    finally:
        rx.stop()
        forwarder.shutdown(0.5)
    assert answers == [400, 415, 200]
    assert counters.get("input.rejected", source="otlp", reason="not_protobuf") == 1
    assert counters.get("forward.dropped", signal="traces", reason="no_upstream") == 1


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_compressed_bomb_is_refused_at_the_cap_without_taking_memory(tmp_path):
    import gzip
    import urllib.error
    import urllib.request

    port = free_port()
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp_path / "data"), "--session", "bomb",
                  "--prom-bind", "off", "--otlp-http-listen", f"127.0.0.1:{port}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # 2 MB that unpacks to 2 GiB of zeros: 32 gzip members of 64 MiB each.
    body = gzip.compress(b"\0" * (64 << 20), compresslevel=9) * 32
    assert len(body) < 3 << 20
    url = f"http://127.0.0.1:{port}/v1/traces"
    try:
        wait_started(agent)
        time.sleep(1.0)
        before = _rss_kb(agent.pid)
        codes = []
        for data, encoding in ((body, "gzip"), (gzip.compress(_request().SerializeToString()),
                                                "gzip")):
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=data, headers={
                    "Content-Type": "application/x-protobuf", "Content-Encoding": encoding}),
                    timeout=30)
                codes.append(200)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
        peak = _rss_kb(agent.pid, "VmHWM")
    finally:
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
    assert codes == [413, 200]  # the bomb refused at the cap; the agent still takes requests
    assert peak - before < 64 << 10, (before, peak)  # KiB: within tens of MB of before
    assert "past the intake's limit of 32 MiB was refused with 413" in err
    assert err.count("refused with 413") == 1  # said once


@given(st.lists(st.tuples(st.text(max_size=300), st.floats()), max_size=30))
def test_added_double_attributes_are_the_bytes_keyvalue_messages_make(pairs):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from otel_benchlab.receivers.otlp_enricher import add_double_attributes

    made = Span(name="llm_request", attributes=[KeyValue(key="k", value=AnyValue(int_value=1))])
    merged = Span()
    merged.CopyFrom(made)
    for key, value in pairs:
        made.attributes.append(KeyValue(key=key, value=AnyValue(double_value=value)))
    add_double_attributes(merged, pairs)
    assert merged.SerializeToString() == made.SerializeToString()


def test_with_no_trace_exporter_a_measured_span_is_measured_and_its_request_not_held():
    from otel_benchlab.counters import AgentCounters
    from otel_benchlab.exporters.otlp import OtlpConfig
    from otel_benchlab.exporters.otlp_forward import OtlpForwarder
    from otel_benchlab.receivers.otlp_enricher import IntakeEnricher
    from otel_benchlab.receivers.otlp_intake import OtlpIntakeReceiver

    counters = AgentCounters()
    forwarder = OtlpForwarder(OtlpConfig(traces_exporter=["none"], metrics_exporter=["none"]),
                              counters, {"OTEL_LOGS_EXPORTER": "none"}, max_requests=4)
    enricher = IntakeEnricher(forwarder, 60.0, 4)
    rx = OtlpIntakeReceiver(IntakeConfig(span_stages=["infer"]), counters, forwarder, enricher)
    got = []
    rx._emit = lambda r: got.append(r) or True
    try:
        assert rx.take_traces(_request("infer"))
    finally:
        forwarder.shutdown(0.5)
    assert [(s.stage_from, s.stage_to) for s in got] == [("infer.start", "infer.end")]
    assert not enricher._held  # nothing goes upstream: nothing to wait for
    assert counters.get("forward.dropped", signal="traces", reason="no_upstream") == 1


def test_a_span_names_stage_names_are_made_once():
    from otel_benchlab.receivers.otlp_intake import stage_names

    first, again = stage_names("infer"), stage_names("infer")
    assert first == ("infer.start", "infer.end")
    assert first[0] is again[0] and first[1] is again[1]
