"""Writes the reference pages in docs/reference/ from the code itself, so they cannot go
stale: tests/test_docs_generated.py fails when a committed page differs from what this
writes.

    .venv/bin/python scripts/gen_docs.py          # write the pages
    .venv/bin/python scripts/gen_docs.py --check  # exit 1 naming the pages that differ

- configuration.md: every key of the configuration as the registry assembles it (the
  agent's own and each component's settings dataclass: type, default, allowed range
  from RANGES, environment variable from ENV_KEYS, flag from cli.FLAG_KEYS, the comment
  beside the field in the source);
- parquet.md: every column of aligned/, raw/marks/ and raw/samples/ from schema.py;
- metrics.md: every instrument an agent makes with every source present (the emulated
  BENCHLAB, two GPUs through tests/fake_nvml, RAPL and hwmon in a fake sysfs), read from
  a run of it: OTel name, kind, unit, attributes, description, and the Prometheus name.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import get_type_hints

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "reference"
HEADER = "<!-- written by scripts/gen_docs.py from the code; do not edit by hand -->\n\n"


# -- configuration ---------------------------------------------------------------------
def _field_notes(cls: type) -> dict[str, str]:
    """The comments beside and above each field in the class's source."""
    notes: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").rstrip())
            continue
        m = re.match(r"\s+(\w+):[^#]*?(?:#\s*(.*))?$", line)
        if m and not stripped.startswith(("def ", "@", '"""')):
            text = " ".join(above + ([m.group(2)] if m.group(2) else []))
            notes[m.group(1)] = text
        above = []
    return notes


def _type_name(t: object) -> str:
    text = getattr(t, "__name__", None) if not getattr(t, "__args__", None) else None
    return text or re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(t).replace("typing.", ""))


def _flags() -> dict[str, list[str]]:
    from otel_benchlab.commands.parsers import FLAG_KEYS, agent_parser, command_parser

    out: dict[str, list[str]] = {}
    parsers = [agent_parser()] + [command_parser(c) for c in ("replay", "retention")]
    for parser in parsers:
        for action in parser._actions:
            key = FLAG_KEYS.get(action.dest)
            if key and action.option_strings:
                flag = max(action.option_strings, key=len)
                if flag not in out.setdefault(key, []):
                    out[key].append(flag)
    return out


def configuration() -> str:
    from otel_benchlab.config import ENV_KEYS, RANGES, CoreConfig, sections

    envs = {key: var for var, key in ENV_KEYS.items()}
    flags = _flags()
    rows: list[str] = []

    def walk(cls: type, prefix: str) -> None:  # a settings dataclass, as its source has it
        hints = get_type_hints(cls)
        notes = _field_notes(cls)
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            typ = hints[f.name]
            if dataclasses.is_dataclass(typ):
                walk(typ, key + ".")
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            if key == "data_root":
                default = "$XDG_DATA_HOME/otel-benchlab (~/.local/share/otel-benchlab)"
            elif dataclasses.is_dataclass(default) or (
                    isinstance(default, list) and default and dataclasses.is_dataclass(
                        default[0])):
                default = "[]"
            lo_hi = RANGES.get(key)
            rng = "" if lo_hi is None else (
                f"> {lo_hi[0]:g}" if lo_hi[0] == 0 and isinstance(lo_hi[0], int)
                else f">= {lo_hi[0]:g}") + f", <= {lo_hi[1]:g}"
            rows.append("| `{}` | {} | `{}` | {} | {} | {} | {} |".format(
                key, _type_name(typ).replace("|", "or"), json.dumps(default)
                if not isinstance(default, str) or key != "data_root" else default,
                rng, f"`{envs[key]}`" if key in envs else "",
                ", ".join(f"`{x}`" for x in flags.get(key, [])),
                notes.get(f.name, "").replace("|", "\\|")))

    walk(CoreConfig, "")
    for section, classes in sections():  # as the registry assembles the configuration
        for cls in classes:
            walk(cls, section + ".")
    logs = "`[[intake.log]]` tables take the keys `path`, `pattern`, `stage`, `pipeline`, " \
        "`stream`, `ts_format`, `from_start`, `next_stage` (see the pipelines page)."
    return (HEADER + "# Configuration reference\n\n"
            "Every key, in a TOML file (`--config FILE` or `BENCHLAB_CONFIG`) as a dotted "
            "key's table (`[intake]` `max_delay_s = 60`), with its type, default, the range "
            "that start-up accepts, and the environment variable and flag that set it. "
            "Precedence: defaults < file < environment < flags. An unknown key or a value "
            "out of range stops start-up (exit 2) naming it.\n\n"
            "| key | type | default | range | variable | flag | notes |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + logs + "\n\n"
            "The standard OpenTelemetry variables work as the SDK defines them "
            "(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, "
            "`OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`, `..._PROTOCOL`, `..._HEADERS`, "
            "`..._TIMEOUT`, `..._COMPRESSION`, `..._INSECURE`, `OTEL_TRACES_EXPORTER`, "
            "`OTEL_METRICS_EXPORTER`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`); "
            "`OTEL_TRACES_SAMPLER[_ARG]` sets `traces.sample_ratio` and "
            "`OTEL_METRIC_EXPORT_INTERVAL` (ms) `otlp.metric_interval_s`.\n")


