"""Real servers for end-to-end tests: an OTLP/gRPC collector built from the official
opentelemetry-proto service definitions, and Debian's Prometheus."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer,
                    metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trace_requests: list = []
        self.metric_requests: list = []
        self.metadata: list[dict] = []
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        with self.lock:
            self.metadata.append(dict(context.invocation_metadata()))
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.trace_requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metric_requests.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    def start(self) -> OtlpCollector:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=1)

    def spans(self) -> list[tuple[object, object]]:
        """(resource, span) pairs of everything received."""
        out = []
        for req in self.trace_requests:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out += [(rs.resource, sp) for sp in ss.spans]
        return out

    def metrics(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for req in self.metric_requests:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out.setdefault(m.name, []).append(m)
        return out


class OtlpHttpCollector(OtlpCollector):
    """OTLP/HTTP with protobuf bodies (``/v1/traces``, ``/v1/metrics``), gzip or not, as
    the specification defines it; requests parsed with opentelemetry-proto's messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trace_requests, self.metric_requests, self.metadata = [], [], []
        self.paths: list[str] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                kind = {"/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
                        "/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest}
                msg = kind.get(self.path)
                if msg is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                request = msg.FromString(body)
                with collector.lock:
                    collector.paths.append(self.path)
                    collector.metadata.append({k.lower(): v for k, v in self.headers.items()})
                    (collector.trace_requests if self.path == "/v1/traces" else
                     collector.metric_requests).append(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def start(self) -> OtlpHttpCollector:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class BlackHole:
    """Accepts TCP connections and never answers: a collector that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()

    def start(self) -> BlackHole:
        def accept() -> None:
            self.sock.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    self.conns.append(self.sock.accept()[0])
                except OSError:
                    continue
        threading.Thread(target=accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


class _ServerProcess:
    """A server binary run for a test, its stderr in ``workdir/LOG``."""

    LOG = "server.log"
    workdir: Path
    proc: subprocess.Popen | None = None
    log = None

    def _run(self, args: list[str], ready_url: str, what: str) -> None:
        self.log = open(self.workdir / self.LOG, "w")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(ready_url, timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{what} did not become ready: "
                           + (self.workdir / self.LOG).read_text()[-2000:])

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.log:
            self.log.close()


class Prometheus(_ServerProcess):
    LOG = "prometheus.log"

    def __init__(self, workdir: Path, target: str, interval_s: float = 1.0,
                 remote_write: str | None = None) -> None:
        self.binary = shutil.which("prometheus")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {int(interval_s * 1000)}ms\n"
            f"scrape_configs:\n  - job_name: otel-benchlab\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
            + (f"remote_write:\n  - url: '{remote_write}'\n"
               "    queue_config: {batch_send_deadline: 1s}\n" if remote_write else ""))

    def start(self) -> Prometheus:
        self._run([self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
                   f"--storage.tsdb.path={self.workdir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}"],
                  f"http://127.0.0.1:{self.port}/-/ready", "Prometheus")
        return self

    def query(self, promql: str, at: float | None = None) -> list:
        """An instant query, at ``at`` (Unix seconds) or now."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(params)
        body = json.load(urllib.request.urlopen(url, timeout=5))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def targets(self) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/targets"
        return [(t["health"], t["lastError"]) for t in
                json.load(urllib.request.urlopen(url, timeout=5))["data"]["activeTargets"]]


class InfluxDB(_ServerProcess):
    """Debian's InfluxDB 1.x (``influxd``) with its data in ``workdir``, HTTP on loopback."""

    LOG = "influxd.log"

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("influxd")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "influxdb.conf").write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
            f'  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n')

    def start(self) -> InfluxDB:
        self._run([self.binary, "-config", str(self.workdir / "influxdb.conf")],
                  f"http://127.0.0.1:{self.port}/ping", "InfluxDB")
        return self

    def query(self, influxql: str, db: str = "") -> list[dict]:
        """The series an InfluxQL statement returns (POST, as writes and DDL need)."""
        data = urllib.parse.urlencode({"q": influxql, **({"db": db} if db else {})}).encode()
        body = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/query", data=data, timeout=10))
        result = body["results"][0]
        assert "error" not in result, result
        return result.get("series", [])
