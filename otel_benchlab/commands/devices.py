"""``otel-benchlab devices``: every power source found, with one reading each."""

from __future__ import annotations

import argparse
import sys

from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import LOG_LEVEL_DEFAULTS, config_from_args
from otel_benchlab.counters import AgentCounters


def cmd_devices(args: argparse.Namespace) -> int:
    from otel_benchlab.receivers.benchlab_layout import READ_SENSORS, decode
    from otel_benchlab.receivers.benchlab_port import discover, scan_ports
    from otel_benchlab.receivers.simulated import start_emulator

    cfg = config_from_args(args)
    setup_logging(cfg.log_format, args.log_level or LOG_LEVEL_DEFAULTS[args.command])
    emulator = start_emulator(cfg) if cfg.simulate else None
    try:
        spec = f"uid:{emulator.uid.hex().upper()}" if emulator else cfg.benchlab.device
        found, errors = discover(spec, emulator.ports if emulator else scan_ports,
                                 cfg.benchlab.read_timeout_ms / 1000)
        for e in errors:
            print(f"otel-benchlab: {e}", file=sys.stderr)
        from otel_benchlab.receivers.host import describe

        host_lines, host_power = describe(cfg.host, AgentCounters())
        if not found:
            print("No BENCHLAB found" + (" on the ttyACM ports with USB id 0483:5740"
                                         if spec == "auto" else f" for {spec}")
                  + ". Check the USB cable and `ls /dev/ttyACM*`; try --simulate to see an "
                  "emulated one.", file=sys.stderr)
        print("\n".join(host_lines))
        if not found:
            return 0 if host_power else 1
        rows = [("PORT", "UID", "NAME", "PRODUCT", "FIRMWARE")]
        rows += [(i.port, i.uid, i.name, i.product, i.firmware) for _, i in found]
        print(_table(rows))
        for port, ident in found:
            raw, t0, t1 = port.request(bytes([READ_SENSORS]), ident.layout.sensor_size)
            port.close()
            print(f"\n{ident.uid} ({ident.port}), one sample, round trip "
                  f"{(t1 - t0) / 1e6:.2f} ms:")
            if len(raw) != ident.layout.sensor_size:
                print(f"  short read: {len(raw)} of {ident.layout.sensor_size} bytes")
                continue
            print(_sample_table(decode(raw, ident.layout), ident.layout.rails))
        return 0
    finally:
        if emulator is not None:
            emulator.stop()


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _sample_table(values: dict[str, float], rails: tuple[str, ...]) -> str:
    rows = [("SENSOR", "VOLT (V)", "CURRENT (A)", "POWER (W)")]
    for group in ("SYS", "CPU", "GPU", "MB"):
        rows.append((group, "", "", f"{values[group]:.2f}"))
    for r in rails:
        rows.append((r, f"{values[f'{r}_V']:.3f}", f"{values[f'{r}_I']:.3f}",
                     f"{values[f'{r}_P']:.2f}"))
    out = [_table(rows), ""]
    rest = [(k, f"{v:g}") for k, v in values.items()
            if k not in ("SYS", "CPU", "GPU", "MB") and not k.endswith(("_V", "_I", "_P"))]
    out.append(_table([("SENSOR", "VALUE")] + rest))
    return "\n".join(out)