# -- Parquet ---------------------------------------------------------------------------
def parquet() -> str:
    from otel_benchlab.session.schema import (
        COLUMN_NOTES,
        MARK_SCHEMA,
        SAMPLE_SCHEMA,
        aligned_schema,
    )

    def table(schema, where: str) -> str:
        rows = []
        for f in schema:
            note = COLUMN_NOTES.get(f"{where}.{f.name}") or COLUMN_NOTES.get(
                f"{where}.{re.sub(r'_gpu$', '_<label>', f.name)}", "")
            rows.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | "
                        f"{note} |")
        return "| column | type | null | meaning |\n|---|---|---|---|\n" + "\n".join(rows)

    return (HEADER + "# Parquet schema\n\n"
            "Each session's parts (`part-NNNNNN.parquet`, zstd), read with DuckDB "
            "(`read_parquet('SESSION/aligned/*.parquet')`), pyarrow or pandas.\n\n"
            "## aligned/: one row per stage span with power\n\n"
            "Shown for the power sources `sys` (the primary) and `gpu`; each further source "
            "adds the three `_<label>` columns.\n\n"
            + table(aligned_schema(["sys", "gpu"]), "aligned") +
            "\n\n## raw/marks/: every stage mark\n\n" + table(MARK_SCHEMA, "marks") +
            "\n\n## raw/samples/: every sensor reading, long format\n\n"
            + table(SAMPLE_SCHEMA, "samples") + "\n")


