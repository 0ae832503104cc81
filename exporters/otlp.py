"""OTLP exporters (gRPC or HTTP/protobuf) that count what they fail to deliver.

The SDK's batch span processor and periodic metric reader call these from their own
threads, so a down or slow endpoint never blocks the agent; the exporters' own timeout
bounds each attempt. A failed export is counted (``benchlab.agent.export.failures``) and
logged once with the endpoint and what to check.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_benchlab.counters import AgentCounters

DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def _hint(endpoint: str) -> str:
    return (f"OTLP export to {endpoint} failed; check that a collector listens there "
            "(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL) or set "
            "OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none to turn OTLP off")


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, counters: AgentCounters, endpoint: str) -> None:
        self.inner = inner
        self.counters = counters
        self.endpoint = endpoint

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter bug must not kill the SDK's worker thread
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.counters.add("export.failures", 1, _hint(self.endpoint), signal="traces")
            self.counters.add("export.dropped", len(spans), signal="traces")
        else:
            self.counters.add("export.sent", len(spans), signal="traces")
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
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis)


def make_otlp_exporters(protocol: str, endpoint: str, timeout_s: float,
                        counters: AgentCounters) -> tuple[SpanExporter, MetricExporter, str]:
    """Span and metric exporters for ``protocol``; ``endpoint`` "" means the standard
    variables or their defaults. Returns the endpoint actually used, for the start banner."""
    # Headers and certificates come from the standard OTEL_EXPORTER_OTLP_* variables, which
    # the exporters read themselves.
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = (endpoint or DEFAULT_ENDPOINTS[protocol]).rstrip("/")
        spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout_s)
        metrics = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout_s)
        shown = base
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        shown = endpoint or DEFAULT_ENDPOINTS["grpc"]
        insecure = not shown.startswith("https://")
        spans = OTLPSpanExporter(endpoint=shown, insecure=insecure, timeout=timeout_s)
        metrics = OTLPMetricExporter(endpoint=shown, insecure=insecure, timeout=timeout_s)
    return (CountingSpanExporter(spans, counters, shown),
            CountingMetricExporter(metrics, counters, shown), shown)
