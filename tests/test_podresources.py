"""GPU-to-pod attribution against a fake kubelet: a real gRPC server on a unix socket that
speaks the PodResources v1 API from the kubelet's proto."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from otel_benchlab.k8s._gen import api_pb2, api_pb2_grpc
from otel_benchlab.k8s.podresources import PodResources, list_owners

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

FAKE_NVML = Path(__file__).parent / "fake_nvml"


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, path: Path, pods: list) -> None:
        self.pods = pods
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix://{path}")
        self.path = path

    def List(self, request, context):  # noqa: N802 - the API's name
        self.calls += 1
        return api_pb2.ListPodResourcesResponse(pod_resources=[
            api_pb2.PodResources(name=name, namespace=ns, containers=[
                api_pb2.ContainerResources(name=container, devices=[
                    api_pb2.ContainerDevices(resource_name="nvidia.com/gpu",
                                             device_ids=ids)])])
            for ns, name, container, ids in self.pods])

    def __enter__(self) -> FakeKubelet:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(0)


PODS = [("ml", "trainer-0", "train", ["GPU-aaaa"]),
        ("video", "encoder-7", "ffmpeg", ["MIG-1111", "MIG-2222"])]


def test_every_device_maps_to_the_container_that_holds_it(tmp_path):
    with FakeKubelet(tmp_path / "kubelet.sock", PODS):
        owners = list_owners(str(tmp_path / "kubelet.sock"))
    assert owners["GPU-aaaa"] == {"k8s.namespace.name": "ml", "k8s.pod.name": "trainer-0",
                                  "k8s.container.name": "train"}
    assert owners["MIG-2222"]["k8s.pod.name"] == "encoder-7"
    assert "GPU-bbbb" not in owners


def test_a_kubelet_that_goes_away_keeps_the_last_answer(tmp_path, caplog):
    sock = tmp_path / "kubelet.sock"
    pr = PodResources(str(sock), refresh_s=3600)
    with FakeKubelet(sock, PODS):
        pr.refresh()
    pr.refresh()
    pr.refresh()
    assert pr.owner("GPU-aaaa")["k8s.pod.name"] == "trainer-0"
    assert caplog.text.count("did not answer") == 1


@pytest.mark.e2e
def test_gpu_metrics_carry_the_pod_that_holds_the_gpu(tmp_path):
    sock = tmp_path / "kubelet.sock"
    spec = tmp_path / "nvml.json"
    spec.write_text(json.dumps({"gpus": [{"uuid": "GPU-aaaa"}, {"uuid": "GPU-bbbb"}]}))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[kubernetes]\npod_resources_socket = "{sock}"\n'
                   f'[host]\nsysfs_root = "{tmp_path}"\n[benchlab]\nenabled = false\n')
    port = free_port()
    env = agent_env(FAKE_NVML=str(spec), OTEL_TRACES_EXPORTER="none",
                    OTEL_METRICS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off",
                    PYTHONPATH=os.pathsep.join([str(FAKE_NVML),
                                                os.environ.get("PYTHONPATH", "")]))
    with FakeKubelet(sock, PODS):
        agent = subprocess.Popen(
            agent_cmd("--config", str(cfg), "--data-root", str(tmp_path / "data"),
                      "--prom-bind", f"127.0.0.1:{port}"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_started(agent)
            time.sleep(1.5)
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=10).read().decode()
        finally:
            agent.send_signal(2)
            agent.communicate(timeout=30)
    power = [line for line in body.splitlines() if line.startswith("hw_power_watts{")]
    held = [line for line in power if 'hw_id="GPU-aaaa"' in line]
    free = [line for line in power if 'hw_id="GPU-bbbb"' in line]
    assert held and 'k8s_pod_name="trainer-0"' in held[0]
    assert 'k8s_namespace_name="ml"' in held[0] and 'k8s_container_name="train"' in held[0]
    assert free and 'k8s_pod_name=""' in free[0]  # the exporter fills a family's labels


def test_a_measured_span_from_a_pod_says_which_gpus_the_pod_holds(tmp_path):
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1 import trace_pb2

    from otel_benchlab.receivers.otlp_enricher import IntakeEnricher

    sock = tmp_path / "kubelet.sock"
    pr = PodResources(str(sock), refresh_s=3600)
    with FakeKubelet(sock, PODS):
        pr.refresh()

    def request(ns: str, pod: str):
        attrs = [KeyValue(key="k8s.namespace.name", value=AnyValue(string_value=ns)),
                 KeyValue(key="k8s.pod.name", value=AnyValue(string_value=pod))]
        span = trace_pb2.Span(name="infer", trace_id=b"\1" * 16, span_id=b"\2" * 8)
        return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
            trace_pb2.ResourceSpans(resource=Resource(attributes=attrs),
                                    scope_spans=[trace_pb2.ScopeSpans(spans=[span])])])

    enricher = IntakeEnricher(forwarder=None, hold_s=1, max_held=4,
                              pod_devices=pr.devices_of)
    held, other = request("video", "encoder-7"), request("web", "frontend")
    for req in (held, other):
        sp = req.resource_spans[0].scope_spans[0].spans[0]
        enricher.hold(req, [((1, 2), sp)])
    attrs = {kv.key: kv.value for kv in held.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert [v.string_value for v in attrs["benchlab.gpu.ids"].array_value.values] == [
        "MIG-1111", "MIG-2222"]
    assert not other.resource_spans[0].scope_spans[0].spans[0].attributes
