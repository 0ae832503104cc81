"""The host sources: NVIDIA GPUs through a fake NVML that raises the real library's errors,
RAPL and hwmon on fake sysfs trees, and the one sampler that reads them."""

from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import threading
import time
from pathlib import Path

import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers import rapl as rapl_module
from otel_benchlab.receivers.host import HostConfig, HostSampler
from otel_benchlab.receivers.hwmon import open_hwmon
from otel_benchlab.receivers.nvml import open_nvml
from otel_benchlab.receivers.rapl import open_rapl

from .fake_sysfs import machine, rapl_zone, set_uj

FAKE = Path(__file__).parent / "fake_nvml" / "pynvml.py"


@pytest.fixture
def nvml():
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_gpus(nvml, **first) -> None:
    nvml.configure({"gpus": [
        {"uuid": "GPU-aaaa", "name": "NVIDIA H100", "watts": "wave", **first},
        {"uuid": "GPU-bbbb", "name": "Tesla T4", "watts": 70, "counter": False,
         "unsupported": ["encoder_utilization", "decoder_utilization"],
         "mig": []}]})


def test_every_gpu_is_a_power_source_and_their_sum_is_another(nvml):
    two_gpus(nvml)
    (gpus,), why = open_nvml(HostConfig(), AgentCounters(), loader=lambda: nvml)
    sensors = {s.name: s for s in gpus.sensors()}
    assert {s.power_source for s in sensors.values() if s.power_source} == {
        "gpu0", "gpu1", "gpu_sum"}
    assert all(s.kind == "energy" for s in sensors.values() if s.power_source)
    assert sensors["gpu0.power"].attributes["hw.id"] == "GPU-aaaa"
    assert sensors["gpu0.power"].attributes["hw.model"] == "NVIDIA H100"
    assert sensors["gpu0.power"].attributes["hw.driver_version"] == "550.54.15"
    assert sensors["gpu0.encoder_utilization"].attributes["hw.gpu.task"] == "encoder"
    assert "gpu1.encoder_utilization" not in sensors  # not supported there: skipped
    assert sensors["sum.energy"].metric == ""  # a sum is no metric (it would count twice)
    values = gpus.read()
    assert values["gpu1.power"] == 70.0 and values["gpu0.memory_total"] == 80 * 2**30
    assert values["sum.energy"] == values["gpu0.energy"] + values["gpu1.energy"]


def test_energy_comes_from_the_counter_where_there_is_one(nvml):
    two_gpus(nvml)
    (gpus,), _ = open_nvml(HostConfig(), AgentCounters(), loader=lambda: nvml)
    a = gpus.read()
    time.sleep(0.3)
    b = gpus.read()
    truth = nvml.wave_joules(nvml._t())
    assert abs(b["gpu0.energy"] - (1e6 + truth)) < 1.0  # the counter, in J
    # Without a counter the power is integrated: 70 W for the time between the reads.
    assert b["gpu1.energy"] - a["gpu1.energy"] == pytest.approx(70 * 0.3, rel=0.1)


def test_mig_instances_are_reported_with_their_parent(nvml):
    nvml.configure({"gpus": [{"uuid": "GPU-aaaa", "mig": ["MIG-1111", "MIG-2222"]}]})
    (gpus,), _ = open_nvml(HostConfig(), AgentCounters(), loader=lambda: nvml)
    migs = [s for s in gpus.sensors() if s.attributes.get("benchlab.gpu.parent_id")]
    assert {s.attributes["hw.id"] for s in migs} == {"MIG-1111", "MIG-2222"}
    assert gpus.read()["gpu0.mig1.memory_used"] == 3 * 2**30


