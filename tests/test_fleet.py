"""Three "nodes" (three agents, each with its own k8s.node.name, as the DaemonSet sets it)
upload into one bucket of a real S3 protocol (moto's server on loopback). The store then
reads as one fleet: `otel-benchlab sessions` lists them, pyarrow's hive-partitioned
dataset (and DuckDB over it, as the README shows) reads every node as one table, and
report, compare and replay take the sessions' store addresses. Retention in the store
removes by the end session.json records. A plain path (a shared volume) works the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from otel_benchlab.fleet.dataset import (
    expire_sessions,
    fetch_session,
    find_session,
    open_dataset,
)
from otel_benchlab.fleet.store import Store
from otel_benchlab.session.window import iso, parse_time
from otel_benchlab.views.sessions import load_session

from .s3 import CREDENTIALS, MotoS3
from .test_end_to_end import agent_cmd, agent_env

pytestmark = pytest.mark.e2e
BUCKET = "fleet"
NODES = {"gpu-a": "", "gpu-b": "", "gpu-c": 'power_sources = ["sys", "gpu"]\n'}


def _run_agents(tmp: Path, uri: str, endpoint: str, seconds: float = 8) -> None:
    procs = []
    for node, extra in NODES.items():
        cfg = tmp / f"{node}.toml"
        cfg.write_text(f'{extra}[probe]\nlisten = "off"\n[parquet]\npart_seconds = 3\n'
                       f'[upload]\nuri = "{uri}"\nendpoint = "{endpoint}"\n')
        procs.append(subprocess.Popen(
            agent_cmd("--simulate", "--duration", str(seconds), "--data-root",
                      str(tmp / node), "--session", f"run-{node}", "--prom-bind", "off",
                      "--config", str(cfg)),
            env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                          OTEL_RESOURCE_ATTRIBUTES=f"k8s.node.name={node}", **CREDENTIALS),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]


def cli(*args: str, endpoint: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_benchlab", *args], capture_output=True,
                          text=True, timeout=120,
                          env=agent_env(BENCHLAB_UPLOAD_ENDPOINT=endpoint, **CREDENTIALS))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    moto = MotoS3(tmp / "moto").start()
    moto.create_bucket(BUCKET)
    _run_agents(tmp, f"s3://{BUCKET}/benchlab", moto.endpoint)
    yield moto, tmp
    moto.stop()


def _listed(moto: MotoS3, *flags: str) -> list[dict]:
    out = cli("sessions", f"s3://{BUCKET}/benchlab", "--json", *flags, endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_sessions_lists_every_nodes_session(fleet):
    moto, _ = fleet
    listed = _listed(moto)
    assert sorted((s["node"], s["session"]) for s in listed) == \
        [(n, f"run-{n}") for n in NODES]
    assert all(s["frames"]["sim"] > 100 and s["duration_s"] > 7 for s in listed)


def test_sessions_filters_by_node_date_and_pipeline(fleet):
    moto, _ = fleet
    assert [s["node"] for s in _listed(moto, "--node", "gpu-b")] == ["gpu-b"]
    assert len(_listed(moto, "--pipeline", "sim")) == 3
    assert _listed(moto, "--pipeline", "decoder") == []
    assert _listed(moto, "--since", "2999-01-01") == []


def test_the_table_view_names_each_sessions_address(fleet):
    moto, _ = fleet
    out = cli("sessions", f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    assert f"s3://{BUCKET}/benchlab/kind=aligned/node=gpu-a/" in out.stdout


def _aligned_dataset(moto: MotoS3) -> ds.Dataset:
    """As a user reads the fleet: pyarrow's dataset, hive partitions, the power columns
    of every session unioned (nodes measure different sources)."""
    source = f"{BUCKET}/benchlab/kind=aligned"
    fs = moto.fs()
    first = ds.dataset(source, filesystem=fs, format="parquet", partitioning="hive")
    schema = pa.unify_schemas([f.physical_schema for f in first.get_fragments()])
    schema = pa.unify_schemas([schema, first.partitioning.schema])
    return ds.dataset(source, filesystem=fs, format="parquet", partitioning="hive",
                      schema=schema)


def test_a_hive_dataset_reads_every_node_as_one_table(fleet):
    moto, tmp = fleet
    table = _aligned_dataset(moto).to_table()
    local = sum(ds.dataset(str(tmp / n / "sessions" / f"run-{n}" / "aligned"),
                           format="parquet").count_rows() for n in NODES)
    assert table.num_rows == local
    assert sorted(set(table["node"].to_pylist())) == sorted(NODES)
    # gpu-c measured sys and gpu only: its rows have no cpu energy, the others do.
    cpu = [c for c in table.column_names if c.startswith("energy_") and "cpu" in c][0]
    by_node = table.group_by("node").aggregate([(cpu, "count")]).to_pylist()
    assert {r["node"]: r[f"{cpu}_count"] > 0 for r in by_node} == \
        {"gpu-a": True, "gpu-b": True, "gpu-c": False}


def test_duckdb_answers_energy_per_frame_per_stage_per_node_as_the_readme_shows(
        fleet, monkeypatch):
    moto, _ = fleet
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    fleet = open_dataset(f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint,  # noqa: F841
                         since="2026-11-26")
    rows = duckdb.sql("""
        SELECT node, stage_from || '->' || stage_to AS stage, count(*) AS frames,
               avg(energy_attr_j) * 1000 AS mj_per_frame
        FROM fleet WHERE pipeline = 'sim'
        GROUP BY ALL ORDER BY node, stage""").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(n, s) for n in NODES for s in
                                           ("encoded->inference_done", "ingress->encoded")]
    assert all(r[2] > 100 and r[3] > 0 for r in rows)


def test_open_dataset_unions_the_power_columns_and_prunes_by_node(fleet, monkeypatch):
    moto, _ = fleet
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    whole = open_dataset(f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint)
    assert whole.count_rows() == _aligned_dataset(moto).count_rows()
    one = open_dataset(f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint, node="gpu-c")
    assert set(one.to_table(columns=["node"])["node"].to_pylist()) == {"gpu-c"}
    samples = open_dataset(f"s3://{BUCKET}/benchlab", kind="samples", endpoint=moto.endpoint)
    assert {"sensor", "value", "node"} <= set(samples.schema.names)


def test_compare_takes_two_nodes_sessions_in_the_store(fleet):
    moto, tmp = fleet
    a, b = (f"s3://{BUCKET}/benchlab/session=run-{n}" for n in ("gpu-a", "gpu-b"))
    out = cli("compare", a, b, "--json", str(tmp / "cmp.json"), endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp / "cmp.json").read_text())
    assert result["baseline"] == a and result["candidate"] == b
    assert {(p["from"], p["to"]) for p in result["pairs"]} >= {("ingress", "encoded")}


def test_report_reads_a_stored_session(fleet):
    moto, tmp = fleet
    where = _listed(moto, "--node", "gpu-c")[0]["address"]
    out = cli("report", where, "-o", str(tmp / "r.html"), "--json", str(tmp / "r.json"),
              endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    (session,) = json.loads((tmp / "r.json").read_text())["sessions"]
    assert session["id"] == "run-gpu-c" and session["path"] == where
    assert session["pairs"][0]["frames"] > 100


def test_replay_reads_a_stored_session_into_a_local_folder(fleet):
    moto, tmp = fleet
    out = cli("replay", f"s3://{BUCKET}/benchlab/session=run-gpu-a", "--pair", "ingress",
              "inference_done", "--out", str(tmp / "replayed"), endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    assert ds.dataset(str(tmp / "replayed" / "aligned"), format="parquet").count_rows() > 100


def test_store_retention_dry_run_changes_nothing_and_a_run_removes_only_old_sessions(
        fleet, monkeypatch):
    moto, _ = fleet
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    store = Store(f"s3://{BUCKET}/benchlab", moto.endpoint)
    old = next(s for s in _listed(moto) if s["node"] == "gpu-b")
    key = old["address"].split(f"{BUCKET}/benchlab/", 1)[1] + "/_session.json"
    manifest = json.loads(store.get(key))
    manifest["ended_at"] = "2026-01-01T00:00:00+00:00"  # long before the others
    store.put(key, json.dumps(manifest).encode())
    before = moto.objects(BUCKET)
    out = cli("retention", "--store", f"s3://{BUCKET}/benchlab", "--days", "30",
              "--dry-run", endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    assert "would remove s3://fleet/benchlab/kind=aligned/node=gpu-b" in out.stdout
    assert moto.objects(BUCKET) == before
    out = cli("retention", "--store", f"s3://{BUCKET}/benchlab", "--days", "30",
              endpoint=moto.endpoint)
    assert out.returncode == 0, out.stderr
    after = moto.objects(BUCKET)
    assert not [k for k in after if "session=run-gpu-b" in k]
    assert {k for k in before if "session=run-gpu-b" not in k} == set(after)


def test_a_plain_path_store_holds_the_same_layout_and_no_half_files(tmp_path):
    shared = tmp_path / "shared"
    _run_agents(tmp_path, str(shared), "", seconds=4)
    files = [p for p in shared.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".")]  # no temporary names left
    local = tmp_path / "gpu-a" / "sessions" / "run-gpu-a"
    stored = shared / "kind=aligned" / "node=gpu-a"
    (folder,) = stored.glob("date=*/session=run-gpu-a")
    assert (folder / "_session.json").read_bytes() == (local / "session.json").read_bytes()
    for part in (local / "raw" / "samples").glob("part-*.parquet"):
        twin = shared / "kind=samples" / "node=gpu-a" / folder.parent.name / folder.name / \
            part.name
        assert twin.read_bytes() == part.read_bytes()
    out = cli("sessions", str(shared), "--json")
    assert len(out.stdout.splitlines()) == 3, out.stderr
    out = cli("report", str(local))  # run on the node: the report goes to the store too
    assert out.returncode == 0 and "uploaded report.html" in out.stdout, out.stderr
    assert (folder / "_report.html").read_bytes() == (local / "report.html").read_bytes()
    result = expire_sessions(Store(str(shared)), days=30, dry_run=True)
    assert not result.removed and len(result.kept) == 3
    assert pafs.LocalFileSystem().get_file_info(str(shared)).type == pafs.FileType.Directory


def test_open_dataset_keeps_the_rows_of_a_window_by_their_own_time(fleet, monkeypatch):
    moto, _ = fleet
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    ends = _aligned_dataset(moto).to_table(columns=["end_unix_ns"])["end_unix_ns"]
    cut = sorted(ends.to_pylist())[len(ends) // 2]
    since = iso(cut)
    lo = parse_time(since, "", None)
    window = open_dataset(f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint, since=since)
    assert window.count_rows() == sum(1 for e in ends.to_pylist() if e >= lo)
    before = open_dataset(f"s3://{BUCKET}/benchlab", endpoint=moto.endpoint, until=since)
    assert before.count_rows() + window.count_rows() == len(ends)


def test_a_window_of_a_stored_session_downloads_only_its_parts(fleet, tmp_path,
                                                                monkeypatch):
    moto, _ = fleet
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    found = find_session(f"s3://{BUCKET}/benchlab/session=run-gpu-a", moto.endpoint)
    stored = [i for i in found.store.list(found.place.folder("aligned"))
              if i.base_name.startswith("part-")]
    folder = fetch_session(found, tmp_path, since="1s")
    fetched = list((folder / "aligned").glob("part-*.parquet"))
    assert 1 <= len(fetched) < len(stored) >= 2
    assert (folder / "session.json").exists()
    assert not (folder / "capframex").exists()
    whole = fetch_session(found, tmp_path / "whole")
    ends = ds.dataset(whole / "aligned").to_table(columns=["end_unix_ns"])[
        "end_unix_ns"].to_numpy()
    cut = int(ends.max()) - 10**9  # a duration counts back from the end to the nanosecond
    view = load_session(folder, since="1s")
    assert sum(len(p.end_ns) for p in view.pairs) == int((ends >= cut).sum()) > 0
