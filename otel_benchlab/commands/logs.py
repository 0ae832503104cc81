"""Log lines on stderr as text or JSON, and the filters that keep the OpenTelemetry SDK's
exporters from repeating themselves."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        return json.dumps({"time": when.isoformat(timespec="milliseconds"),
                           "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


class OncePerMessage(logging.Filter):
    """Lets each message template through once. The OTel SDK's exporters log every failed
    attempt (a warning per retry, an error per batch); the agent counts those failures in
    benchlab.agent.export.failures and says once what to do, so repeats add nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


NOISY_SDK_LOGGERS = ("opentelemetry.exporter.otlp.proto.grpc.exporter",
                     "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                     "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                     "opentelemetry.sdk.trace.export", "opentelemetry.sdk._shared_internal",
                     "opentelemetry.sdk.metrics._internal.export")


class ExporterMessagesToDebug(logging.Filter):
    """The OTel SDK's OTLP exporters log each attempt against a collector that is down
    ("Transient error ... retrying", "Failed to export", "Shutdown in progress, aborting
    retry", "Exporter already shutdown"). The agent says once per cause and signal what to
    do (``export.failures``); the exporters' own lines become debug, shown with
    ``--log-level debug``. Only loggers under ``opentelemetry.exporter.`` are touched:
    everything else the SDK says keeps its level."""

    PREFIX = "opentelemetry.exporter."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.PREFIX) and record.levelno > logging.DEBUG:
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def setup_logging(fmt: str, level: str = "INFO") -> None:
    once = OncePerMessage()
    for name in NOISY_SDK_LOGGERS:
        logging.getLogger(name).addFilter(once)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ExporterMessagesToDebug())
    handler.setFormatter(_JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(LOG_LEVELS)} "
                                         "(any case)")
    return level


