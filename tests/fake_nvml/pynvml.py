"""A fake NVML that stands in for ``pynvml`` (put this folder first on PYTHONPATH, or import
it as a module) where no NVIDIA GPU exists: the functions the receiver calls, with the real
library's error classes and constants, over GPUs described by a JSON file named in
``FAKE_NVML`` (or ``configure()``):

    {"library": "ok" | "missing" | "no_driver",
     "gpus": [{"uuid": "GPU-...", "name": "NVIDIA H100", "watts": 300 | "wave",
               "counter": true, "unsupported": ["encoder_utilization", ...],
               "lost_at_s": 2.0, "back_at_s": 4.0, "mig": ["MIG-..."]}]}

Power "wave" is 200 + 100 sin(2 pi t / 0.7) W from the first nvmlInit, "bursts" 400 W for
30 ms of every 110 ms and 150 W between; the energy counter is the exact integral (mJ), so a
test knows the truth.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from types import SimpleNamespace

# The real module, under another name, for its error classes and constants.
_spec = None
for _path in sys.path:
    _candidate = os.path.join(_path, "pynvml.py")
    if os.path.exists(_candidate) and os.path.dirname(os.path.abspath(_candidate)) != \
            os.path.dirname(os.path.abspath(__file__)):
        _spec = importlib.util.spec_from_file_location("_real_pynvml", _candidate)
        break
if _spec is None:  # pragma: no cover
    raise ImportError("the real nvidia-ml-py (pynvml) is needed for its error classes")
_real = importlib.util.module_from_spec(_spec)
sys.modules["_real_pynvml"] = _real  # it looks itself up while it loads
_spec.loader.exec_module(_real)  # type: ignore[union-attr]
for _name in dir(_real):
    if _name.startswith(("NVMLError", "NVML_")):
        globals()[_name] = getattr(_real, _name)
NVMLError = _real.NVMLError

_state: dict = {"config": None, "t0": None, "calls": 0}
FIELDS = {"power": "nvmlDeviceGetPowerUsage", "energy": "nvmlDeviceGetTotalEnergyConsumption",
          "encoder_utilization": "nvmlDeviceGetEncoderUtilization",
          "decoder_utilization": "nvmlDeviceGetDecoderUtilization",
          "throttle_reasons": "nvmlDeviceGetCurrentClocksThrottleReasons",
          "pcie": "nvmlDeviceGetPcieThroughput", "clock": "nvmlDeviceGetClockInfo",
          "temperature": "nvmlDeviceGetTemperature", "serial": "nvmlDeviceGetSerial"}


def configure(config: dict) -> None:
    _state["config"] = config
    _state["t0"] = None


def _config() -> dict:
    if _state["config"] is None:
        path = os.environ.get("FAKE_NVML")
        if path:
            with open(path) as fh:
                _state["config"] = json.load(fh)
        else:
            _state["config"] = {"gpus": []}
    return _state["config"]


def _err(code: int) -> Exception:
    return NVMLError(code)


def _t() -> float:
    return time.monotonic() - _state["t0"]


def wave_watts(t: float) -> float:
    return 200.0 + 100.0 * math.sin(2 * math.pi * t / 0.7)


def wave_joules(t: float) -> float:
    """The exact integral of wave_watts from 0 to t."""
    return 200.0 * t + 100.0 * 0.7 / (2 * math.pi) * (1 - math.cos(2 * math.pi * t / 0.7))


BURST_PERIOD, BURST_LEN, BURST_BASE, BURST_EXTRA = 0.11, 0.03, 150.0, 250.0


def bursts_watts(t: float) -> float:
    """Kernel-like bursts: 400 W for 30 ms of every 110 ms, 150 W between."""
    return BURST_BASE + (BURST_EXTRA if (t % BURST_PERIOD) < BURST_LEN else 0.0)


def bursts_joules(t: float) -> float:
    n, rest = divmod(t, BURST_PERIOD)
    return BURST_BASE * t + BURST_EXTRA * (n * BURST_LEN + min(rest, BURST_LEN))


CURVES = {"wave": (wave_watts, wave_joules), "bursts": (bursts_watts, bursts_joules)}


class _Handle:
    def __init__(self, index: int, spec: dict, mig: str | None = None) -> None:
        self.index = index
        self.spec = spec
        self.mig = mig


def _check(h: _Handle, field: str) -> dict:
    _state["calls"] += 1
    spec = h.spec
    t = _t()
    if spec.get("lost_at_s") is not None and spec["lost_at_s"] <= t < spec.get("back_at_s",
                                                                                1e18):
        raise _err(NVML_ERROR_GPU_IS_LOST)  # noqa: F821 - set from the real module
    if field in spec.get("unsupported", []):
        raise _err(NVML_ERROR_NOT_SUPPORTED)  # noqa: F821
    return spec


def nvmlInit() -> None:  # noqa: N802 - NVML's names
    lib = _config().get("library", "ok")
    if lib == "missing":
        raise _err(NVML_ERROR_LIBRARY_NOT_FOUND)  # noqa: F821
    if lib == "no_driver":
        raise _err(NVML_ERROR_DRIVER_NOT_LOADED)  # noqa: F821
    if _state["t0"] is None:
        _state["t0"] = time.monotonic()


def nvmlShutdown() -> None:  # noqa: N802
    pass


def nvmlSystemGetDriverVersion() -> str:  # noqa: N802
    return "550.54.15"


def nvmlDeviceGetCount() -> int:  # noqa: N802
    return len(_config()["gpus"])


def nvmlDeviceGetHandleByIndex(i: int) -> _Handle:  # noqa: N802
    return _Handle(i, _config()["gpus"][i])


def nvmlDeviceGetHandleByUUID(uuid: str | bytes) -> _Handle:  # noqa: N802
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    for i, g in enumerate(_config()["gpus"]):
        if g["uuid"] == uuid:
            h = _Handle(i, g)
            _check(h, "handle")
            return h
    raise _err(NVML_ERROR_NOT_FOUND)  # noqa: F821


def nvmlDeviceGetUUID(h: _Handle) -> str:  # noqa: N802
    return h.mig or h.spec["uuid"]


def nvmlDeviceGetName(h: _Handle) -> str:  # noqa: N802
    return h.spec.get("name", "NVIDIA Fake GPU")


def nvmlDeviceGetSerial(h: _Handle) -> str:  # noqa: N802
    _check(h, "serial")
    return f"13240000{h.index:05d}"


def nvmlDeviceGetPciInfo(h: _Handle):  # noqa: N802
    return SimpleNamespace(busId=f"00000000:{0x17 + h.index:02X}:00.0")


def _watts(h: _Handle) -> float:
    w = h.spec.get("watts", 300)
    return CURVES[w][0](_t()) if w in CURVES else float(w)


def nvmlDeviceGetPowerUsage(h: _Handle) -> int:  # noqa: N802
    _check(h, "power")
    return int(round(_watts(h) * 1000))  # mW


def nvmlDeviceGetTotalEnergyConsumption(h: _Handle) -> int:  # noqa: N802
    spec = _check(h, "energy")
    if not spec.get("counter", True):
        raise _err(NVML_ERROR_NOT_SUPPORTED)  # noqa: F821
    t = _t()
    w = spec.get("watts")
    joules = CURVES[w][1](t) if w in CURVES else _watts(h) * t
    return int(1_000_000_000 + joules * 1000)  # mJ since the driver loaded


def nvmlDeviceGetEnforcedPowerLimit(h: _Handle) -> int:  # noqa: N802
    _check(h, "power_limit")
    return 700_000


def nvmlDeviceGetUtilizationRates(h: _Handle):  # noqa: N802
    _check(h, "utilization")
    return SimpleNamespace(gpu=87, memory=41)


def nvmlDeviceGetEncoderUtilization(h: _Handle):  # noqa: N802
    _check(h, "encoder_utilization")
    return [12, 167000]


def nvmlDeviceGetDecoderUtilization(h: _Handle):  # noqa: N802
    _check(h, "decoder_utilization")
    return [5, 167000]


def nvmlDeviceGetMemoryInfo(h: _Handle):  # noqa: N802
    _check(h, "memory")
    if h.mig:
        return SimpleNamespace(used=3 * 2**30, total=10 * 2**30, free=7 * 2**30)
    return SimpleNamespace(used=20 * 2**30, total=80 * 2**30, free=60 * 2**30)


def nvmlDeviceGetTemperature(h: _Handle, sensor: int) -> int:  # noqa: N802
    _check(h, "temperature")
    return 61


def nvmlDeviceGetClockInfo(h: _Handle, kind: int) -> int:  # noqa: N802
    _check(h, "clock")
    return 1980 if kind == NVML_CLOCK_SM else 2619  # noqa: F821


def nvmlDeviceGetCurrentClocksThrottleReasons(h: _Handle) -> int:  # noqa: N802
    _check(h, "throttle_reasons")
    return 0x4  # SW power cap


def nvmlDeviceGetPcieThroughput(h: _Handle, counter: int) -> int:  # noqa: N802
    _check(h, "pcie")
    return 12_000  # KB/s


def nvmlDeviceGetMigMode(h: _Handle):  # noqa: N802
    if not h.spec.get("mig"):
        raise _err(NVML_ERROR_NOT_SUPPORTED)  # noqa: F821
    return [NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE]  # noqa: F821


def nvmlDeviceGetMaxMigDeviceCount(h: _Handle) -> int:  # noqa: N802
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(h: _Handle, k: int) -> _Handle:  # noqa: N802
    migs = h.spec.get("mig", [])
    if k >= len(migs):
        raise _err(NVML_ERROR_NOT_FOUND)  # noqa: F821
    return _Handle(h.index, h.spec, mig=migs[k])
