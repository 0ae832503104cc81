"""The OpenTelemetry providers of one agent: resource, meter provider and its readers."""

from __future__ import annotations

import socket

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_benchlab import __version__
from otel_benchlab.exporters.otel_metrics import metric_views


def make_resource(extra: dict[str, str] | None = None) -> Resource:
    """Our attributes, overridden by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME."""
    host = socket.gethostname()
    ours = {"service.name": "otel-benchlab", "service.version": __version__,
            "service.instance.id": host, "host.name": host, **(extra or {})}
    from_env = OTELResourceDetector().detect()
    return Resource.create(ours).merge(from_env)


def make_meter_provider(resource: Resource, otlp_metric_exporter=None,
                        interval_s: float = 60.0,
                        extra_readers: list[MetricReader] | None = None) -> MeterProvider:
    readers: list[MetricReader] = list(extra_readers or [])
    if otlp_metric_exporter is not None:
        readers.append(PeriodicExportingMetricReader(
            otlp_metric_exporter, export_interval_millis=interval_s * 1000))
    return MeterProvider(resource=resource, metric_readers=readers, views=metric_views())
