"""The probe datagram: what ``otel_benchlab.probe`` and ``otel-benchlab gst --to-agent``
send to the agent's probe receiver.

One datagram is UTF-8 text: the line ``bl1``, then one record per line, fields separated by
tabs (names may not hold tabs or newlines; the sender replaces them):

    m  TS_NS  PIPELINE  STREAM  STAGE  FRAME                      a stage mark
    s  START_NS  END_NS  PIPELINE  STREAM  FROM  TO  FRAME        a stage measured whole

Times are the host's CLOCK_MONOTONIC in ns, the same in every process and container of the
host; FRAME is an integer or empty. A datagram is at most ``MAX_DATAGRAM`` bytes.
"""

from __future__ import annotations

from otel_benchlab.settings import parse_probe_addr

MAGIC = "bl1"
MAX_DATAGRAM = 60_000
DEFAULT_ADDR = "udp://127.0.0.1:4797"
ADDR_VARIABLE = "BENCHLAB_PROBE_ADDR"


def clean(name: object) -> str:
    text = str(name)
    if "\t" in text or "\n" in text:
        text = text.replace("\t", " ").replace("\n", " ")
    return text


def mark_line(ts_ns: int, pipeline: str, stream: str, stage: str, frame: int | None) -> str:
    return (f"m\t{ts_ns}\t{clean(pipeline)}\t{clean(stream)}\t{clean(stage)}\t"
            f"{'' if frame is None else int(frame)}")


def span_line(start_ns: int, end_ns: int, pipeline: str, stream: str, stage_from: str,
              stage_to: str, frame: int | None) -> str:
    return (f"s\t{start_ns}\t{end_ns}\t{clean(pipeline)}\t{clean(stream)}\t"
            f"{clean(stage_from)}\t{clean(stage_to)}\t{'' if frame is None else int(frame)}")


def address(text: str | None):
    """(family, address) for a probe address; None when off."""
    return parse_probe_addr(text or DEFAULT_ADDR)
