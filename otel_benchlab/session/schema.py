"""Arrow schemas of what goes on disk, and the columnar form of StageSpans.

The aligned table is the one columnar form of annotated StageSpans: the live runtime builds
it from spans, replay builds it from arrays, and the Parquet and CapFrameX exporters both
take it, so one code path writes the files either way.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pyarrow as pa

from otel_benchlab.records import SpanBatch, StageMark, StageSpan
from otel_benchlab.timebase import TimeBase

MARK_SCHEMA = pa.schema([
    ("ts_ns", pa.int64()), ("ts_unix_ns", pa.int64()), ("pipeline", pa.string()),
    ("stream", pa.string()), ("stage", pa.string()), ("frame", pa.int64()),
])

SAMPLE_SCHEMA = pa.schema([
    ("ts_ns", pa.int64()), ("ts_unix_ns", pa.int64()), ("source", pa.string()),
    ("sensor", pa.string()), ("value", pa.float64()), ("rtt_ns", pa.int64()),
    ("uncertain", pa.bool_()),
])

# What each column means (docs/reference/parquet.md is written from these and the schemas).
COLUMN_NOTES: dict[str, str] = {
    "aligned.pipeline": "the pipeline's name",
    "aligned.stream": "the stream within it (a camera, a request queue)",
    "aligned.frame": "the frame id, where the source has one",
    "aligned.stage_from": "the stage the span starts at",
    "aligned.stage_to": "the stage it ends at",
    "aligned.start_ns": "start, host CLOCK_MONOTONIC ns (the one clock of the host)",
    "aligned.end_ns": "end, host CLOCK_MONOTONIC ns",
    "aligned.start_unix_ns": "start, Unix epoch ns (one offset measured at start)",
    "aligned.end_unix_ns": "end, Unix epoch ns",
    "aligned.latency_ms": "end - start",
    "aligned.power_source": "the primary power source's label (`sys` where present)",
    "aligned.power_mean_w": "the primary source's mean power over exactly [start, end]; "
                            "null where its samples are too far apart",
    "aligned.energy_j": "the primary source's energy while the span ran (overlapping spans "
                        "each count the same joules)",
    "aligned.energy_attr_j": "the span's attributed share of the primary source's energy "
                             "(all spans' shares plus idle add up to the meter's)",
    "aligned.power_mean_w_<label>": "the same for each further power source",
    "aligned.energy_j_<label>": "the same for each further power source",
    "aligned.energy_attr_j_<label>": "the same for each further power source",
    "aligned.trace_id": "the span's trace id (hex), also for frames not sampled into traces",
    "aligned.span_id": "the span's id (hex)",
    "aligned.request_id": "an LLM request's id (gen_ai.request.id) on its phases' and its "
                          "own rows (docs/llm-serving.md); null for every other span",
    "aligned.input_tokens": "the LLM request's input (prompt) tokens",
    "aligned.output_tokens": "the LLM request's output (completion) tokens",
    "marks.ts_ns": "when the stage was reached, host CLOCK_MONOTONIC ns",
    "marks.ts_unix_ns": "the same, Unix epoch ns",
    "marks.pipeline": "the pipeline's name",
    "marks.stream": "the stream within it",
    "marks.stage": "the stage reached",
    "marks.frame": "the frame id, where the source has one",
    "samples.ts_ns": "when the reading was taken, host CLOCK_MONOTONIC ns (a BENCHLAB's: "
                     "the middle of the request's round trip)",
    "samples.ts_unix_ns": "the same, Unix epoch ns",
    "samples.source": "the device (a BENCHLAB's uid, `nvml`, `rapl`, `hwmon`, `host-cpu`)",
    "samples.sensor": "the sensor's name on that device (`SYS`, `gpu0.power`, ...)",
    "samples.value": "the reading, in the sensor's unit (W, J, V, A, degrees C, RPM, ratio)",
    "samples.rtt_ns": "the request's round trip, for a BENCHLAB (0 elsewhere)",
    "samples.uncertain": "the reading's time is uncertain (a round trip over the limit)",
}

_ALIGNED_HEAD = [
    ("pipeline", pa.string()), ("stream", pa.string()), ("frame", pa.int64()),
    ("stage_from", pa.string()), ("stage_to", pa.string()),
    ("start_ns", pa.int64()), ("end_ns", pa.int64()),
    ("start_unix_ns", pa.int64()), ("end_unix_ns", pa.int64()),
    ("latency_ms", pa.float64()),
    ("power_source", pa.string()), ("power_mean_w", pa.float64()), ("energy_j", pa.float64()),
    ("energy_attr_j", pa.float64()),
]


# Power-source labels, the same text in every place a user meets them: the aligned
# power_source column and power_mean_w_<label> / energy_j_<label> columns, the span
# attributes benchlab.power.mean.<label> / benchlab.energy.<label>, the metric attribute
# benchlab.power.source, CapFrameX's Power_<label>_W columns, and the power_sources setting.
# Lowercase: sys, cpu, gpu for a BENCHLAB (sys_<uid tail> ... with several), sim_gpu0 for
# the simulated GPU. The whole machine comes first where it is measured.
PRIMARY_POWER_SOURCES = ("sys", "cpu", "gpu")


def power_source_order(labels: list[str]) -> list[str]:
    return [p for p in PRIMARY_POWER_SOURCES if p in labels] + [
        p for p in labels if p not in PRIMARY_POWER_SOURCES]


@functools.lru_cache(maxsize=1024)
def column_suffix(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


@functools.lru_cache(maxsize=1024)
def power_keys(label: str) -> tuple[str, str, str]:
    """The span attribute keys of a source's mean power, its energy while the span ran,
    and the span's attributed share of it."""
    # Per span and power source otherwise: a regex and three f-strings, thousands a second.
    suffix = column_suffix(label)
    return (f"benchlab.power.mean.{suffix}", f"benchlab.energy.{suffix}",
            f"benchlab.energy.attributed.{suffix}")


