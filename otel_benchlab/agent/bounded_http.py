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
  A connection whose whole request head is already in the kernel's buffer counts as being
  answered, even before its thread has run, and one that has sent nothing yet may be
  closed only after ``SILENT_GRACE_S``: a burst of 200 scrapes on a loaded machine is
  queued, never cut. When no held connection may be closed, the next one waits in the
  listen backlog until one is done.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
SILENT_GRACE_S = 1.0
_PEEK_BYTES = 65536
_HEAD_END = b"\r\n\r\n"


def _unread(sock: socket.socket) -> bytes | None:
    """What waits unread in ``sock`` (``b""``: the client closed), None when nothing.
    Never waits: ``recv`` on a socket with a timeout would wait for data first."""
    ready = select.poll()  # not select(): descriptors pass 1024 under a flood
    ready.register(sock, select.POLLIN)
    if not ready.poll(0):
        return None
    try:
        return sock.recv(_PEEK_BYTES, socket.MSG_PEEK)
    except OSError:
        return b""  # reset: its thread finds out at once, no room is won by closing it


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
        self._freed = threading.Condition(self._lock)
        # Connections still waiting for their request head, oldest first, with the
        # monotonic time they began to wait; those known to have sent part of a head; and
        # the number of connections held in all.
        self._waiting: dict[socket.socket, float] = {}
        self._partial: set[socket.socket] = set()
        self._held = 0
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._lock:
            # Bounded, so that a stuck answer cannot stop the accept loop for good.
            for _ in range(int(self.read_timeout_s / 0.05) + 1):
                if self._held < self.max_connections or self._close_one_idle():
                    break
                self._freed.wait(0.05)
            self._held += 1
            self._waiting[request] = time.monotonic()
        request.settimeout(self.read_timeout_s)
        super().process_request(request, client_address)

    def _may_close(self, sock: socket.socket, now: float) -> bool:
        unread = _unread(sock)
        if unread is None:  # all read by its thread, or nothing sent yet
            return sock in self._partial or now - self._waiting[sock] >= SILENT_GRACE_S
        return bool(unread) and _HEAD_END not in unread

    def _close_one_idle(self) -> bool:
        now = time.monotonic()
        for idle in self._waiting:
            if self._may_close(idle, now):
                del self._waiting[idle]
                self._partial.discard(idle)
                # Wakes the thread blocked reading it; that thread closes it.
                with contextlib.suppress(OSError):
                    idle.shutdown(socket.SHUT_RDWR)
                return True
        return False

    def request_head_read(self, request: socket.socket) -> None:
        """The request line and headers are in: the connection is being served now."""
        with self._lock:
            self._waiting.pop(request, None)
            self._partial.discard(request)

    def head_begun(self, request: socket.socket) -> None:
        """Part of a head has come, its thread reads on: it may be closed for room."""
        with self._lock:
            if request in self._waiting:
                self._partial.add(request)

    def waiting_again(self, request: socket.socket) -> None:
        """A kept-alive connection waits for its next request: it may be closed for room."""
        with self._lock:
            self._waiting[request] = time.monotonic()

    def shutdown_request(self, request: socket.socket) -> None:
        with self._lock:
            self._waiting.pop(request, None)
            self._partial.discard(request)
            self._held -= 1
            self._freed.notify()
        super().shutdown_request(request)


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A handler for ``BoundedHTTPServer``: its reads time out, and the server is told when
    the request head is in (from then on the connection is not closed to make room)."""

    server: BoundedHTTPServer
    # Unbuffered reads: a request is either still in the kernel's buffer, where the server
    # can see it, or being read by this thread, never parked in a buffer in between.
    rbufsize = 0

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
            # Waits for the first bytes, and says the connection is being answered as soon
            # as its whole head is in, before this thread reads any of it.
            ready = select.poll()
            ready.register(self.request, select.POLLIN)
            if not ready.poll(self.request.gettimeout() * 1e3):
                raise TimeoutError
            unread = _unread(self.request)
            if unread is not None and unread and _HEAD_END not in unread:
                self.server.head_begun(self.request)
            else:
                self.server.request_head_read(self.request)
            super().handle_one_request()
        except OSError:  # timed out, or closed to make room: nothing to answer
            self.close_connection = True

    def read_body(self, length: int) -> bytes:
        """``length`` bytes of the body, fewer only if the client closed (reads are
        unbuffered, so one read may return part of it)."""
        parts: list[bytes] = []
        while length > 0 and (part := self.rfile.read(length)):
            parts.append(part)
            length -= len(part)
        return b"".join(parts)

    def log_message(self, *args: object) -> None:
        pass
