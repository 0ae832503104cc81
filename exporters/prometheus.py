"""Prometheus ``/metrics`` through the OpenTelemetry Prometheus exporter.

The reader gets its own registry (no process-global state) and the HTTP server serves only
that registry. Names come from the exporter's translation (``hw.power`` in W ->
``hw_power_watts``); nothing is hand-named here.

A scrape is cheap however many come at once: the exposition is rendered at most once per
``max_age_s`` for each format, and concurrent scrapes wait for that one rendering and get
the same bytes (rendering runs every callback of the OpenTelemetry pipeline and formats
every series; 200 scrapes at once each took seconds when each rendered its own).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from otel_benchlab.agent.bounded_http import BoundedHTTPServer, BoundedRequestHandler
from otel_benchlab.components import Component
from otel_benchlab.settings import parse_bind


@dataclass
class PrometheusConfig:
    bind: str = "127.0.0.1:9109"  # "" or "off" disables the endpoint


log = logging.getLogger(__name__)


class RenderedExposition:
    """The encoded exposition per (format, gzip), rendered at most once per ``max_age_s``."""

    def __init__(self, registry: CollectorRegistry, max_age_s: float = 1.0) -> None:
        self.registry = registry
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bool], tuple[float, bytes]] = {}
        self.renders = 0

    def get(self, accept: str, accept_encoding: str) -> tuple[str, bool, bytes]:
        encoder, content_type = choose_encoder(accept)
        zipped = gzip_accepted(accept_encoding)
        key = (content_type, zipped)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or time.monotonic() - hit[0] >= self.max_age_s:
                body = encoder(self.registry)
                hit = (time.monotonic(), gzip.compress(body, 1) if zipped else body)
                self._cache[key] = hit
                self.renders += 1
        return content_type, zipped, hit[1]


class PrometheusEndpoint:
    def __init__(self, host: str, port: int, max_age_s: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self.exposition = RenderedExposition(self.registry, max_age_s)
        self.host, self.port = host, port
        self._server: BoundedHTTPServer | None = None
        # Other pages served on this port (the live page): path -> (query -> (content
        # type, body)). Without one, / answers as /metrics.
        self.routes: dict[str, Callable[[str], tuple[str, bytes]]] = {}

    def start(self) -> None:
        exposition = self.exposition
        routes = self.routes

        class Handler(BoundedRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path, _, query = self.path.partition("?")
                if path in routes:
                    self._route(routes[path], query)
                    return
                if path not in ("/metrics", "/"):
                    self.send_error(404, "served here: /metrics" + "".join(
                        f", {p}" for p in routes))
                    return
                try:
                    ctype, zipped, body = exposition.get(self.headers.get("Accept", ""),
                                                         self.headers.get("Accept-Encoding",
                                                                          ""))
                except Exception as exc:  # a broken callback must not kill the endpoint
                    log.error("rendering /metrics failed: %s", exc)
                    self.send_error(500, "rendering the metrics failed")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if zipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, page: Callable[[str], tuple[str, bytes]], query: str) -> None:
                try:
                    ctype, body = page(query)
                except Exception as exc:  # a page's fault must not touch /metrics
                    log.error("serving %s failed: %s", self.path, exc)
                    self.send_error(500, "this page failed; /metrics is unaffected")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            self._server = BoundedHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise OSError(f"cannot serve Prometheus metrics on {self.host}:{self.port}: {exc}; "
                          "choose another with --prom-bind HOST:PORT or BENCHLAB_PROM") from exc
        threading.Thread(target=self._server.serve_forever, name="prometheus-http",
                         daemon=True).start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def validate(prometheus: PrometheusConfig) -> None:
    parse_bind(prometheus.bind)


# Settings only: the runtime serves /metrics itself (telemetry.py).
COMPONENT = Component("prometheus", "prometheus", settings=PrometheusConfig,
                      env={"BENCHLAB_PROM": "bind"}, validate=validate)
