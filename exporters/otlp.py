"""Push exporters for traces and metrics, chosen the way the OpenTelemetry SDK defines it.

``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` pick the exporters (``otlp``,
``console``, ``none``; ``prometheus`` for metrics is the pull endpoint, configured with
``prometheus.bind``), ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` over
``OTEL_EXPORTER_OTLP_PROTOCOL`` picks gRPC or HTTP per signal, and ``OTEL_SDK_DISABLED``
turns every OpenTelemetry signal off. Endpoints, headers, compression, certificates and
``insecure`` are left to the exporters, which read the generic and per-signal variables
themselves: an endpoint is passed only when the TOML file sets one and no variable does
(variables beat the file, as everywhere in the agent). Timeouts are read here, in
milliseconds as the specification says (the Python exporters would read seconds).

The SDK's batch span processor and periodic metric reader call the exporters from their
own threads, so a down or slow endpoint never blocks the agent. A failed export is counted
(``benchlab.agent.export.failures``, ``...export.dropped``) and logged once with the
endpoint and what to check.
"""

from __future__ import annotations

import importlib
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_benchlab.components import Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.settings import ConfigError, setting_error


@dataclass
class OtlpConfig:
    # Exporters per signal ("otlp", "console", "none"); OTEL_TRACES_EXPORTER and
    # OTEL_METRICS_EXPORTER override them. The OTLP variables (per-signal endpoints, headers,
    # protocol, timeouts) override the keys below; see exporters/otlp.py.
    traces_exporter: list[str] = field(default_factory=lambda: ["otlp"])
    # otlp, console or none (OTEL_METRICS_EXPORTER)
    metrics_exporter: list[str] = field(default_factory=lambda: ["otlp"])
    endpoint: str = ""  # "" = the exporters' own default (or the OTEL_* variables)
    protocol: str = ""  # "grpc" or "http/protobuf"; "" = grpc
    timeout_s: float = 5.0  # per export attempt
    # metric export period (OTEL_METRIC_EXPORT_INTERVAL, ms)
    metric_interval_s: float = 60.0
    # At exit, how long undelivered telemetry may hold the agent up (a dead collector).
    flush_timeout_s: float = 2.0


SIGNALS = ("traces", "metrics")
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTERS = {"traces": ("otlp", "console", "none"),
             "metrics": ("otlp", "console", "prometheus", "none"),
             "logs": ("otlp", "console", "none")}  # logs: only forwarded from the intake


def sdk_disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


@dataclass(frozen=True)
class SignalPlan:
    """How one signal is pushed: which exporters, and for OTLP the protocol, the endpoint
    to pass (None: the exporter reads the variables or its default) and the timeout."""

    signal: str
    exporters: tuple[str, ...]
    protocol: str
    endpoint: str | None
    timeout_s: float

    @property
    def otlp(self) -> bool:
        return "otlp" in self.exporters


def _env(env: Mapping[str, str], signal: str, name: str) -> tuple[str, str] | None:
    """(variable, value) of the per-signal variable, else the generic one, if set."""
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = env.get(var, "").strip()
        if value:
            return var, value
    return None


def plan_signal(signal: str, cfg: OtlpConfig, env: Mapping[str, str]) -> SignalPlan:
    var = f"OTEL_{signal.upper()}_EXPORTER"
    if sdk_disabled(env):
        names: tuple[str, ...] = ()
    else:
        raw = env.get(var, "").strip().lower()
        where = f"environment variable {var}" if raw else f"setting 'otlp.{signal}_exporter'"
        chosen = [n.strip() for n in raw.split(",")] if raw else list(
            getattr(cfg, f"{signal}_exporter", ["otlp"]))
        for n in chosen:
            if n not in EXPORTERS[signal]:
                raise ConfigError(f"{where}: {n!r} is not supported; use a comma list of "
                                  + ", ".join(EXPORTERS[signal]))
        names = tuple(n for n in chosen if n not in ("none", "prometheus", ""))
    found = _env(env, signal, "PROTOCOL")
    protocol = found[1] if found else (cfg.protocol or "grpc")
    if protocol not in PROTOCOLS:
        where = f"environment variable {found[0]}" if found else "setting 'otlp.protocol'"
        raise ConfigError(f"{where}: {protocol!r} is not supported; use grpc or http/protobuf")
    endpoint = None
    if not _env(env, signal, "ENDPOINT") and cfg.endpoint:
        endpoint = cfg.endpoint.rstrip("/")
        if protocol == "http/protobuf":
            endpoint += f"/v1/{signal}"
    timeout_s = cfg.timeout_s
    found = _env(env, signal, "TIMEOUT")
    if found:
        try:
            timeout_s = float(found[1]) / 1000.0
        except ValueError:
            timeout_s = -1.0
        if not 0 < timeout_s < 3600:
            raise ConfigError(f"environment variable {found[0]}: {found[1]!r} is not a "
                              "timeout in milliseconds (example 5000)")
    return SignalPlan(signal, names, protocol, endpoint, timeout_s)


