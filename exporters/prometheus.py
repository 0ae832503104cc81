"""Prometheus ``/metrics`` through the OpenTelemetry Prometheus exporter.

The reader gets its own registry (no process-global state) and the HTTP server serves only
that registry. Names come from the exporter's translation (``hw.power`` in W ->
``hw_power_watts``); nothing is hand-named here.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


class PrometheusEndpoint:
    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self.host, self.port = host, port
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, self.host,
                                                           registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve Prometheus metrics on {self.host}:{self.port}: {exc}; "
                          "choose another with --prom-bind HOST:PORT or BENCHLAB_PROM") from exc

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
