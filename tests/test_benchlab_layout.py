"""BENCHLAB decoding against golden bytes packed from the spec's offsets
(shared/spec/benchlab-protocol.md), independently of both pycore's ctypes structures and
the emulator's contract-driven encoder, so a mistake shared by two cannot pass."""

from __future__ import annotations

import struct

import pytest

from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator, Readings
from otel_benchlab.receivers.benchlab_layout import READ_SENSORS, decode, layout_for

RAILS = ["EPS1", "EPS2", "ATX3V", "ATX5V", "ATX5VSB", "ATX12V", "PCIE1", "PCIE2", "PCIE3",
         "HPWR1", "HPWR2"]
# (volts mV, amps mA, power mW) per rail
RAIL_VALUES = [(12050 + i, 1000 + 100 * i, 10000 * (i + 1)) for i in range(11)]


def original_golden(tchip: int = 412) -> bytes:
    """216 bytes at the ORIGINAL offsets of the spec."""
    b = bytearray(216)
    vin = [12000, 5000, 3300] + [0x7FFF] * 10
    struct.pack_into("<13h", b, 0, *vin)
    struct.pack_into("<HHh", b, 26, 3300, 2500, tchip)
    struct.pack_into("<4h", b, 32, 351, 0x7FFF, 0x7FFF, 0x7FFF)
    struct.pack_into("<hH", b, 40, 245, 455)
    struct.pack_into("<4B", b, 44, 2, 1, 1, 255)  # fan switch 100 %, PLAY, ext RGB, no ext fan
    for i, (v, a, p) in enumerate(RAIL_VALUES):
        struct.pack_into("<hxxii", b, 48 + 12 * i, v, a, p)
    for i in range(9):
        struct.pack_into("<BBH", b, 180 + 4 * i, 1 if i < 2 else 0, 40 if i < 2 else 255,
                         1200 if i < 2 else 0)
    return bytes(b)


def bl2_fw05_golden() -> bytes:
    """384 bytes: the ORIGINAL fields, 8 probes, 23 rails, then FaultStatus and FaultLog,
    at the offsets natural alignment gives them."""
    b = bytearray(384)
    struct.pack_into("<13h", b, 0, *([12000] + [0x7FFF] * 12))
    struct.pack_into("<HHh", b, 26, 3310, 2500, 380)
    struct.pack_into("<8h", b, 32, 300, 0x7FFF, 0x7FFF, 0x7FFF, 420, 430, 0x7FFF, 0x7FFF)
    struct.pack_into("<hH", b, 48, 0, 0)  # ambient sensor's I2C read failed
    struct.pack_into("<4B", b, 52, 0, 0, 0, 255)
    for i in range(23):
        v, a, p = (12000, 1000 * (i + 1), 12000 * (i + 1)) if i < 11 else (12000, 500, 6000)
        struct.pack_into("<hxxii", b, 56 + 12 * i, v, a, p)
    struct.pack_into("<QQ", b, 368, 0b101, 0b111)
    return bytes(b)


def test_original_layout_decodes_every_sensor_at_its_spec_offset():
    v = decode(original_golden(), layout_for(0x10, 6))
    assert v["EPS1_V"] == 12.05 and v["EPS1_I"] == 1.0 and v["EPS1_P"] == 10.0
    assert v["HPWR2_P"] == 110.0
    assert v["CPU"] == 10.0 + 20.0
    assert v["MB"] == sum(p for _, _, p in RAIL_VALUES[2:6]) / 1000
    assert v["GPU"] == sum(p for _, _, p in RAIL_VALUES[6:11]) / 1000
    assert v["SYS"] == sum(p for _, _, p in RAIL_VALUES) / 1000
    assert (v["VIN0"], v["Vdd"], v["Vref"]) == (12.0, 3.3, 2.5)
    assert (v["Tchip"], v["TS_1"], v["Tamb"], v["Hum"]) == (41.2, 35.1, 24.5, 0.455)
    assert (v["FanSwitch"], v["RGBSwitch"], v["RGBExt"]) == (2.0, 1.0, 1.0)
    assert (v["Fan1_Enable"], v["Fan1_Duty"], v["Fan1_RPM"]) == (1.0, 0.4, 1200.0)


def test_sentinels_mean_absent_never_3276_degrees():
    v = decode(original_golden(), layout_for(0x10, 6))
    assert "VIN3" not in v and "TS_2" not in v and "FanExtDuty" not in v
    assert "Fan3_Duty" not in v and "Fan3_RPM" not in v
    temps = [x for k, x in v.items() if k.startswith(("T", "TS_"))]
    assert temps and all(-50 < x < 200 for x in temps)


def test_failed_i2c_zeros_mean_absent_ambient_and_humidity():
    v = decode(bl2_fw05_golden(), layout_for(0x11, 5))
    assert "Tamb" not in v and "Hum" not in v


def test_chip_temperature_is_whole_degrees_on_original_fw02():
    assert decode(original_golden(tchip=41), layout_for(0x10, 2))["Tchip"] == 41.0
    assert decode(original_golden(tchip=410), layout_for(0x10, 6))["Tchip"] == 41.0


def test_benchlab2_keeps_per_wire_rails_out_of_sys_and_reads_faults_and_eight_probes():
    v = decode(bl2_fw05_golden(), layout_for(0x11, 5))
    assert v["SYS"] == pytest.approx(sum(12 * (i + 1) for i in range(11)))
    assert v["HPWR1_W1_P"] == 6.0 and v["HPWR2_W6_P"] == 6.0
    assert v["TS_HPWR1_IN"] == 42.0 and v["TS_HPWR1_OUT"] == 43.0
    assert (v["FaultStatus"], v["FaultLog"]) == (5.0, 7.0)


@pytest.mark.parametrize("product,fw,size", [(0x10, 2, 216), (0x10, 6, 216), (0x11, 4, 368),
                                             (0x11, 5, 384)])
def test_layout_follows_product_and_firmware_not_byte_count(product, fw, size):
    assert layout_for(product, fw).sensor_size == size


def test_emulator_encodes_the_same_bytes_as_the_spec_offsets():
    emu = BenchlabEmulator(0x10, 6)
    r = Readings(rails_w={n: p / 1000 for n, (_, _, p) in zip(RAILS, RAIL_VALUES, strict=True)},
                 rail_v={n: v / 1000 for n, (v, _, _) in zip(RAILS, RAIL_VALUES, strict=True)},
                 tchip_c=41.2, tamb_c=24.5, hum_pct=45.5, probes_c=[35.1],
                 fans=[(1, 40, 1200)] * 2, vin_mv=[12000, 5000, 3300])
    emu.readings_for = lambda t: r
    raw = bytearray(emu.reply(bytes([READ_SENSORS])))
    golden = bytearray(original_golden())
    # Currents are derived from power and voltage in the emulator; compare everything else
    for i in range(11):
        raw[48 + 12 * i + 4: 48 + 12 * i + 8] = golden[48 + 12 * i + 4: 48 + 12 * i + 8]
    golden[44:48] = bytes([0, 0, 0, 255])  # the emulator's switches are at their defaults
    golden[180 + 8:216] = bytes(28)  # and its absent fans are all zero
    assert bytes(raw) == bytes(golden)


def test_pycore_logs_through_our_logging_not_its_own_stdout_handler():
    import logging

    import otel_benchlab.receivers.benchlab_layout  # noqa: F401 - imports pycore

    plog = logging.getLogger("benchlab_pycore.core.serial_io")
    assert plog.handlers == [] and plog.propagate
