"""The OpenTelemetry providers of one agent: resource, meter provider and its readers."""

from __future__ import annotations

import socket
import uuid

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_benchlab import __version__
from otel_benchlab.exporters.otel_metrics import metric_views


def make_resource(extra: dict[str, str] | None = None) -> Resource:
    """Our attributes, overridden by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME.

    ``service.instance.id`` is a fresh UUID per agent process, as the conventions ask: two
    agents on one host (or a restarted pod) are two instances."""
    ours = {"service.name": "otel-benchlab", "service.version": __version__,
            "service.instance.id": str(uuid.uuid4()), "host.name": socket.gethostname(),
            **(extra or {})}
    from_env = OTELResourceDetector().detect()
    return Resource.create(ours).merge(from_env)


def make_meter_provider(resource: Resource, push_exporters: list[MetricExporter],
                        interval_s: float = 60.0,
                        extra_readers: list[MetricReader] | None = None) -> MeterProvider:
    readers: list[MetricReader] = list(extra_readers or [])
    readers += [PeriodicExportingMetricReader(e, export_interval_millis=interval_s * 1000)
                for e in push_exporters]
    # shutdown_on_exit=False: the agent shuts the provider down itself, within its exit
    # deadline; the SDK's atexit hook would wait on a dead collector with no bound.
    return MeterProvider(resource=resource, metric_readers=readers, views=metric_views(),
                         shutdown_on_exit=False)
