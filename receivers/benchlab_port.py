"""Finding and opening BENCHLAB devices: the serial ports with the meter's USB ids, one
open port speaking the byte protocol (a request is one write and a read of exactly the
reply length), identification (vendor data, UID, name, firmware layout) and discovery by
``auto``, a port path or ``uid:UID``. The reader (``benchlab``) polls what this opens.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial
from serial.tools import list_ports

from .benchlab_layout import (
    READ_NAME,
    READ_UID,
    READ_VENDOR_DATA,
    VENDOR_ID,
    WELCOME,
    Layout,
    UnknownFirmwareError,
    layout_for,
)

USB_VID, USB_PID = 0x0483, 0x5740  # stock ST VCP ids: a hint for scanning, not an identity


class DeviceError(Exception):
    """A port that is not (or no longer) a working BENCHLAB; ``reason`` is the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    port: str
    uid: str
    name: str
    layout: Layout

    @property
    def product(self) -> str:
        return self.layout.product

    @property
    def firmware(self) -> str:
        return f"fw{self.layout.fw_version:02d}"

    def attributes(self) -> dict[str, str]:
        return {"benchlab.device.name": self.name, "hw.model": self.product,
                "hw.firmware_version": self.firmware, "hw.vendor": "ElmorLabs"}


def scan_ports() -> list[str]:
    """ttyACM ports with the ST VCP ids (candidates only; identify before trusting)."""
    return sorted(p.device for p in list_ports.comports()
                  if p.vid == USB_VID and p.pid == USB_PID)


def permission_hint(path: str) -> str:
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = "dialout"
    return (f"permission denied on {path}: add your user to the '{group}' group "
            f"(sudo usermod -aG {group} $USER, then log in again) or install a udev rule "
            f"such as SUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"0483\", "
            f"ATTRS{{idProduct}}==\"5740\", MODE=\"0660\", GROUP=\"{group}\"")


class BenchlabPort:
    """One open serial port speaking the BENCHLAB protocol."""

    def __init__(self, path: str, timeout_s: float = 0.25) -> None:
        self.path = path
        self.timeout_s = timeout_s
        try:
            # exclusive: a port another device thread, agent or tool holds is skipped rather
            # than talked into (a WELCOME sent there would corrupt its conversation).
            self.ser = serial.Serial(path, 115200, bytesize=8, parity="N", stopbits=1,
                                     timeout=timeout_s, write_timeout=timeout_s,
                                     xonxoff=False, rtscts=False, dsrdtr=False, exclusive=True)
        except serial.SerialException as exc:
            if getattr(exc, "errno", None) == errno.EACCES or "Permission denied" in str(exc):
                raise DeviceError("permission", permission_hint(path)) from None
            if "exclusively lock" in str(exc):
                raise DeviceError("busy", f"{path} is in use by another program or agent; "
                                  "close it, or pick another device with --benchlab-device"
                                  ) from None
            raise DeviceError("open", f"cannot open {path}: {exc}") from None
        # Current firmware pushes a 32-byte welcome when RTS is asserted: drain it.
        self.drain(0.05)

    def drain(self, wait_s: float = 0.02) -> int:
        """Throw away whatever is waiting (a resync); returns the bytes dropped."""
        dropped = 0
        deadline = time.monotonic() + wait_s
        while True:
            n = self.ser.in_waiting
            if n:
                dropped += len(self.ser.read(n))
            elif time.monotonic() >= deadline:
                return dropped
            else:
                time.sleep(0.002)

    def request(self, payload: bytes, size: int) -> tuple[bytes, int, int]:
        """Write a request, read exactly ``size`` bytes (fewer on timeout).
        Returns (reply, write start ns, read end ns)."""
        t0 = time.monotonic_ns()
        self.ser.write(payload)
        data = self.ser.read(size)
        return data, t0, time.monotonic_ns()

    def identify(self) -> Identity:
        welcome, _, _ = self.request(bytes([WELCOME]), 9)
        if not welcome.startswith(b"BENCHLAB"):
            raise DeviceError("not_benchlab", f"{self.path} did not answer WELCOME like a "
                              f"BENCHLAB ({welcome[:16]!r})")
        self.drain(0.02)  # fw>=5 pads the welcome to 32 bytes
        vendor, _, _ = self.request(bytes([READ_VENDOR_DATA]), 3)
        if len(vendor) != 3 or vendor[0] != VENDOR_ID:
            raise DeviceError("not_benchlab", f"{self.path}: READ_VENDOR_DATA gave {vendor!r}")
        try:
            layout = layout_for(vendor[1], vendor[2])
        except UnknownFirmwareError as exc:
            raise DeviceError("unknown_firmware", f"{self.path}: {exc}") from None
        uid, _, _ = self.request(bytes([READ_UID]), 12)
        if len(uid) != 12:
            raise DeviceError("short_read", f"{self.path}: READ_UID gave {len(uid)} bytes")
        name, _, _ = self.request(bytes([READ_NAME]), 32)
        text = name.split(b"\0", 1)[0].decode("utf-8", "replace") or "BENCHLAB"
        return Identity(self.path, uid.hex().upper(), text, layout)

    def close(self) -> None:
        with contextlib.suppress(OSError, serial.SerialException):
            self.ser.close()


def open_device(path: str, timeout_s: float = 0.25) -> tuple[BenchlabPort, Identity]:
    port = BenchlabPort(path, timeout_s)
    try:
        return port, port.identify()
    except (DeviceError, OSError, serial.SerialException):
        port.close()
        raise


def discover(spec: str, ports: Callable[[], list[str]] = scan_ports,
             timeout_s: float = 0.25) -> tuple[list[tuple[BenchlabPort, Identity]],
                                               list[DeviceError]]:
    """Open and identify the devices ``spec`` selects: ``auto`` (every BENCHLAB found),
    a port path, or ``uid:UID``. Returns the devices and the errors met on the way."""
    want_uid = spec[4:].upper() if spec.startswith("uid:") else None
    paths = [spec] if spec not in ("auto",) and want_uid is None else ports()
    found, errors = [], []
    for path in paths:
        try:
            port, ident = open_device(path, timeout_s)
        except DeviceError as exc:
            errors.append(exc)
            continue
        except (OSError, serial.SerialException) as exc:
            errors.append(DeviceError("io_error", f"{path}: {exc}"))
            continue
        if want_uid and ident.uid != want_uid:
            port.close()
            continue
        found.append((port, ident))
    return found, errors