def aligned_schema(power_sources: list[str]) -> pa.Schema:
    """The first source fills power_source/power_mean_w/energy_j/energy_attr_j; each
    further source adds power_mean_w_<label>, energy_j_<label> and energy_attr_j_<label>.
    ``energy_j`` is the source's energy while the span ran; ``energy_attr_j`` the span's
    share of it (the spans' shares plus idle add up to the meter's energy)."""
    fields = list(_ALIGNED_HEAD)
    for label in power_sources[1:]:
        suffix = column_suffix(label)
        fields += [(f"power_mean_w_{suffix}", pa.float64()), (f"energy_j_{suffix}", pa.float64()),
                   (f"energy_attr_j_{suffix}", pa.float64())]
    fields += [("trace_id", pa.string()), ("span_id", pa.string())]
    # LLM requests (``processors.genai``): null for every other span.
    fields += [("request_id", pa.string()), ("input_tokens", pa.int64()),
               ("output_tokens", pa.int64())]
    return pa.schema(fields)


def attributed_columns(power_sources: list[str]) -> list[tuple[str, str]]:
    """(label, attributed energy column) for each power source, primary first."""
    return [(label, f"energy_attr_j{'' if i == 0 else '_' + column_suffix(label)}")
            for i, label in enumerate(power_sources)]


def power_columns(power_sources: list[str]) -> list[tuple[str, str, str]]:
    """(label, mean column, energy column) for each power source, primary first."""
    out = []
    for i, label in enumerate(power_sources):
        sfx = "" if i == 0 else "_" + column_suffix(label)
        out.append((label, f"power_mean_w{sfx}", f"energy_j{sfx}"))
    return out


