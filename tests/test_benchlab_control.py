"""Device control: RGB feedback from latency and fan duty from temperature, written with
the real commands to the emulator (or only logged in dry-run)."""

from __future__ import annotations

import time

import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.benchlab import BenchlabReceiver
from otel_benchlab.receivers.benchlab_control import (
    BenchlabControl,
    ControlSettings,
    colour_for_latency,
    control_temperature,
    fan_duty_for,
)
from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator, default_readings
from otel_benchlab.receivers.benchlab_layout import WRITE_FAN_PROFILE, WRITE_RGB, structures


@pytest.mark.parametrize("ms,colour", [(3, "green"), (9.99, "green"), (10, "yellow"),
                                       (20, "yellow"), (20.01, "red")])
def test_rgb_colour_follows_latency_thresholds(ms, colour):
    assert colour_for_latency(ms, 10, 20) == colour


@pytest.mark.parametrize("temp,duty", [(20, 25), (59.9, 25), (60, 25), (70, 62), (80, 100),
                                       (95, 100)])
def test_fan_duty_is_minimum_below_threshold_and_ramps_to_maximum(temp, duty):
    assert fan_duty_for(temp, 60, 80, 25, 100) == duty


def test_control_temperature_is_the_hottest_probe_else_the_chip():
    assert control_temperature({"TS_1": 40.0, "TS_2": 55.0, "Tchip": 70.0}) == 55.0
    assert control_temperature({"Tchip": 70.0}) == 70.0


def run_with(settings: ControlSettings, hot: bool = False):
    emu = BenchlabEmulator(0x10, 6, load=lambda t: 0.5)
    if hot:
        def readings(t):
            r = default_readings(0.5, 0x10)
            r.probes_c = [70.0, 50.0]
            return r
        emu.readings_for = readings
    emu.start()
    control = BenchlabControl(settings)
    rx = BenchlabReceiver(f"uid:{emu.uid.hex().upper()}", 50, AgentCounters(),
                          ports=emu.ports, control=control)
    return emu, rx


def wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_rgb_feedback_writes_a_colour_only_when_it_changes():
    emu, rx = run_with(ControlSettings(rgb_feedback=True))
    rx.start(lambda r: True)
    try:
        rx.observe_latency(5.0)
        wait(lambda: any(w[0] == WRITE_RGB for w in emu.writes))
        time.sleep(0.3)
        rx.observe_latency(25.0)
        wait(lambda: sum(w[0] == WRITE_RGB for w in emu.writes) >= 2)
        time.sleep(0.3)
    finally:
        rx.stop()
        emu.stop()
    rgb = [w for w in emu.writes if w[0] == WRITE_RGB]
    assert len(rgb) == 2  # one write per change, not one per sample
    colours = []
    for w in rgb:
        assert w[1] == 0  # the profile of the switch's position (WORK)
        cfg = structures.RGBConfigStruct.from_buffer_copy(w[2:])
        assert cfg.Mode == int(structures.RGBMode.SINGLE_COLOR)
        colours.append((cfg.Red, cfg.Green, cfg.Blue))
    assert colours == [(0, 255, 0), (255, 0, 0)]


def test_fan_auto_sets_fixed_duty_from_the_hottest_probe_and_keeps_the_rest():
    emu, rx = run_with(ControlSettings(fan_auto=True, fans=(1, 2)), hot=True)
    kept = structures.FanConfigStruct()
    kept.MinDuty, kept.MaxDuty, kept.RampStep = 20, 90, 5
    emu.fan_profiles[(0, 0)] = bytes(kept)
    rx.start(lambda r: True)
    try:
        wait(lambda: sum(w[0] == WRITE_FAN_PROFILE for w in emu.writes) >= 2)
        time.sleep(0.3)
    finally:
        rx.stop()
        emu.stop()
    fan = [w for w in emu.writes if w[0] == WRITE_FAN_PROFILE]
    assert [(w[1], w[2]) for w in fan] == [(0, 0), (0, 1)]
    cfg = structures.FanConfigStruct.from_buffer_copy(fan[0][3:])
    assert (cfg.FanMode, cfg.FixedDuty) == (int(structures.FanMode.FIXED), 62)
    assert (cfg.MinDuty, cfg.MaxDuty, cfg.RampStep) == (20, 90, 5)


def test_dry_run_logs_what_it_would_write_and_writes_nothing(caplog):
    caplog.set_level("INFO")
    emu, rx = run_with(ControlSettings(rgb_feedback=True, fan_auto=True, dry_run=True))
    rx.start(lambda r: True)
    try:
        rx.observe_latency(15.0)
        wait(lambda: "would write" in caplog.text and "RGB profile 0 yellow" in caplog.text)
        time.sleep(0.2)
    finally:
        rx.stop()
        emu.stop()
    assert emu.writes == []
    assert "fixed duty 25 %" in caplog.text
