"""The agent's HTTP ports under idle connections: 3,000 clients that send half a request
and wait cost a bounded number of threads and memory, are closed, and a scrape (or an
OTLP/HTTP export) that comes after them is answered at once."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from otel_benchlab.agent.bounded_http import (
    MAX_CONNECTIONS,
    READ_TIMEOUT_S,
    SILENT_GRACE_S,
    BoundedHTTPServer,
    BoundedRequestHandler,
)

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e

IDLE = 3000


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _open_idle(port: int, head: bytes, n: int = IDLE) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(head)  # half a request: no blank line ends the headers
        socks.append(s)
    return socks


def _closed_by_peer(socks: list[socket.socket]) -> int:
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(64) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return closed


@pytest.fixture
def agent(tmp_path):
    prom, intake = free_port(), free_port()
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp_path), "--prom-bind",
                  f"127.0.0.1:{prom}", "--otlp-http-listen", f"127.0.0.1:{intake}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(proc)
    yield proc, prom, intake
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


def test_idle_connections_to_metrics_do_not_hold_threads_or_stop_scrapes(agent):
    proc, prom, _ = agent
    time.sleep(1.0)
    threads, rss_kb = _status(proc.pid, "Threads"), _status(proc.pid, "VmRSS")
    socks = _open_idle(prom, b"GET /metrics HTTP/1.1\r\nHost: agent\r\n")
    time.sleep(0.5)
    assert _status(proc.pid, "Threads") <= threads + MAX_CONNECTIONS + 2
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=10) as answer:
        body = answer.read()
    assert time.monotonic() - t0 < 1.0
    assert b"benchlab_agent_queue_depth" in body
    time.sleep(READ_TIMEOUT_S + 1.5)
    assert _closed_by_peer(socks) == len(socks)
    assert _status(proc.pid, "Threads") <= threads + 2
    assert _status(proc.pid, "VmRSS") - rss_kb < 30_000


def test_idle_connections_to_the_otlp_http_intake_do_not_stop_an_export(agent):
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    proc, _, intake = agent
    time.sleep(1.0)
    threads = _status(proc.pid, "Threads")
    # The same server as /metrics (bounded the same way); fewer, to keep the suite short.
    socks = _open_idle(intake, b"POST /v1/traces HTTP/1.1\r\nContent-Type: applic", 600)
    time.sleep(0.5)
    assert _status(proc.pid, "Threads") <= threads + MAX_CONNECTIONS + 2
    t0 = time.monotonic()
    request = urllib.request.Request(
        f"http://127.0.0.1:{intake}/v1/traces",
        data=trace_service_pb2.ExportTraceServiceRequest().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    assert time.monotonic() - t0 < 1.0
    time.sleep(READ_TIMEOUT_S + 1.5)
    assert _closed_by_peer(socks) == len(socks)


class _SlowToStartHandler(BoundedRequestHandler):
    """Stands for a loaded machine: each connection's thread runs 0.3 s after its accept."""

    def setup(self) -> None:
        time.sleep(0.3)
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def small_server():
    server = BoundedHTTPServer(("127.0.0.1", 0), _SlowToStartHandler, max_connections=4)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _answered(port: int, n: int) -> int:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    ok = sum(s.makefile("rb").read().startswith(b"HTTP/1.0 200") for s in socks)
    for s in socks:
        s.close()
    return ok


def test_a_burst_of_whole_requests_beyond_the_bound_is_queued_not_cut(small_server):
    assert _answered(small_server, 20) == 20


def test_a_connection_that_has_sent_nothing_yet_is_not_cut_at_once(small_server):
    silent = [socket.create_connection(("127.0.0.1", small_server)) for _ in range(4)]
    t0 = time.monotonic()
    assert _answered(small_server, 1) == 1
    assert time.monotonic() - t0 >= SILENT_GRACE_S
    assert _closed_by_peer(silent) == 1  # room for one was needed