def _hint(endpoint: str) -> str:
    return (f"OTLP export to {endpoint} failed; check that a collector listens there "
            "(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL) or set "
            "OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none to turn OTLP off; the "
            "data is still in Parquet")


def endpoint_refuses(endpoint: str, timeout_s: float = 0.25) -> bool:
    """Whether nothing listens at an OTLP endpoint (``host:port`` or a URL): every address
    it resolves to refuses a TCP connection, or the name does not resolve. A connection
    that is accepted, or that neither connects nor is refused in ``timeout_s`` (a collector
    that hangs, a firewall that drops), is not a refusal."""
    url = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    try:
        port = url.port or (443 if url.scheme == "https" else 80 if url.scheme == "http"
                            else 4317)
        infos = socket.getaddrinfo(url.hostname or "localhost", port,
                                   type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return True
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.connect(address)
            except ConnectionRefusedError:
                continue
            except OSError:
                return False
            return False
    return True


def span_count(items: Sequence) -> int:
    """Spans in a batch of ``ReadableSpan``s and ``otel_traces.FrameSpans`` (a frame item
    holds several)."""
    return sum(getattr(item, "span_count", 1) for item in items)


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, counters: AgentCounters, endpoint: str) -> None:
        self.inner = inner
        self.counters = counters
        self.endpoint = endpoint

    @property
    def accepts_frame_items(self) -> bool:
        """Whether the inner exporter writes ``otel_traces.FrameSpans`` items itself."""
        return bool(getattr(self.inner, "accepts_frame_items", False))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter bug must not kill the SDK's worker thread
            result = SpanExportResult.FAILURE
        n = span_count(spans)
        if result is not SpanExportResult.SUCCESS:
            self.counters.add("export.failures", 1, _hint(self.endpoint), signal="traces")
            self.counters.add("export.dropped", n, signal="traces", reason="export_failed")
        else:
            self.counters.add("export.sent", n, signal="traces")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, counters: AgentCounters, endpoint: str) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.counters = counters
        self.endpoint = endpoint

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: object) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.counters.add("export.failures", 1, _hint(self.endpoint), signal="metrics")
        else:
            self.counters.add("export.sent", 1, signal="metrics")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis)


# The SDK's OTLP exporter class for (protocol, signal): module and class name. Imported
# only when used: each exporter's libraries cost memory.
SDK_EXPORTERS = {
    ("grpc", "traces"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                         "OTLPSpanExporter"),
    ("grpc", "metrics"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
                          "OTLPMetricExporter"),
    ("grpc", "logs"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter",
                       "OTLPLogExporter"),
    ("http/protobuf", "traces"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                                  "OTLPSpanExporter"),
    ("http/protobuf", "metrics"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter",
                                   "OTLPMetricExporter"),
    ("http/protobuf", "logs"): ("opentelemetry.exporter.otlp.proto.http._log_exporter",
                                "OTLPLogExporter"),
}


def sdk_exporter_class(protocol: str, signal: str) -> type:
    """The SDK's exporter for a signal over a protocol; the gRPC ones keep a batch's
    request across their retries (``_encode_once``), and gRPC spans are written by the
    wire-format writer (``span_wire``)."""
    module, name = SDK_EXPORTERS[(protocol, signal)]
    cls = getattr(importlib.import_module(module), name)
    if protocol != "grpc":
        return cls  # the HTTP exporters encode inside export(): left as they are
    return _encode_once(_wire_spans(cls) if signal == "traces" else cls)


TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class TraceBytesStub:
    """The trace service's ``Export`` for a request already in wire format (the writer's
    bytes go out as they are: no parse into the SDK's message and serialisation again,
    16 % of the encoding's CPU), or an SDK message where the writer gave up."""

    def __init__(self, channel) -> None:  # type: ignore[no-untyped-def]
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        self.Export = channel.unary_unary(
            TRACE_EXPORT, request_serializer=self.serialized,
            response_deserializer=ExportTraceServiceResponse.FromString)

    @staticmethod
    def serialized(request: object) -> bytes:
        return request if isinstance(request, bytes) else request.SerializeToString()


def _wire_spans(base: type) -> type:
    """Spans into their request by ``span_wire.SpanRequestWriter``: the same message as
    the SDK's encoder at about a sixth of its CPU (15-25 us a stage span against 120), sent
    as the bytes it wrote (``TraceBytesStub`` in place of the SDK's stub)."""
    from .span_wire import SpanRequestWriter

    class WireSpans(base):  # type: ignore[misc, valid-type]
        _writer: SpanRequestWriter | None = None
        accepts_frame_items = True  # otel_traces.FrameSpans: a frame's spans written whole

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            if not isinstance(self._client, TraceBytesStub):  # an SDK without the hook below
                self._client = TraceBytesStub(self._channel)

        def _initialize_channel_and_stub(self) -> None:
            # The SDK makes a new channel and stub when the collector was unavailable.
            super()._initialize_channel_and_stub()
            self._client = TraceBytesStub(self._channel)

        def _count_data(self, data):  # type: ignore[no-untyped-def]
            return span_count(data)  # the SDK's own count

        def _translate_data(self, data):  # type: ignore[no-untyped-def]
            if self._writer is None:
                self._writer = SpanRequestWriter()
            return self._writer.encoded(data)

    WireSpans.__name__ = base.__name__
    return WireSpans


def _otlp_exporter(plan: SignalPlan):
    return sdk_exporter_class(plan.protocol, plan.signal)(endpoint=plan.endpoint,
                                                          timeout=plan.timeout_s)


def _encode_once(base: type) -> type:
    """The SDK's gRPC exporters translate a batch into its request inside the retry loop,
    so a collector that is down costs one full encoding per retry (measured: the span
    thread at 5.0 % of a core against 1.8 % once the request is kept). The request of the
    batch being retried is kept and sent again."""

    class EncodeOnce(base):  # type: ignore[misc, valid-type]
        _last: tuple[object, object] = (None, None)

        def _translate_data(self, data):  # type: ignore[no-untyped-def]
            batch, request = self._last
            if batch is data:
                return request
            request = super()._translate_data(data)
            self._last = (data, request)
            return request

        def _export(self, data):  # type: ignore[no-untyped-def]
            try:
                return super()._export(data)
            finally:
                self._last = (None, None)  # sent or given up: nothing to keep

    EncodeOnce.__name__ = base.__name__
    return EncodeOnce


def make_exporters(plan: SignalPlan, counters: AgentCounters) -> list[tuple[str, object]]:
    """(where it goes, exporter) for each exporter of the signal."""
    out: list[tuple[str, object]] = []
    for name in plan.exporters:
        if name == "console":
            if plan.signal == "traces":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                out.append(("console (stdout)", ConsoleSpanExporter(out=sys.stdout)))
            else:
                from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

                out.append(("console (stdout)", ConsoleMetricExporter(out=sys.stdout)))
            continue
        inner = _otlp_exporter(plan)
        endpoint = str(getattr(inner, "_endpoint", plan.endpoint or "the default endpoint"))
        wrapped = (CountingSpanExporter if plan.signal == "traces" else
                   CountingMetricExporter)(inner, counters, endpoint)
        out.append((f"OTLP {plan.protocol} {endpoint}", wrapped))
    return out


def otlp_endpoints(exporters: Sequence[object]) -> list[str]:
    """The endpoints of the OTLP exporters among ``exporters`` (console ones have none)."""
    return [e.endpoint for e in exporters
            if isinstance(e, (CountingSpanExporter, CountingMetricExporter))]


def validate(otlp: OtlpConfig) -> None:
    if otlp.protocol not in ("", "grpc", "http/protobuf"):
        raise setting_error("otlp.protocol", f"{otlp.protocol!r}: use 'grpc' or 'http/protobuf'")


# Settings only: the runtime builds the OTLP exporters every agent has (telemetry.py).
COMPONENT = Component("otlp", "otlp", settings=OtlpConfig,
                      ranges={"timeout_s": (0, 3600), "metric_interval_s": (0, 86400),
                              "flush_timeout_s": (0.0, 600)}, validate=validate)