def test_a_gpu_that_falls_off_the_bus_stops_and_is_picked_up_again(nvml, caplog, monkeypatch):
    from otel_benchlab.receivers import nvml as receiver

    monkeypatch.setattr(receiver, "RETRY_S", 0.1)
    two_gpus(nvml, lost_at_s=0.2, back_at_s=0.5)
    counters = AgentCounters()
    (gpus,), _ = open_nvml(HostConfig(), counters, loader=lambda: nvml)
    assert "gpu0.power" in gpus.read()
    time.sleep(0.25)
    lost = gpus.read()
    assert "gpu0.power" not in lost and "gpu1.power" in lost
    assert "sum.energy" not in lost  # a gap, not a dip
    gpus.read()
    assert counters.get("device.disconnects", source="GPU-aaaa") == 1
    assert caplog.text.count("fell off the bus") == 1
    time.sleep(0.4)
    back = gpus.read()
    assert "gpu0.power" in back and "sum.energy" in back
    assert counters.get("device.reconnects", source="GPU-aaaa") == 1


@pytest.mark.parametrize("library,said", [("missing", "libnvidia-ml.so.1"),
                                          ("no_driver", "NVML did not start")])
def test_no_driver_is_one_line_and_no_source(nvml, library, said):
    nvml.configure({"library": library, "gpus": []})
    sources, why = open_nvml(HostConfig(), AgentCounters(), loader=lambda: nvml)
    assert sources == [] and said in why


def test_rapl_zones_and_the_package_sum(tmp_path):
    machine(tmp_path)
    (rapl,), why = open_rapl(HostConfig(sysfs_root=str(tmp_path)), AgentCounters())
    sensors = {s.name: s for s in rapl.sensors()}
    assert set(sensors) == {"intel-rapl:0.energy", "intel-rapl:0.power",
                            "intel-rapl:0:0.energy", "intel-rapl:0:0.power",
                            "intel-rapl:0:1.energy", "intel-rapl:0:1.power",
                            "packages.energy"}
    assert sensors["intel-rapl:0:1.energy"].attributes["benchlab.rapl.domain"] == "dram"
    assert sensors["packages.energy"].power_source == "cpu_rapl"


def test_rapl_unwraps_a_counter_that_wraps_mid_span(tmp_path):
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 990_000, max_uj=999_999)
    (rapl,), _ = open_rapl(HostConfig(sysfs_root=str(tmp_path)), AgentCounters())
    set_uj(zone, 5_000)  # wrapped: 10_000 uJ later
    v = rapl.read()
    assert v["packages.energy"] == pytest.approx(0.015)
    set_uj(zone, 25_000)
    assert rapl.read()["packages.energy"] == pytest.approx(0.035)


def test_rapl_readable_by_root_only_says_how_to_grant_access(tmp_path, monkeypatch):
    machine(tmp_path)
    real_open = os.open

    def no_permission(path, *args, **kwargs):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rapl_module.os, "open", no_permission)
    sources, why = open_rapl(HostConfig(sysfs_root=str(tmp_path)), AgentCounters())
    assert sources == [] and "root only" in why and "udev" in why


def test_an_amdgpu_in_hwmon_is_a_power_source(tmp_path):
    machine(tmp_path)
    (hw,), _ = open_hwmon(HostConfig(sysfs_root=str(tmp_path)), AgentCounters())
    sensors = {s.name: s for s in hw.sensors()}
    assert sensors["hwmon1.power1"].power_source == "amdgpu0"
    assert sensors["hwmon1.power1"].attributes["hw.type"] == "gpu"
    assert sensors["hwmon0.temp1"].attributes["hw.sensor_location"] == "Tctl"
    values = hw.read()
    assert values["hwmon1.power1"] == pytest.approx(95.0)
    assert values["hwmon0.temp1"] == pytest.approx(45.125)
    assert values["hwmon1.fan1"] == 1200


class _Source:
    def __init__(self, name: str, delay_s: float) -> None:
        self.name, self.delay_s, self.reads = name, delay_s, 0

    def sensors(self):
        return []

    def read(self):
        self.reads += 1
        time.sleep(self.delay_s)
        return {"x": 1.0}

    def close(self):
        pass


