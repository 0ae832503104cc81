"""An HTTP server for the agent's ports that a slow or idle client cannot exhaust.

``http.server.ThreadingHTTPServer`` starts a thread for every connection and lets it wait
for its request forever: 3,000 connections that send half a request made 3,000 threads that
never went away. In Kubernetes the Prometheus port listens on the pod network, so this is
bounded here, for every port the agent serves over HTTP (``/metrics``, OTLP/HTTP):

- every read of a request has ``read_timeout_s`` (a client that sends nothing for that long
  is closed); a kept-alive connection (HTTP/1.1, as OTLP/HTTP exporters use) may wait
  ``idle_timeout_s`` for its next request, longer than an SDK's 5 s batch delay, so the
  client does not race the server's close;
- at most ``max_connections`` are served at once. A connection beyond that does not wait
  behind the idle ones: the oldest connection still waiting for its request head is closed
  to make room (a connection being answered is never closed), so a scrape that sends its
  request at once is answered however many idle connections were opened before it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of scrapes waits in the backlog, is not refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS,
                 read_timeout_s: float = READ_TIMEOUT_S,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        # Connections still waiting for their request head, oldest first; and the number
        # of connections held in all.
        self._waiting: dict[socket.socket, None] = {}
        self._held = 0
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._lock:
            if self._held >= self.max_connections and self._waiting:
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
                # Wakes the thread blocked reading it; that thread closes it.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            self._held += 1
            self._waiting[request] = None
        request.settimeout(self.read_timeout_s)
        super().process_request(request, client_address)

    def request_head_read(self, request: socket.socket) -> None:
        """The handler has its request line and headers: it is being served now."""
        with self._lock:
            self._waiting.pop(request, None)

    def waiting_again(self, request: socket.socket) -> None:
        """A kept-alive connection waits for its next request: it may be closed for room."""
        with self._lock:
            self._waiting[request] = None

    def shutdown_request(self, request: socket.socket) -> None:
        with self._lock:
            self._waiting.pop(request, None)
            self._held -= 1
        super().shutdown_request(request)


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A handler for ``BoundedHTTPServer``: its reads time out, and the server is told when
    the request head is in (from then on the connection is not closed to make room)."""

    server: BoundedHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s
        super().setup()

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:  # kept alive: wait for the next request
            self.server.waiting_again(self.request)
            self.request.settimeout(self.server.idle_timeout_s)
            self.handle_one_request()

    def parse_request(self) -> bool:
        self.request.settimeout(self.server.read_timeout_s)  # the headers and the body
        ok = super().parse_request()
        self.server.request_head_read(self.request)
        return ok

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # timed out, or closed to make room: nothing to answer
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass
