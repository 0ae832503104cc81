"""How a setting is read: a TOML or string value turned into its declared type, a table
applied to a settings dataclass, the address syntaxes, and ``ConfigError``, which names the
key and where it came from (file, variable or flag).

Every component's settings dataclass and the configuration assembly (``config``) use this;
it imports nothing of the package, so a probe in an application can use it too.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A bad setting; the message names the key, where it came from and what to do."""


def setting_error(key: str, msg: str) -> ConfigError:
    return ConfigError(f"setting '{key}': {msg}")


def coerce(value: Any, typ: Any, where: str) -> Any:
    """Turn a TOML or string value into ``typ``; raise ConfigError naming ``where``."""
    origin = get_origin(typ)
    if dataclasses.is_dataclass(typ):  # a table of an array of tables ([[intake.log]])
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        obj = typ()
        apply_table(obj, value, where)
        return obj
    if origin is list:
        (item,) = get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vt = get_args(typ)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    args = [a for a in get_args(typ) if a is not type(None)]
    if args and type(None) in get_args(typ):  # Optional[X]
        if value is None or value == "":
            return None
        return coerce(value, args[0], where)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):  # nan and inf pass float() but no setting works
                raise ConfigError(f"{where}: {value!r} is not a finite number")
            return number
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {value!r} is not a valid {getattr(typ, '__name__', typ)}"
        ) from None
    raise ConfigError(f"{where}: unsupported setting type {typ}")  # pragma: no cover


def apply_table(obj: Any, table: dict[str, Any], where: str) -> None:
    """Set ``obj``'s fields from a TOML table; nested dataclasses take nested tables."""
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(
                f"{where}: unknown key '{key}' (known: {', '.join(sorted(names))})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table")
            apply_table(current, value, f"{where} [{key}]")
        else:
            setattr(obj, key, coerce(value, hints[key], f"{where}: key '{key}'"))


def set_dotted(cfg: Any, dotted: str, value: Any, where: str) -> None:
    *parents, leaf = dotted.split(".")
    obj: Any = cfg
    for p in parents:
        obj = getattr(obj, p)
    apply_table(obj, {leaf: value}, where)


def parse_probe_addr(addr: str) -> tuple[str, object] | None:
    """'udp://HOST:PORT' -> ("udp", (host, port)); 'unix:///path' -> ("unix", path);
    'off' or '' -> None."""
    text = addr.strip()
    if text.lower() in ("", "off", "none"):
        return None
    if text.startswith("unix://") and len(text) > len("unix://"):
        return "unix", text[len("unix://"):]
    if text.startswith("udp://"):
        hp = parse_bind(text[len("udp://"):], "probe.listen (BENCHLAB_PROBE_ADDR)")
        if hp is not None:
            return "udp", hp
    raise ConfigError(f"setting 'probe.listen' (BENCHLAB_PROBE_ADDR): {addr!r}: use "
                      "udp://HOST:PORT, unix:///PATH or off (example udp://127.0.0.1:4797)")


def parse_bind(bind: str, key: str = "prometheus.bind") -> tuple[str, int] | None:
    """'HOST:PORT', ':PORT' or 'PORT' -> (host, port); '', 'off' or '0' -> None. A port
    alone means loopback: listening wider is asked for by naming the address."""
    bind = bind.strip()
    if bind.lower() in ("", "off", "0", "none", "false"):
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError(
            f"setting '{key}': {bind!r} is not HOST:PORT (example 127.0.0.1:9109)"
        ) from None
    if not 0 < port_n < 65536:
        raise ConfigError(f"setting '{key}': port {port_n} out of range")
    return host, port_n


def validate_session_id(session_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", session_id) or ".." in session_id:
        raise ConfigError(
            f"session id {session_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return session_id
