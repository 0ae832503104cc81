"""Stage latency and energy histograms aggregated a batch at a time with numpy.

The SDK's ``Histogram.record`` costs ~15 us a value (a measurement object, attribute
hashing, a lock and a bisect per reader); at a few hundred spans a second it was the largest
part of the agent's CPU, at thousands it saturates a core. Here each batch of spans (about a
second) is grouped by attribute set and counted into explicit buckets with one
``searchsorted`` + ``bincount`` per group. The cumulative points are handed to the OTel
pipeline as aggregated data: added to every push exporter's ``MetricsData``
(``WithBatchHistograms``, cumulative temporality) and served on the Prometheus endpoint by
a collector in its registry, under the names and labels the OTel Prometheus exporter gives
(``benchlab_pipeline_latency_seconds``; dots in label names become underscores). Bucket
semantics are OTel's: bucket i counts values in (bounds[i-1], bounds[i]].
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from otel_benchlab import __version__

SCOPE = InstrumentationScope("otel_benchlab", __version__)


class _Series:
    __slots__ = ("counts", "total", "n", "lo", "hi")

    def __init__(self, n_buckets: int) -> None:
        self.counts = np.zeros(n_buckets, np.int64)
        self.total = 0.0
        self.n = 0
        self.lo = float("inf")
        self.hi = float("-inf")


class BatchHistogram:
    def __init__(self, name: str, unit: str, description: str,
                 bounds: Sequence[float], prom_name: str) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.prom_name = prom_name
        self.start_ns = time.time_ns()
        self._series: dict[tuple[tuple[str, str], ...], _Series] = {}
        self._lock = threading.Lock()

    def record_many(self, attributes: dict[str, str], values: Sequence[float]) -> None:
        """Count ``values`` (one attribute set) into the buckets."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        idx = np.searchsorted(self.bounds, arr, side="left")
        counts = np.bincount(idx, minlength=len(self.bounds) + 1)
        key = tuple(attributes.items())
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = _Series(len(self.bounds) + 1)
            s.counts += counts
            s.total += float(arr.sum())
            s.n += int(arr.size)
            s.lo = min(s.lo, float(arr.min()))
            s.hi = max(s.hi, float(arr.max()))

    def _snapshot(self) -> list[tuple[dict[str, str], _Series]]:
        with self._lock:
            out = []
            for key, s in self._series.items():
                copy = _Series(len(s.counts))
                copy.counts, copy.total, copy.n = s.counts.copy(), s.total, s.n
                copy.lo, copy.hi = s.lo, s.hi
                out.append((dict(key), copy))
            return out

    def metric(self) -> Metric | None:
        points = [HistogramDataPoint(attributes=attrs, start_time_unix_nano=self.start_ns,
                                     time_unix_nano=time.time_ns(), count=s.n, sum=s.total,
                                     bucket_counts=s.counts.tolist(),
                                     explicit_bounds=self.bounds.tolist(), min=s.lo,
                                     max=s.hi)
                  for attrs, s in self._snapshot()]
        if not points:
            return None
        return Metric(self.name, self.description, self.unit, Histogram(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE))

    def prometheus_family(self) -> HistogramMetricFamily | None:
        snap = self._snapshot()
        if not snap:
            return None
        names = [k.replace(".", "_") for k in snap[0][0]]
        family = HistogramMetricFamily(self.prom_name, self.description, labels=names)
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for attrs, s in snap:
            cum = np.cumsum(s.counts).tolist()
            family.add_metric([attrs[k] for k in attrs], list(zip(les, cum, strict=True)),
                              s.total)
        return family


class BatchHistograms:
    """The set of batch histograms, for the exporters and the Prometheus registry."""

    def __init__(self, histograms: Iterable[BatchHistogram]) -> None:
        self.histograms = list(histograms)

    def metrics(self) -> list[Metric]:
        return [m for h in self.histograms if (m := h.metric()) is not None]

    # prometheus_client's collector protocol
    def collect(self):
        for h in self.histograms:
            family = h.prometheus_family()
            if family is not None:
                yield family

    def describe(self):
        return []


class WithBatchHistograms(MetricExporter):
    """Adds the batch histograms to what the SDK's reader hands a push exporter."""

    def __init__(self, inner: MetricExporter, histograms: BatchHistograms) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.histograms = histograms

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: object) -> MetricExportResult:
        extra = self.histograms.metrics()
        if extra and metrics_data.resource_metrics:
            first, *rest = metrics_data.resource_metrics
            scopes = list(first.scope_metrics)
            for i, sm in enumerate(scopes):
                if sm.scope.name == SCOPE.name:
                    scopes[i] = ScopeMetrics(sm.scope, list(sm.metrics) + extra,
                                             sm.schema_url)
                    break
            else:
                scopes.append(ScopeMetrics(SCOPE, extra, ""))
            metrics_data = MetricsData([ResourceMetrics(first.resource, scopes,
                                                        first.schema_url), *rest])
        return self.inner.export(metrics_data, timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis)
