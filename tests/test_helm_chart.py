"""The Helm chart, rendered by Helm's own engine (helm-python-sdk), linted, and every object
validated against the Kubernetes schemas (kubernetes-validate), for the default values and
each combination that changes its structure."""

from __future__ import annotations

from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import tomllib
import yaml

from otel_benchlab.config import load_config

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "otel-benchlab"
KUBE_VERSION = "1.30.0"
CRDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}  # not in the core schemas

COMBINATIONS = {
    "default": {},
    "shared storage": {"storage": {"type": "pvc"}},
    "existing claim": {"storage": {"type": "pvc", "pvc": {"existingClaim": "benchlab-data"}}},
    "sysfs": {"hardware": {"sysfs": {"enabled": True}}},
    "sysfs with RAPL as root": {"hardware": {"sysfs": {"enabled": True,
                                                       "readRaplAsRoot": True}}},
    "benchlab": {"hardware": {"benchlab": {"enabled": True}}},
    "pod resources": {"hardware": {"podResources": {"enabled": True}}},
    "nvidia runtime class": {"hardware": {"nvidia": {"runtimeClassName": "nvidia"}}},
    "monitors and rules": {"prometheus": {"serviceMonitor": {"enabled": True},
                                          "podMonitor": {"enabled": True},
                                          "rules": {"enabled": True}}},
    "network policy": {"networkPolicy": {"enabled": True, "allowFrom": [
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}},
    "no intake": {"intake": {"enabled": False}},
    "upload with a secret and store expiry": {
        "upload": {"uri": "s3://fleet/benchlab", "endpoint": "http://minio.storage:9000",
                   "existingSecret": "benchlab-s3", "expiry": {"enabled": True,
                                                             "dryRun": True}}},
    "upload with a cloud identity": {
        "upload": {"uri": "gs://fleet/benchlab"},
        "serviceAccount": {"annotations": {
            "iam.gke.io/gcp-service-account": "benchlab@proj.iam.gserviceaccount.com"}}},
    "everything off": {"hardware": {"nvidia": {"enabled": False}},
                       "storage": {"hostPath": {"fixPermissions": False}},
                       "grafana": {"dashboards": {"enabled": False}}},
}


def render(values: dict | None = None) -> list[dict]:
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(values or {}, name="obl", namespace="gpu-telemetry", is_install=True)
    return [d for path, text in sorted(out.items()) if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(docs: list[dict]) -> dict:
    (ds,) = by_kind(docs, "DaemonSet")
    return ds["spec"]["template"]["spec"]


def agent(docs: list[dict]) -> dict:
    return next(c for c in pod_spec(docs)["containers"] if c["name"] == "agent")


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_every_object_is_valid_kubernetes(name):
    for doc in render(COMBINATIONS[name]):
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_chart_lints_clean_and_the_schema_refuses_bad_values():
    report = helm_python.lint(str(CHART), strict=True)
    assert report["errors"] == [] and all(m["severity"] < 2 for m in report["messages"])
    chart = helm_python.Chart.load(str(CHART))
    for bad in ({"storage": {"type": "nfs"}}, {"otlp": {"protocol": "http/json"}},
                {"hardware": {"benchlab": {"devicePath": "ttyACM0"}}}, {"no_such_key": 1}):
        with pytest.raises(helm_python.HelmError):
            chart.validate_schema(bad)


def test_everything_off_runs_non_root_read_only_with_no_capabilities():
    docs = render(COMBINATIONS["everything off"])
    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "initContainers" not in spec and "runtimeClassName" not in spec
    sc = agent(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and "privileged" not in sc
    host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
    assert host_paths == ["/var/lib/otel-benchlab"]


def test_each_hardware_access_adds_only_what_it_needs():
    sysfs = render(COMBINATIONS["sysfs"])
    mount = next(m for m in agent(sysfs)["volumeMounts"] if m["name"] == "sys")
    assert mount["readOnly"] is True and agent(sysfs)["securityContext"]["runAsNonRoot"]
    rapl = agent(render(COMBINATIONS["sysfs with RAPL as root"]))["securityContext"]
    assert rapl["runAsUser"] == 0 and rapl["capabilities"] == {"drop": ["ALL"],
                                                               "add": ["DAC_READ_SEARCH"]}
    bl = render(COMBINATIONS["benchlab"])
    assert agent(bl)["securityContext"]["privileged"] is True
    dev = next(v for v in pod_spec(bl)["volumes"] if v["name"] == "benchlab")
    assert dev["hostPath"] == {"path": "/dev/ttyACM0", "type": "CharDevice"}
    pr = render(COMBINATIONS["pod resources"])
    mount = next(m for m in agent(pr)["volumeMounts"] if m["name"] == "pod-resources")
    assert mount == {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources",
                     "readOnly": True}
    assert agent(pr)["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(render(COMBINATIONS["nvidia runtime class"]))["runtimeClassName"] == \
        "nvidia"


def test_by_default_it_runs_on_nvidia_gpu_nodes_and_tolerates_their_taint():
    spec = pod_spec(render())
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == \
        "nvidia.com/gpu.present"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        spec["tolerations"]
    env = {e["name"]: e for e in agent(render())["env"]}
    assert env["K8S_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "k8s.node.name=$(K8S_NODE_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert "k8s.pod.uid=$(K8S_POD_UID)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]


def test_shared_storage_renders_the_retention_cronjob_and_host_storage_does_not():
    shared = render(COMBINATIONS["shared storage"])
    (job,) = by_kind(shared, "CronJob")
    claim = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]
    (pvc,) = by_kind(shared, "PersistentVolumeClaim")
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "retention" in job["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert _agent_config(shared).retention_interval_h == 0  # the CronJob does it
    host = render()
    assert not by_kind(host, "CronJob") and _agent_config(host).retention_interval_h == 6


def test_upload_values_reach_the_agents_config_and_credentials():
    docs = render(COMBINATIONS["upload with a secret and store expiry"])
    cfg = _agent_config(docs)
    assert (cfg.upload.uri, cfg.upload.endpoint) == ("s3://fleet/benchlab",
                                                     "http://minio.storage:9000")
    assert agent(docs)["envFrom"] == [{"secretRef": {"name": "benchlab-s3"}}]
    assert _agent_config(render()).upload.uri == ""  # off by default
    assert "envFrom" not in agent(render())


def test_a_cloud_identity_is_the_service_accounts_annotation_and_no_secret():
    docs = render(COMBINATIONS["upload with a cloud identity"])
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith(
        "benchlab@")
    assert pod_spec(docs)["serviceAccountName"] == sa["metadata"]["name"]
    assert "envFrom" not in agent(docs) and not by_kind(docs, "CronJob")


def test_store_expiry_is_a_cronjob_of_the_retention_command_with_its_dry_run():
    docs = render(COMBINATIONS["upload with a secret and store expiry"])
    (job,) = by_kind(docs, "CronJob")  # host storage: no volume retention job
    spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["retention", "--store", "s3://fleet/benchlab", "--days",
                                 "90", "--endpoint", "http://minio.storage:9000",
                                 "--dry-run"]
    assert container["envFrom"] == [{"secretRef": {"name": "benchlab-s3"}}]
    assert "volumes" not in spec
    from otel_benchlab.cli import command_parser

    args = command_parser("retention").parse_args(container["args"][1:])
    assert args.store == "s3://fleet/benchlab" and args.dry_run and args.days == 90


def _agent_config(docs: list[dict], tmp: Path | None = None):
    cm = next(d for d in by_kind(docs, "ConfigMap") if "agent.toml" in d["data"])
    text = cm["data"]["agent.toml"]
    tomllib.loads(text)
    path = Path(f"/tmp/otel-benchlab-chart-{abs(hash(text))}.toml")
    path.write_text(text)
    try:
        return load_config(str(path), env={})
    finally:
        path.unlink()


def test_the_agent_config_from_values_is_one_the_agent_accepts():
    cfg = _agent_config(render({"intake": {"spanStages": ["infer"]},
                                "hardware": {"sysfs": {"enabled": True}}}))
    assert cfg.data_root == "/var/lib/otel-benchlab" and cfg.host.sysfs_root == "/host/sys"
    assert cfg.host.rapl and cfg.intake.otlp_grpc == "0.0.0.0:4317"
    assert cfg.intake.span_stages == ["infer"] and cfg.probe.listen == "udp://0.0.0.0:4797"
    assert cfg.traces.sample_ratio == 0.1


def test_the_intake_is_node_local_and_metrics_headless():
    docs = render()
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert services["obl-otel-benchlab"]["spec"]["clusterIP"] == "None"
    node = services["obl-otel-benchlab-node"]["spec"]
    assert node["internalTrafficPolicy"] == "Local"
    assert {(p["port"], p["protocol"]) for p in node["ports"]} == {
        (4317, "TCP"), (4318, "TCP"), (4797, "UDP")}
    assert "obl-otel-benchlab-node" not in {s["metadata"]["name"] for s in
                                            by_kind(render(COMBINATIONS["no intake"]),
                                                    "Service")}


def test_the_dashboard_is_loaded_by_the_grafana_sidecar_label():
    (cm,) = [d for d in by_kind(render(), "ConfigMap") if d["metadata"]["name"].endswith(
        "dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert '"uid": "otel-benchlab"' in cm["data"]["otel-benchlab.json"]


def test_the_helm_test_hook_checks_metrics_with_the_agents_image():
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render({}, name="obl", namespace="ns")
    (pod,) = yaml.safe_load_all(out["otel-benchlab/templates/tests/test-metrics.yaml"])
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["image"] == agent(render())["image"]
    assert "/metrics" in pod["spec"]["containers"][0]["args"][0]


def test_the_plain_manifests_are_the_chart_rendered_with_its_defaults():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "render_k8s.py"), "--check"])
    assert proc.returncode == 0, "k8s/otel-benchlab.yaml is stale: run scripts/render_k8s.py"


def test_llm_serving_values_reach_the_agents_config():
    """docs/llm-serving.md's values: vLLM's spans measured by phase, and the GPU shared
    by the LLM phases alone."""
    cfg = _agent_config(render({"config": {
        "genai": {"spans": ["llm_request"], "decode_weight": 1.5},
        "attribution": {"sources": {"gpu0": ["scheduled->first_token",
                                             "first_token->finished"]}}}}))
    assert cfg.genai.spans == ["llm_request"] and cfg.genai.decode_weight == 1.5
    assert cfg.intake.otlp_grpc == "0.0.0.0:4317"
    assert cfg.attribution.sources["gpu0"] == ["scheduled->first_token",
                                               "first_token->finished"]
