"""Every standard OTEL_* variable works the way the OpenTelemetry SDK defines it, checked
against real OTLP servers (gRPC from opentelemetry-proto's service definitions, and
OTLP/HTTP with protobuf bodies). The agents of all scenarios run at once."""

from __future__ import annotations

import json
import subprocess

import pytest

from otel_benchlab.exporters.otlp import plan_signal

from .servers import OtlpCollector, OtlpHttpCollector, free_port
from .test_end_to_end import agent_cmd, agent_env

pytestmark = pytest.mark.e2e
DURATION = "3"


def _resource(request) -> dict[str, str]:
    rs = (request.resource_spans or request.resource_metrics)[0] if hasattr(
        request, "resource_spans") and request.resource_spans else request.resource_metrics[0]
    return {a.key: a.value.string_value for a in rs.resource.attributes}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("otel")
    servers = {name: OtlpCollector().start() for name in
               ("traces", "metrics", "grpc", "console", "disabled", "sampler", "queue",
                "headers", "mixed_metrics", "i1", "i2")}
    servers["http"] = OtlpHttpCollector().start()
    servers["mixed_traces"] = OtlpHttpCollector().start()
    dead = f"http://127.0.0.1:{free_port()}"

    def url(name: str) -> str:
        return f"http://127.0.0.1:{servers[name].port}"

    envs = {
        # Per-signal endpoints beat the generic one (which points nowhere).
        "per_signal": dict(OTEL_EXPORTER_OTLP_ENDPOINT=dead,
                           OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=url("traces"),
                           OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=url("metrics")),
        "http": dict(OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                     OTEL_EXPORTER_OTLP_ENDPOINT=url("http"),
                     OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                     OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme"),
        "mixed": dict(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
                      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=url("mixed_traces") + "/v1/traces",
                      OTEL_EXPORTER_OTLP_ENDPOINT=url("mixed_metrics")),
        "headers": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("headers"),
                        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme,authorization=Bearer%20t"),
        "console": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("console"),
                        OTEL_TRACES_EXPORTER="console"),
        "disabled": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("disabled"), OTEL_SDK_DISABLED="true"),
        "sampler": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("sampler"),
                        OTEL_TRACES_SAMPLER="always_off"),
        "queue": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("queue"), OTEL_BSP_MAX_QUEUE_SIZE="20",
                      OTEL_BSP_SCHEDULE_DELAY="60000", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="20"),
        "i1": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("i1"), OTEL_SERVICE_NAME="cam-node",
                   OTEL_RESOURCE_ATTRIBUTES="deployment.environment=lab,k8s.node.name=n1"),
        "i2": dict(OTEL_EXPORTER_OTLP_ENDPOINT=url("i2")),
    }
    procs = {}
    for name, env in envs.items():
        procs[name] = subprocess.Popen(
            agent_cmd("--simulate", "--duration", DURATION, "--data-root", str(tmp / name),
                      "--session", name, "--prom-bind", "off" if name != "disabled" else
                      f"127.0.0.1:{free_port()}"),
            env=agent_env(OTEL_METRIC_EXPORT_INTERVAL="1000", **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        done[name] = (p.returncode, out, err, tmp / name / "sessions" / name)
    yield done, servers
    for s in servers.values():
        s.stop()


def _ok(result):
    rc, out, err, _ = result
    assert rc == 0, err[-3000:]
    return out


def test_per_signal_endpoints_win_over_the_generic_endpoint(scenarios):
    done, servers = scenarios
    _ok(done["per_signal"])
    assert servers["traces"].spans() and not servers["traces"].metric_requests
    assert servers["metrics"].metrics() and not servers["metrics"].trace_requests


def test_http_protobuf_with_gzip_and_headers(scenarios):
    done, servers = scenarios
    _ok(done["http"])
    http = servers["http"]
    assert {"/v1/traces", "/v1/metrics"} <= set(http.paths)
    assert http.spans() and "benchlab.pipeline.latency" in http.metrics()
    assert all(m.get("x-tenant") == "acme" for m in http.metadata)
    assert all(m.get("content-encoding") == "gzip" for m in http.metadata)


def test_protocol_per_signal(scenarios):
    done, servers = scenarios
    _ok(done["mixed"])
    assert servers["mixed_traces"].spans() and not servers["mixed_traces"].metric_requests
    assert servers["mixed_metrics"].metrics() and not servers["mixed_metrics"].trace_requests


def test_grpc_headers_reach_the_collector(scenarios):
    done, servers = scenarios
    _ok(done["headers"])
    meta = servers["headers"].metadata
    assert meta and all(m.get("x-tenant") == "acme" for m in meta)
    assert all(m.get("authorization") == "Bearer t" for m in meta)


def test_console_trace_exporter_prints_spans_and_metrics_still_go_over_otlp(scenarios):
    done, servers = scenarios
    out = _ok(done["console"])
    assert '"name": "ingress->encoded"' in out and "traces: console (stdout)" in out
    assert not servers["console"].trace_requests and servers["console"].metrics()


def test_sdk_disabled_sends_nothing_and_serves_no_metrics_but_writes_files(scenarios):
    done, servers = scenarios
    out = _ok(done["disabled"])
    assert not servers["disabled"].trace_requests and not servers["disabled"].metric_requests
    assert "Prometheus: off" in out and "traces: off" in out and "metrics: off" in out
    session = done["disabled"][3]
    assert list((session / "aligned").glob("part-*.parquet"))


def test_always_off_sampler_sends_no_spans_but_metrics(scenarios):
    done, servers = scenarios
    _ok(done["sampler"])
    assert not servers["sampler"].spans() and servers["sampler"].metrics()


def test_bsp_queue_size_is_honoured_and_every_drop_counted(scenarios):
    done, servers = scenarios
    _ok(done["queue"])
    summary = json.loads((done["queue"][3] / "session.json").read_text())["summary"]
    sent = len(servers["queue"].spans())
    assert summary["export_dropped"] > 0
    # Every span made is either delivered or counted as dropped: none vanish.
    made = summary["spans"] + summary["traces"]["sampled"] + summary["traces"][
        "kept_over_target"]
    assert sent + summary["export_dropped"] == made


def test_service_name_resource_attributes_and_a_unique_instance_id(scenarios):
    done, servers = scenarios
    _ok(done["i1"])
    _ok(done["i2"])
    r1 = _resource(servers["i1"].trace_requests[0])
    r2 = _resource(servers["i2"].trace_requests[0])
    assert r1["service.name"] == "cam-node" and r1["deployment.environment"] == "lab"
    assert r1["k8s.node.name"] == "n1"
    assert r1["host.name"] == r2["host.name"]
    assert r1["service.instance.id"] != r2["service.instance.id"]


@pytest.mark.parametrize("env,var", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_METRICS_EXPORTER": "otlp,bogus"}, "OTEL_METRICS_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
])
def test_unsupported_values_stop_start_up_naming_the_variable(tmp_path, env, var):
    out = subprocess.run(agent_cmd("--simulate", "--duration", "1", "--data-root",
                                   str(tmp_path), "--prom-bind", "off"),
                         env=agent_env(**env), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and var in out.stderr
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())


def test_timeouts_are_milliseconds_as_the_specification_says():
    from otel_benchlab.exporters.otlp import OtlpConfig

    plan = plan_signal("traces", OtlpConfig(), {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
                                                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "750"})
    assert plan.timeout_s == 0.75
    assert plan_signal("metrics", OtlpConfig(), {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}
                       ).timeout_s == 2.5


def test_toml_endpoint_is_used_only_where_no_variable_sets_one():
    from otel_benchlab.exporters.otlp import OtlpConfig

    cfg = OtlpConfig(endpoint="http://file:4318/", protocol="http/protobuf")
    assert plan_signal("traces", cfg, {}).endpoint == "http://file:4318/v1/traces"
    assert plan_signal("traces", cfg, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://e"}
                       ).endpoint is None  # the exporter reads the variable itself