def test_a_slow_source_never_delays_the_others():
    counters = AgentCounters()
    # The slow read takes 0.6 s: were the fast source held up by it, a gap of about that
    # length would appear; a loaded CI host can still delay one 50 ms tick or two.
    fast, slow = _Source("fast", 0.0), _Source("slow", 0.6)
    got: list = []
    lock = threading.Lock()

    def emit(s):
        with lock:
            got.append(s)
        return True

    sampler = HostSampler([slow, fast], 20.0, counters)
    sampler.start(emit)
    time.sleep(1.0)
    sampler.stop()
    fast_ts = [s.ts_ns for s in got if s.source == "fast"]
    assert len(fast_ts) >= 15
    gaps = [(b - a) / 1e6 for a, b in zip(fast_ts, fast_ts[1:], strict=False)]
    assert statistics.median(gaps) < 75  # read every 50 ms tick
    assert max(gaps) < 300  # never held up for the slow read's 600 ms
    assert slow.reads <= 3 and counters.get("read.overruns", source="slow") >= 10


def test_a_source_with_its_own_period_is_read_that_often_beside_faster_ones():
    fast, cpu = _Source("fast", 0.0), _Source("cpu", 0.0)
    cpu.period_s = 0.25
    sampler = HostSampler([fast, cpu], 20.0, AgentCounters())
    sampler.start(lambda s: True)
    time.sleep(1.1)
    sampler.stop()
    assert fast.reads >= 18 and 4 <= cpu.reads <= 6


def test_a_source_that_raises_is_counted_and_read_again(caplog):
    class Broken(_Source):
        def read(self):
            self.reads += 1
            raise OSError("device busy")

    counters = AgentCounters()
    broken = Broken("broken", 0)
    sampler = HostSampler([broken], 20.0, counters)
    with caplog.at_level(logging.WARNING):
        sampler.start(lambda s: True)
        time.sleep(0.3)
        sampler.stop()
    assert broken.reads >= 4
    assert counters.get("read.errors", source="broken", reason="OSError") == broken.reads
    assert caplog.text.count("device busy") == 1


@pytest.mark.e2e
def test_the_simulated_pipeline_against_fake_gpus_and_a_fake_sysfs(tmp_path):
    import json
    import subprocess

    import pyarrow.dataset as ds

    from .test_end_to_end import agent_cmd, agent_env

    root = machine(tmp_path / "sys")
    spec = tmp_path / "nvml.json"
    spec.write_text(json.dumps({"gpus": [
        {"uuid": "GPU-aaaa", "watts": "wave"},
        {"uuid": "GPU-bbbb", "watts": 70, "counter": False}]}))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[sim]\nsources = ["pipeline"]\n[host]\nsysfs_root = "{root}"\n'
                   '[benchlab]\nenabled = false\n')
    env = agent_env(FAKE_NVML=str(spec), OTEL_TRACES_EXPORTER="none",
                    OTEL_METRICS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off",
                    PYTHONPATH=os.pathsep.join([str(FAKE.parent),
                                                os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(agent_cmd("--simulate", "--config", str(cfg), "--duration", "4",
                                    "--data-root", str(tmp_path / "data"), "--session", "h",
                                    "--prom-bind", "off"),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "power sources: gpu0, gpu1, gpu_sum, cpu_rapl, amdgpu0" in proc.stdout
    session = tmp_path / "data/sessions/h"
    aligned = ds.dataset(session / "aligned").to_table().to_pandas()
    assert set(aligned.power_source) == {"gpu0"}  # the primary: the first seen
    for column in ("energy_j", "energy_j_gpu1", "energy_j_gpu_sum", "energy_j_cpu_rapl",
                   "energy_j_amdgpu0"):
        assert aligned[column].notna().mean() > 0.8, column
    both = aligned[["energy_j", "energy_j_gpu1", "energy_j_gpu_sum"]].dropna()
    assert (abs(both.energy_j_gpu_sum - both.energy_j - both.energy_j_gpu1) < 1e-6).all()
    samples = ds.dataset(session / "raw/samples").to_table().to_pandas()
    assert set(samples.source) >= {"nvml", "rapl", "hwmon", "host-cpu"}
    cpu = samples[(samples.source == "host-cpu") & (samples.sensor == "utilization")]
    assert len(cpu) >= 3 and cpu.value.between(0, 1).all()  # once a second