# -- metrics ---------------------------------------------------------------------------
def _run_agent(tmp: Path, seconds: float = 9.0) -> tuple[list[dict], str]:
    """Every source present (emulated BENCHLAB, fake GPUs and sysfs): the OTel metrics as
    the console exporter prints them, and the Prometheus exposition."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_sysfs import machine

    root = machine(tmp / "sys")
    spec = tmp / "nvml.json"
    spec.write_text(json.dumps({"gpus": [{"uuid": "GPU-aaaa", "watts": "wave"},
                                         {"uuid": "GPU-bbbb", "watts": 70}]}))
    cfg = tmp / "agent.toml"
    # No live lines: printed on the same stdout, one could land inside the exporter's JSON.
    cfg.write_text(f'status_interval_s = 3600\n[host]\nsysfs_root = "{root}"\n')
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(FAKE_NVML=str(spec), OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="console", OTEL_METRIC_EXPORT_INTERVAL="1000",
               BENCHLAB_PROBE_ADDR="off",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "fake_nvml"),
                                           env.get("PYTHONPATH", "")]))
    # Every instrument the agent creates, with or without data yet, written down as it is
    # created (the console exporter shows only those with data points).
    created = tmp / "instruments.jsonl"
    env["GEN_DOCS_INSTRUMENTS"] = str(created)
    proc = subprocess.Popen(
        [sys.executable, "-c", _RECORD_INSTRUMENTS, "--simulate", "--config", str(cfg),
         "--data-root", str(tmp / "data"), "--prom-bind", f"127.0.0.1:{port}",
         "--duration", str(seconds)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(seconds - 1.5)
    exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=10).read().decode()
    out, _ = proc.communicate(timeout=60)
    docs, at, dec = [], 0, json.JSONDecoder()
    while (at := out.find('{\n    "resource_metrics"', at)) >= 0:
        try:
            obj, end = dec.raw_decode(out, at)
        except ValueError:  # a live line printed into the middle of this one
            at += 1
            continue
        docs.append(obj)
        at = end
    instruments = [json.loads(line) for line in created.read_text().splitlines()]
    return docs, exposition, instruments


# Runs the agent with the SDK's Meter recording each instrument it creates.
_RECORD_INSTRUMENTS = """
import json, os, sys
from opentelemetry.sdk.metrics import Meter
out = open(os.environ["GEN_DOCS_INSTRUMENTS"], "a")
def recording(kind, create):
    def make(self, name, *args, unit="", description="", **kw):
        out.write(json.dumps({"name": name, "kind": kind, "unit": unit,
                              "description": description}) + "\\n")
        out.flush()
        return create(self, name, *args, unit=unit, description=description, **kw)
    return make
for attr, kind in (("create_counter", "counter"), ("create_up_down_counter",
        "up-down counter"), ("create_histogram", "histogram"), ("create_gauge", "gauge"),
        ("create_observable_counter", "counter"), ("create_observable_gauge", "gauge"),
        ("create_observable_up_down_counter", "up-down counter")):
    setattr(Meter, attr, recording(kind, getattr(Meter, attr)))
from otel_benchlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


_KINDS = {"sum": "counter", "gauge": "gauge", "histogram": "histogram"}


def metrics() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        docs, exposition, instruments = _run_agent(Path(tmp))
    found: dict[str, dict] = {}
    for inst in instruments:
        found.setdefault(inst["name"], {"unit": inst["unit"],
                                        "description": inst["description"],
                                        "kind": inst["kind"], "attributes": set()})
    for doc in docs:
        for rm in doc["resource_metrics"]:
            for sm in rm["scope_metrics"]:
                for m in sm["metrics"]:
                    entry = found.setdefault(m["name"], {
                        "unit": m.get("unit", ""), "description": m.get("description", ""),
                        "kind": "", "attributes": set()})
                    data = m["data"]
                    entry["kind"] = entry["kind"] or (
                        "histogram" if "bucket_counts" in json.dumps(data)[:4000] else
                        "counter" if data.get("is_monotonic") else
                        "up-down counter" if "is_monotonic" in data else "gauge")
                    for point in data.get("data_points", []):
                        entry["seen"] = True
                        entry["attributes"].update(point.get("attributes", {}))
    helps = {m.group(1): m.group(2) for m in
             re.finditer(r"^# HELP (\S+) (.*)$", exposition, re.M)}
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))

    def prom_name(name: str, desc: str) -> str:
        base = re.sub(r"[^a-zA-Z0-9_]", "_", name)
        cands = [p for p in helps if p.startswith(base) and (helps[p] == desc or not desc)]
        cands = cands or [p for p in helps if p.startswith(base)]
        return min(cands, key=len) if cands else ""

    rows, claimed = [], set()
    for name in sorted(found):
        e = found[name]
        prom = prom_name(name, e["description"])
        claimed.add(prom)
        if not prom:  # no data in the run: the exporter's naming rule
            prom = re.sub(r"[^a-zA-Z0-9_]", "_", name)
            unit = {"By": "bytes", "s": "seconds"}.get(e["unit"], "")
            if unit and not prom.endswith(unit):
                prom += f"_{unit}"
            prom += "_total" if e["kind"] == "counter" else ""
        attrs = ", ".join(f"`{a}`" for a in sorted(e["attributes"])) or (
            "none" if e.get("seen") else "(no data in the run)")
        rows.append(f"| `{name}` | {e['kind']} | `{e['unit']}` | {attrs} | "
                    f"{'`' + prom + '`' if prom else ''} | {e['description']} |")
    prom_only = [f"| `{p}` | {types.get(p, '')} | {helps[p]} |" for p in sorted(helps)
                 if p not in claimed and not p.startswith(("target_info", "python_",
                                                           "process_"))
                 and not any(p.startswith(c) and c for c in claimed)]
    return (HEADER + "# Metrics reference\n\n"
            "Every instrument the agent makes when every source is present (a BENCHLAB, "
            "two NVIDIA GPUs, RAPL zones, hwmon chips, the host's CPU, the simulated "
            "pipeline), read from a run of it: its OpenTelemetry name, kind, unit and "
            "attributes (the keys; dots become underscores in Prometheus labels), and the "
            "name the Prometheus endpoint gives it.\n\n"
            "| OTel name | kind | unit | attributes | Prometheus | description |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + (
                "\n## Prometheus only\n\n| Prometheus | type | help |\n|---|---|---|\n"
                + "\n".join(prom_only) + "\n" if prom_only else ""))