def spans_to_table(spans: SpanBatch | list[StageSpan], tb: TimeBase,
                   power_sources: list[str]) -> pa.Table:
    batch = spans if isinstance(spans, SpanBatch) else SpanBatch.of(spans)
    schema = aligned_schema(power_sources)
    n = len(batch)
    start, end = batch.start_ns, batch.end_ns
    codes, names = batch.names()
    codes = pa.array(codes)
    cols: dict[str, object] = {
        "frame": [s.frame for s in batch.spans], "start_ns": start, "end_ns": end,
        "start_unix_ns": start + tb.offset_ns, "end_unix_ns": end + tb.offset_ns,
        "latency_ms": (end - start) / 1e6,
        "power_source": [power_sources[0] if power_sources else None] * n,
    }
    # Names as each distinct (pipeline, stream, from, to) taken by code: Arrow builds the
    # text columns without a Python string a span.
    for i, col in enumerate(("pipeline", "stream", "stage_from", "stage_to")):
        cols[col] = pa.array([k[i] for k in names], pa.string()).take(codes)
    unknown = np.full(n, np.nan)
    for label, mean_col, energy_col in power_columns(power_sources):
        mean, energy = batch.power.get(label, (unknown, unknown))
        cols[mean_col] = pa.array(mean, pa.float64(), from_pandas=True)
        cols[energy_col] = pa.array(energy, pa.float64(), from_pandas=True)
    for label, attr_col in attributed_columns(power_sources):
        cols[attr_col] = pa.array(batch.attributed.get(label, unknown), pa.float64(),
                                  from_pandas=True)
    if not power_sources:
        cols["power_mean_w"] = [None] * n
        cols["energy_j"] = [None] * n
        cols["energy_attr_j"] = [None] * n
    cols["trace_id"] = hex_column([s.trace_id for s in batch.spans], 16)
    cols["span_id"] = hex_column([s.span_id for s in batch.spans], 8)
    requests = [s.genai for s in batch.spans]
    if any(g is not None for g in requests):
        for col, attr in (("request_id", "request_id"), ("input_tokens", "input_tokens"),
                          ("output_tokens", "output_tokens")):
            cols[col] = [None if g is None else getattr(g, attr) for g in requests]
    else:
        for col in ("request_id", "input_tokens", "output_tokens"):
            cols[col] = pa.nulls(n, schema.field(col).type)
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def hex_column(ids: list[int], size: int) -> pa.Array:
    """Ids of ``size`` bytes as lowercase hex strings (``f"{id:0{2 * size}x}"``): the bytes
    of all of them hexed in one call, 3-4x faster than a format a span."""
    n = len(ids)
    try:
        text = b"".join(map(int.to_bytes, ids, [size] * n, ["big"] * n)).hex().encode()
    except OverflowError:  # not an id of that size: formatted one by one, as it is
        return pa.array([f"{i:0{2 * size}x}" for i in ids], pa.string())
    return fixed_width_strings(text, n, 2 * size)


def fixed_width_strings(data: bytes | np.ndarray, n: int, width: int) -> pa.Array:
    """``n`` strings of ``width`` bytes each, laid end to end in ``data``, as Arrow text
    without a copy of it."""
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def marks_to_table(marks: list[StageMark], tb: TimeBase) -> pa.Table:
    ts = np.fromiter((m.ts_ns for m in marks), np.int64, len(marks))
    return pa.table({
        "ts_ns": ts, "ts_unix_ns": ts + tb.offset_ns,
        "pipeline": pa.array([m.pipeline for m in marks], pa.string()),
        "stream": pa.array([m.stream for m in marks], pa.string()),
        "stage": pa.array([m.stage for m in marks], pa.string()),
        "frame": pa.array([m.frame for m in marks], pa.int64()),
    }, schema=MARK_SCHEMA)


def span_ends_to_table(spans: list[StageSpan], tb: TimeBase) -> pa.Table:
    """The raw marks of spans measured whole: each span's start and end, one after the
    other, as ``marks_to_table`` writes the two marks they stand for."""
    n = len(spans)
    ts = np.empty(2 * n, np.int64)
    ts[0::2] = np.fromiter((s.start_ns for s in spans), np.int64, n)
    ts[1::2] = np.fromiter((s.end_ns for s in spans), np.int64, n)

    def twice(values: list) -> list:
        return [v for v in values for _ in (0, 1)]

    stages = [x for s in spans for x in (s.stage_from, s.stage_to)]
    return pa.table({
        "ts_ns": ts, "ts_unix_ns": ts + tb.offset_ns,
        "pipeline": pa.array(twice([s.pipeline for s in spans]), pa.string()),
        "stream": pa.array(twice([s.stream for s in spans]), pa.string()),
        "stage": pa.array(stages, pa.string()),
        "frame": pa.array(twice([s.frame for s in spans]), pa.int64()),
    }, schema=MARK_SCHEMA)
