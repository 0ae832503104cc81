"""Which power sources the agent measures energy with, the primary first."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from otel_benchlab.records import SensorInfo
from otel_benchlab.session.schema import power_source_order

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger("otel_benchlab")


def choose_power_sources(cfg: Config, sensors: list[SensorInfo]) -> dict[str, str]:
    """label -> kind ("power" or "energy"), primary first: the configured list, else sys,
    cpu, gpu, then any other power source in the order the receivers described them."""
    seen: dict[str, str] = {}
    for s in sensors:
        if s.power_source and s.power_source not in seen:
            seen[s.power_source] = "energy" if s.kind == "energy" else "power"
    if cfg.power_sources:
        missing = [p for p in cfg.power_sources if p not in seen]
        if missing:
            log.warning("power sources %s are configured but no receiver provides them "
                        "(have: %s); their energy columns stay empty", missing,
                        ", ".join(seen) or "none")
        return {p: seen.get(p, "power") for p in cfg.power_sources}
    return {p: seen[p] for p in power_source_order(list(seen))}
