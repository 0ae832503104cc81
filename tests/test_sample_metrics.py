"""Hardware readings as OTel instruments: latest values, energy integrated from power."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_benchlab.exporters.otel_metrics import SampleMetrics
from otel_benchlab.records import SensorInfo


def collect(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = list(m.data.data_points)
    return out


def setup():
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    sensors = [SensorInfo("dev", "SYS", "hw.host.power", "W", {"hw.id": "dev:SYS"}),
               SensorInfo("dev", "Tamb", "hw.temperature", "Cel", {"hw.id": "dev:Tamb"})]
    return reader, SampleMetrics(meter, sensors)


def test_power_is_integrated_into_the_matching_energy_counter():
    reader, sm = setup()
    for i in range(11):  # 100 W for one second, sampled every 100 ms
        sm.on_sample(i * 100_000_000, "dev", {"SYS": 100.0, "Tamb": 24.0})
    m = collect(reader)
    assert m["hw.host.power"][0].value == 100.0
    assert abs(m["hw.host.energy"][0].value - 100.0) < 1e-9


def test_a_sensor_absent_from_the_newest_sample_is_not_reported_stale():
    reader, sm = setup()
    sm.on_sample(0, "dev", {"SYS": 100.0, "Tamb": 24.0})
    sm.on_sample(100_000_000, "dev", {"SYS": 100.0})  # ambient read failed this time
    m = collect(reader)
    assert "hw.temperature" not in m or m["hw.temperature"] == []