# -- log messages ----------------------------------------------------------------------
def _message(node: ast.expr) -> str | None:
    """A log call's format string as the reader meets it: %s and {expressions} as ..."""
    parts: list[str] = []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.sub(r"%[-0-9.]*[sdfrg]", "…", node.value).replace("%%", "%")
    if isinstance(node, ast.JoinedStr):
        for v in node.values:
            parts.append(v.value if isinstance(v, ast.Constant) else "…")
        return "".join(parts)
    return None


def log_messages() -> str:
    rows = []
    for folder in ("otel_benchlab", "receivers", "processors", "exporters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_gen" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("warning", "error", "critical")
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id in ("log", "logger", "logging")
                        and node.args):
                    continue
                text = _message(node.args[0])
                if text:
                    where = path.relative_to(ROOT).as_posix()
                    rows.append(f"| {node.func.attr.upper()} | {text.replace('|', '/')} | "
                                f"`{where}` |")
            for node in ast.walk(tree):  # counted problems: logged once with their hint
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "add" and node.args
                        and isinstance(node.args[0], ast.Constant)):
                    continue
                hint = next((k.value for k in node.keywords if k.arg == "hint"),
                            node.args[2] if len(node.args) > 2 else None)
                name = node.args[0]
                text = _message(hint) if hint is not None else None
                if text and isinstance(name, ast.Constant):
                    where = path.relative_to(ROOT).as_posix()
                    rows.append(f"| WARNING, counted in `benchlab.agent.{name.value}` | "
                                f"{text.replace('|', '/')} | `{where}` |")
    return (HEADER + "# Log messages\n\nEvery warning and error the agent and its commands "
            "can log, as the source writes it (`…` stands for a value filled in: a device, "
            "file, key or count). Each says what happened and what to do; a recurring one is "
            "logged once and counted (`benchlab.agent.*`). Found by reading the code "
            "(`scripts/gen_docs.py`).\n\n| level | message | where |\n|---|---|---|\n"
            + "\n".join(rows) + "\n")


PAGES = {"configuration.md": configuration, "parquet.md": parquet, "metrics.md": metrics,
         "log-messages.md": log_messages}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, make in PAGES.items():
        text = make()
        if args.check:
            if not (OUT / name).exists() or (OUT / name).read_text() != text:
                stale.append(name)
        else:
            (OUT / name).write_text(text)
    if stale:
        print("stale: " + ", ".join(f"docs/reference/{n}" for n in stale)
              + " (run scripts/gen_docs.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
