"""GPU-to-pod attribution from the kubelet's PodResources API (v1 ``List``, gRPC over the
unix socket ``/var/lib/kubelet/pod-resources/kubelet.sock``).

The device plugins name their devices by id: NVIDIA's by GPU UUID (``GPU-...``) or MIG
UUID (``MIG-...``). Refreshed every ``refresh_s``; ``owner(hw_id)`` gives
``k8s.namespace.name``, ``k8s.pod.name``, ``k8s.container.name`` of the container that
holds a device, which the agent adds to that GPU's metrics. No socket (not in a cluster,
or the chart's ``hardware.podResources`` off): one info line, no pod attributes.
Stubs: ``scripts/gen_podresources.sh`` from ``proto/k8s/podresources/v1/api.proto``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from otel_benchlab.components import BuildContext, Built, Component

if TYPE_CHECKING:
    from otel_benchlab.config import Config

from ._gen import api_pb2, api_pb2_grpc


@dataclass
class KubernetesConfig:
    # The kubelet's PodResources socket: which pod holds which GPU. Absent: no attribution.
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    # how often GPU-to-pod attribution is refreshed
    pod_resources_refresh_s: float = 30.0


log = logging.getLogger("otel_benchlab")


def list_owners(socket_path: str, timeout_s: float = 5.0) -> dict[str, dict[str, str]]:
    """device id -> the pod attributes of the container holding it."""
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        response = stub.List(api_pb2.ListPodResourcesRequest(), timeout=timeout_s)
    owners: dict[str, dict[str, str]] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            for dev in container.devices:
                for device_id in dev.device_ids:
                    owners[device_id] = {"k8s.namespace.name": pod.namespace,
                                         "k8s.pod.name": pod.name,
                                         "k8s.container.name": container.name}
    return owners


class PodResources:
    """Polls the kubelet; ``owner`` is called from the metric readers' threads."""

    name = "podresources"

    def __init__(self, socket_path: str, refresh_s: float) -> None:
        self.socket_path = socket_path
        self.refresh_s = refresh_s
        self._owners: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def owner(self, hw_id: str) -> dict[str, str]:
        return self._owners.get(hw_id, {})

    def devices_of(self, namespace: str, pod: str) -> list[str]:
        """The device ids (GPU and MIG UUIDs) the pod's containers hold."""
        return sorted(d for d, o in self._owners.items()
                      if o["k8s.namespace.name"] == namespace and o["k8s.pod.name"] == pod)

    def refresh(self) -> None:
        try:
            owners = list_owners(self.socket_path)
        except grpc.RpcError as exc:
            if not self._failing:
                log.warning("kubelet PodResources at %s did not answer (%s); GPU metrics "
                            "keep their last pod attributes; tried again every %.0f s",
                            self.socket_path, exc.code(), self.refresh_s)
            self._failing = True
            return
        if self._failing:
            log.info("kubelet PodResources answers again")
        self._failing = False
        self._owners = owners  # one reference swap: readers see the old map or the new

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="podresources", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def build(cfg: Config, ctx: BuildContext) -> Built:
    path = cfg.kubernetes.pod_resources_socket
    if not os.path.exists(path):
        log.info("no kubelet PodResources socket at %s: GPU metrics carry no pod attributes "
                 "(in Kubernetes, the chart's hardware.podResources.enabled mounts it)", path)
        return Built()
    pr = PodResources(path, cfg.kubernetes.pod_resources_refresh_s)
    pr.start()
    ctx.shared["podresources"] = pr
    return Built(attributions=[pr.owner], cleanups=[pr.stop])


COMPONENT = Component("podresources", "kubernetes",
                      lambda cfg: bool(cfg.kubernetes.pod_resources_socket), build,
                      settings=KubernetesConfig,
                      ranges={"pod_resources_refresh_s": (0, 86400)})
