"""Late input keeps its energy: an OpenTelemetry SDK application at its default settings
(BatchSpanProcessor: 5 s schedule delay, retries) delivers spans seconds after they end,
and every one of them gets the energy the meter measured over its own interval. A span
later than ``intake.max_delay_s`` is still written, counted and said once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from otel_benchlab.processors.energy import EnergyAnnotator
from otel_benchlab.processors.power_series import PowerSeries, energy_between
from otel_benchlab.records import StageSpan

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

# The SDK as applications run it: a BatchSpanProcessor with nothing shortened.
APP = textwrap.dedent("""
    import os, random, time
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    tp = TracerProvider(resource=Resource.create({"service.name": "encoder"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = tp.get_tracer("app")
    rng = random.Random(7)
    for n in range(int(os.environ["SPANS"])):  # 50 a second, 5-7 ms each
        with tracer.start_as_current_span("encode", attributes={"benchlab.frame": n}):
            time.sleep(rng.uniform(0.005, 0.007))
        time.sleep(0.013)
    tp.shutdown()
""")


def _run_agent_with_app(tmp_path, protocol: str, spans: int, extra_toml: str = ""):
    port = free_port()
    cfg = tmp_path / "agent.toml"
    cfg.write_text('pairs = [["a", "b"]]\n[sim]\nsources = ["benchlab"]\n'
                   f'[intake]\nspan_stages = ["encode*"]\n{extra_toml}')
    listen = "--otlp-listen" if protocol == "grpc" else "--otlp-http-listen"
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
                  "--session", "late", "--prom-bind", "off", listen, f"127.0.0.1:{port}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_started(agent)
        app = subprocess.run([sys.executable, "-c", APP], capture_output=True, text=True,
                             timeout=120, env=agent_env(
                                 OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                                 OTEL_EXPORTER_OTLP_PROTOCOL=protocol, SPANS=str(spans)))
        assert app.returncode == 0, app.stderr
        time.sleep(1.5)  # the last batch's power: a sample past its end
    finally:
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    return tmp_path / "data/sessions/late", err


def _measured_sys_power(session) -> PowerSeries:
    """The sys source's power as the meter reported it, from the session's raw samples."""
    manifest = json.loads((session / "session.json").read_text())
    sensor = next(s for s in manifest["sensors"] if s.get("power_source") == "sys")
    raw = ds.dataset(session / "raw/samples").to_table(
        filter=(pc.field("source") == sensor["source"]) & (pc.field("sensor") == sensor["name"]))
    order = np.argsort(raw["ts_ns"].to_numpy())
    return PowerSeries.from_power(raw["ts_ns"].to_numpy()[order],
                                  raw["value"].to_numpy()[order])


def _encode_rows(session):
    t = ds.dataset(session / "aligned").to_table(
        filter=pc.field("stage_from") == "encode.start").to_pandas()
    return t.sort_values("start_ns")


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_sent_at_the_sdks_default_batch_delay_all_get_their_energy(tmp_path, protocol):
    session, _ = _run_agent_with_app(tmp_path, protocol, spans=300)  # 6 s: a timed batch
    rows = _encode_rows(session)
    assert len(rows) == 300
    truth, _ = energy_between(_measured_sys_power(session), rows.start_ns.to_numpy(),
                              rows.end_ns.to_numpy(), int(0.5e9))
    assert not np.isnan(truth).any()
    assert rows.energy_j.notna().all()
    assert rows.energy_j.to_numpy() == pytest.approx(truth, rel=1e-9)


@pytest.mark.e2e
def test_a_span_later_than_max_delay_is_kept_without_energy_counted_and_said_once(tmp_path):
    # History for window (2 s) + 0.2 s + gap (0.5 s) (nothing held back for attribution):
    # the SDK's first spans, ~5 s old when its timed batch leaves, are late.
    session, err = _run_agent_with_app(tmp_path, "grpc", spans=300,
                                       extra_toml="max_delay_s = 0.2\n"
                                       "[attribution]\ndelay_s = 0\n")
    rows = _encode_rows(session)
    assert len(rows) == 300  # every span is written, late or not
    assert rows.energy_j.isna().sum() > 0 and rows.energy_j.notna().sum() > 0
    summary = json.loads((session / "session.json").read_text())
    late = summary["summary"]["late"]
    assert set(late) == {"otlp"} and late["otlp"] >= rows.energy_j.isna().sum()
    said = [line for line in err.splitlines() if "input.late" in line]
    assert len(said) == 1 and "max_delay_s" in said[0] and "source=otlp" in said[0]


def _power(annotator: EnergyAnnotator, t0: int, t1: int, watts) -> None:
    for t in range(t0, t1, 10_000_000):  # 100 Hz
        annotator.add_power("sys", t, watts(t))


def test_a_ten_second_stage_whose_end_arrives_a_minute_late_gets_its_energy():
    s = 1_000_000_000
    window, late, gap = 15 * s, 60 * s, s // 2
    annotator = EnergyAnnotator({"sys": "power"}, gap, keep_ns=window + late + gap)
    watts = lambda t: 100.0 + 50.0 * np.sin(t / 3e9)  # noqa: E731
    span = StageSpan("p", "s", 1, "a", "b", 5 * s, 15 * s)
    for now in range(s, 76 * s, s):  # the agent's batches, once a second, for 75 s
        _power(annotator, now - s, now, watts)
        if now == 74 * s:  # the end mark: 59 s after the stage ended
            annotator.add_span(span)
        done = annotator.release(now)
        if len(done):
            got = span.power["sys"].energy_j
    # The exact integral of the sampled (piecewise linear) power over [5 s, 15 s].
    ts = np.arange(0, 75 * s, 10_000_000)
    truth, _ = energy_between(PowerSeries.from_power(ts, watts(ts)), np.array([5 * s]),
                              np.array([15 * s]), gap)
    assert got == pytest.approx(truth[0], rel=1e-12)
    assert got == pytest.approx(10 * 100.0, rel=0.1)


def test_power_history_is_trimmed_beyond_the_horizon():
    s = 1_000_000_000
    annotator = EnergyAnnotator({"sys": "power"}, s // 2, keep_ns=10 * s)
    for now in range(s, 31 * s, s):
        _power(annotator, now - s, now, lambda t: 50.0)
        annotator.release(now)
    held = annotator.timelines["sys"]
    assert 10 * 100 <= len(held) <= 10 * 100 + 2  # 10 s at 100 Hz, one sample before
    late = StageSpan("p", "s", 1, "a", "b", 5 * s, 6 * s)  # older than the history
    annotator.add_span(late)
    annotator.release(31 * s)
    assert late.power["sys"].energy_j is None
