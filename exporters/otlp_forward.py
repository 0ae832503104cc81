"""Forwarding what the OTLP intake received to the agent's own upstream, as a node-local
collector would: traces, metrics and logs, each over the exporter the SDK's variables
choose for that signal (endpoint, protocol, headers, TLS, compression, timeout, retry).

Requests wait in one bounded queue (``[intake] forward_queue`` requests) and are sent in
order by one thread; a full queue or a failed send drops the request, counted in
``benchlab.agent.forward.dropped{signal,reason}`` (``queue_full``, ``export_failed``,
``no_upstream``) and said once. The SDK's OTLP exporters are used with the request already
built: gRPC through the exporter's own ``_export`` (its retry and channel handling), HTTP
through its client.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any

from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.otlp import OtlpConfig

from .otlp import SignalPlan, plan_signal, sdk_exporter_class

log = logging.getLogger("otel_benchlab")

FORWARD_SIGNALS = ("traces", "metrics", "logs")


def _forwarder(plan: SignalPlan) -> Any:
    """The SDK's exporter for ``plan``, taught to send a request as it was received: over
    gRPC through its own ``_export`` (retry, channel handling), over HTTP through its
    client."""
    base = sdk_exporter_class(plan.protocol, plan.signal)
    if plan.protocol == "grpc":
        class Forwarder(base):  # type: ignore[misc, valid-type]
            def _translate_data(self, data: Any) -> Any:
                return data  # already an Export*ServiceRequest

            def _count_data(self, data: Any) -> int:
                return 1

            def send(self, request: Any) -> bool:
                return getattr(self._export(request), "name", "") == "SUCCESS"
    else:
        class Forwarder(base):  # type: ignore[misc, valid-type, no-redef]
            def send(self, request: Any) -> bool:
                return bool(self._client.export(request.SerializeToString()).success)

    return Forwarder(endpoint=plan.endpoint, timeout=plan.timeout_s)


class OtlpForwarder:
    """``forward(signal, request)`` from any thread; never blocks."""

    name = "OTLP forwarder"

    def __init__(self, cfg: OtlpConfig, counters: AgentCounters, env: Mapping[str, str],
                 max_requests: int) -> None:
        self.counters = counters
        self.plans = {s: plan_signal(s, cfg, env) for s in FORWARD_SIGNALS}
        self._exporters: dict[str, Any] = {}
        self.endpoints: dict[str, str] = {}
        for signal, plan in self.plans.items():
            for reason in ("queue_full", "export_failed", "no_upstream"):
                counters.declare("forward.dropped", signal=signal, reason=reason)
            counters.declare("forward.sent", signal=signal)
            if not plan.otlp:
                continue
            exp = _forwarder(plan)
            self._exporters[signal] = exp
            self.endpoints[signal] = str(getattr(exp, "_endpoint", plan.endpoint))
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(max_requests)
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-forward", daemon=True)
        self._thread.start()

    def takes(self, signal: str) -> bool:
        """Whether ``signal`` goes upstream (its OTLP exporter is on)."""
        return signal in self._exporters

    def forward(self, signal: str, request: Any) -> bool:
        """False only when the queue is full (the intake answers 'retry later')."""
        if signal not in self._exporters:
            self.counters.add("forward.dropped", 1, f"the intake received {signal} but the "
                              f"agent exports no {signal} over OTLP (OTEL_{signal.upper()}"
                              "_EXPORTER); they are not forwarded", signal=signal,
                              reason="no_upstream")
            return True
        try:
            self._queue.put_nowait((signal, request))
            return True
        except queue.Full:
            self.counters.add("forward.dropped", 1, "upstream is slower than the "
                              "applications sending to the intake; requests are dropped "
                              "(raise [intake] forward_queue or check the collector)",
                              signal=signal, reason="queue_full")
            return False

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                signal, request = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                ok = self._exporters[signal].send(request)
            except Exception as exc:  # a bug or a transport error must not end the thread
                log.debug("forwarding %s failed: %s", signal, exc)
                ok = False
            if ok:
                self.counters.add("forward.sent", 1, signal=signal)
            else:
                self.counters.add("forward.dropped", 1, f"forwarding {signal} to "
                                  f"{self.endpoints.get(signal)} failed; check that the "
                                  "collector listens there", signal=signal,
                                  reason="export_failed")

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Send what is queued within ``timeout_s``, then stop; the rest is counted."""
        self._closing.set()
        self._thread.join(timeout_s)
        self._abort.set()
        left = 0
        while True:
            try:
                signal, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
            self.counters.add("forward.dropped", 1, signal=signal, reason="export_failed")
        for exp in self._exporters.values():
            try:
                exp.shutdown()
            except Exception as exc:
                log.debug("closing a forwarder: %s", exc)
        if left:
            log.warning("%d OTLP requests from the intake were not forwarded at exit "
                        "(counted in benchlab.agent.forward.dropped)", left)
