"""The upload outbox, the store's layout and what retention and recovery do with a session
recorded with uploads on: plain files, no store needed (the plain-path store is a folder)."""

from __future__ import annotations

import json
import os
import time

import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.upload import UploadConfig, Uploader
from otel_benchlab.fleet.outbox import OUTBOX_NAME, Outbox
from otel_benchlab.fleet.store import SessionPlace, Store, local_name, object_name, refused
from otel_benchlab.session.recovery import recover_session
from otel_benchlab.session.retention import apply_retention

HEADER = {"store": "/unused", "endpoint": "", "node": "n1", "date": "2026-12-01",
          "session": "s1"}


def _session(tmp_path, ended_days_ago: float | None = None):
    path = tmp_path / "data" / "sessions" / "s1"
    (path / "aligned").mkdir(parents=True)
    manifest = {"session_id": "s1", "started_at": "2026-12-01T10:00:00+00:00"}
    if ended_days_ago is not None:
        ended = time.time() - ended_days_ago * 86400
        manifest["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ended))
    (path / "session.json").write_text(json.dumps(manifest))
    return path


def test_a_file_is_pending_until_its_upload_is_done(tmp_path):
    box = Outbox.create(tmp_path, HEADER)
    box.add("aligned/part-000001.parquet")
    (item,) = box.pending()
    box.done(item, 10)
    assert box.pending() == []


def test_a_file_added_again_while_it_uploads_goes_again(tmp_path):
    box = Outbox.create(tmp_path, HEADER)
    box.add("session.json")
    (first,) = box.pending()  # the uploader reads the start's manifest ...
    box.add("session.json")  # ... the end rewrites it meanwhile
    box.done(first, 10)
    assert [p.relpath for p in box.pending()] == ["session.json"]


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_append_is_whole(tmp_path):
    box = Outbox.create(tmp_path, HEADER)
    box.add("aligned/part-000001.parquet")
    with open(tmp_path / OUTBOX_NAME, "ab") as fh:
        fh.write(b'{"add":"aligned/part-0000')  # the crash came mid-append
    again = Outbox.open(tmp_path)
    again.add("aligned/part-000002.parquet")
    assert [p.relpath for p in Outbox.open(tmp_path).pending()] == \
        ["aligned/part-000001.parquet", "aligned/part-000002.parquet"]


def test_what_another_process_appends_is_seen_on_refresh(tmp_path):
    mine = Outbox.create(tmp_path, HEADER)
    Outbox.open(tmp_path).add("report.html")  # `otel-benchlab report`, say
    assert mine.pending() == []
    mine.refresh()
    assert [p.relpath for p in mine.pending()] == ["report.html"]


@pytest.mark.parametrize("relpath, kind, name", [
    ("aligned/part-000001.parquet", "aligned", "part-000001.parquet"),
    ("raw/marks/part-000002.parquet", "marks", "part-000002.parquet"),
    ("raw/samples/part-000003.parquet", "samples", "part-000003.parquet"),
    ("session.json", "aligned", "_session.json"),
    ("capframex/sim_a_to_b.csv", "aligned", "_capframex/sim_a_to_b.csv"),
    ("report.html", "aligned", "_report.html"),
])
def test_each_session_file_has_one_place_in_the_store_and_back(relpath, kind, name):
    assert object_name(relpath) == (kind, name)
    assert local_name(kind, name) == relpath


def test_what_engines_must_not_read_as_parquet_starts_with_an_underscore():
    for relpath in ("session.json", "capframex/x.csv", "report.html"):
        assert object_name(relpath)[1].startswith("_")


def test_a_session_folder_address_is_parsed_whatever_its_kind():
    prefix, place = SessionPlace.parse(
        "s3://b/p/kind=marks/node=gpu-1/date=2026-12-01/session=abc/")
    assert prefix == "s3://b/p" and place == SessionPlace("gpu-1", "2026-12-01", "abc")
    assert place.folder("aligned") == "kind=aligned/node=gpu-1/date=2026-12-01/session=abc"


def test_a_plain_path_store_never_shows_a_half_written_object(tmp_path):
    store = Store(str(tmp_path / "shared"))
    store.put("kind=aligned/node=n/part-000001.parquet", b"x" * 1000)
    files = [p for p in (tmp_path / "shared").rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["part-000001.parquet"]
    assert store.get("kind=aligned/node=n/part-000001.parquet") == b"x" * 1000


def test_a_relative_plain_path_is_refused_with_the_setting_named():
    with pytest.raises(ValueError, match="upload.uri"):
        Store("relative/path")


def test_refusals_are_told_from_outages_by_the_stores_error():
    assert refused(OSError("AWS Error INVALID_ACCESS_KEY_ID during PutObject operation"))
    assert refused(OSError("AWS Error NO_SUCH_BUCKET during CreateMultipartUpload"))
    assert refused(PermissionError("/mnt/shared: Permission denied"))
    assert not refused(OSError("AWS Error NETWORK_CONNECTION during PutObject: curlCode: 7"))


def test_retention_keeps_a_session_whose_outbox_holds_files(tmp_path):
    path = _session(tmp_path, ended_days_ago=100)
    box = Outbox.create(path, HEADER)
    box.add("session.json")
    result = apply_retention(tmp_path / "data", days=90, raw_keep_days=7)
    assert path.exists() and not result.sessions_removed
    assert "still to upload" in result.skipped[0][1]
    box.done(box.pending()[0], 10)
    apply_retention(tmp_path / "data", days=90, raw_keep_days=7)
    assert not path.exists()


def test_recovery_queues_the_parts_a_killed_agent_closed_but_never_noted(tmp_path):
    path = _session(tmp_path)
    box = Outbox.create(path, HEADER)
    box.add("aligned/part-000001.parquet")
    box.done(box.pending()[0], 10)
    for n in (1, 2):  # part 2 was renamed into place just before the kill
        (path / "aligned" / f"part-00000{n}.parquet").write_bytes(b"PAR1")
    recover_session(path)
    assert {p.relpath for p in Outbox.open(path).pending()} == \
        {"aligned/part-000002.parquet", "session.json"}


def test_a_file_removed_before_it_went_is_skipped_and_counted(tmp_path):
    path = _session(tmp_path)
    shared = tmp_path / "shared"
    counters = AgentCounters()
    uploader = Uploader(UploadConfig(uri=str(shared)), str(tmp_path / "data"), counters)
    uploader.open_session(path, json.loads((path / "session.json").read_text()))
    uploader.file_closed("aligned/part-000009.parquet")  # never written
    uploader.start()
    uploader.shutdown(5)
    assert Outbox.open(path).pending() == []
    assert counters.get("upload.failures", reason="local") == 1
    assert any(p.name == "_session.json" for p in shared.rglob("*"))


def test_the_gauges_say_what_waits_and_for_how_long(tmp_path):
    path = _session(tmp_path)
    counters = AgentCounters()
    uploader = Uploader(UploadConfig(uri=str(tmp_path / "shared")), str(tmp_path / "data"),
                        counters)
    uploader.open_session(path, json.loads((path / "session.json").read_text()))
    os.utime(path / "session.json")
    time.sleep(0.2)
    assert counters.gauge_value("upload.outbox.files") == 1  # not started: nothing went
    assert counters.gauge_value("upload.outbox.size") == (path / "session.json").stat().st_size
    assert counters.gauge_value("upload.lag") >= 0.2


def test_a_bandwidth_limit_spaces_the_uploads_to_its_average_rate(tmp_path):
    path = _session(tmp_path)
    for n in range(1, 5):
        (path / "aligned" / f"part-00000{n}.parquet").write_bytes(os.urandom(100_000))
    uploader = Uploader(UploadConfig(uri=str(tmp_path / "shared"), bandwidth_bytes_s=250_000),
                        str(tmp_path / "data"), AgentCounters())
    uploader.open_session(path, json.loads((path / "session.json").read_text()))
    t0 = time.monotonic()
    uploader.start()
    for n in range(1, 5):
        uploader.file_closed(f"aligned/part-00000{n}.parquet")
    box = Outbox.open(path)
    while box.pending():
        time.sleep(0.01)
        box.refresh()
    took = time.monotonic() - t0
    uploader.shutdown(0)
    # 400 kB at 250 kB/s: each file waits its own bytes' time before the next goes, so the
    # last one starts no sooner than 1.2 s in (a lower bound: a slow machine only adds).
    assert took >= 1.2


def test_a_filling_disk_while_uploads_fail_is_said_once(small_disk, tmp_path, caplog):
    data = small_disk / "data"
    path = data / "sessions" / "s1"
    path.mkdir(parents=True)
    (path / "session.json").write_text('{"session_id": "s1", "started_at": "2026-12-01"}')
    (small_disk / "filler").write_bytes(b"\0" * int(5.6 * 2**20))  # 6 MB disk, 93 % full
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the store's path runs through a file: every upload fails
    counters = AgentCounters()
    uploader = Uploader(UploadConfig(uri=str(blocked / "store"), retry_max_s=0.05),
                        str(data), counters)
    uploader.open_session(path, {"session_id": "s1", "started_at": "2026-12-01"})
    with caplog.at_level("WARNING", logger="otel_benchlab"):
        uploader.start()
        deadline = time.monotonic() + 10
        while counters.get("upload.failures") < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        uploader.shutdown(0)
    full = [r for r in caplog.records if "% full" in r.getMessage()]
    assert counters.get("upload.failures") >= 5 and len(full) == 1
    assert "retention keeps every session" in full[0].getMessage()


def test_the_drain_at_exit_cuts_a_long_back_off_short(tmp_path):
    path = _session(tmp_path)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    uploader = Uploader(UploadConfig(uri=str(blocked / "store"), retry_max_s=3600),
                        str(tmp_path / "data"), AgentCounters())
    uploader.open_session(path, json.loads((path / "session.json").read_text()))
    uploader.start()
    time.sleep(0.3)  # refused (a path through a file), and waiting an hour to try again
    blocked.unlink()  # the store is there now
    t0 = time.monotonic()
    uploader.shutdown(5)
    assert Outbox.open(path).pending() == [] and time.monotonic() - t0 < 4


@pytest.mark.parametrize("relpath", ["../../etc/passwd", "aligned/..", "aligned/.journal",
                                     "/etc/passwd", "notes.txt"])
def test_a_file_no_agent_writes_has_no_place_in_the_store(relpath):
    with pytest.raises(ValueError):
        object_name(relpath)


def test_an_outbox_line_no_agent_writes_is_skipped_and_the_rest_goes(tmp_path):
    path = _session(tmp_path)
    shared = tmp_path / "shared"
    uploader = Uploader(UploadConfig(uri=str(shared)), str(tmp_path / "data"), AgentCounters())
    uploader.open_session(path, json.loads((path / "session.json").read_text()))
    Outbox.open(path).add("../../etc/passwd")
    uploader.file_closed("session.json")
    uploader.start()
    uploader.shutdown(5)
    assert Outbox.open(path).pending() == []
    assert [p.name for p in shared.rglob("*") if p.is_file()] == ["_session.json"]


def test_an_outbox_whose_first_line_a_crash_tore_gets_its_header_again(tmp_path):
    (tmp_path / OUTBOX_NAME).write_bytes(b'{"outbox":1,"sto')
    box = Outbox.create(tmp_path, HEADER)
    assert box.header["store"] == "/unused"
    box.add("session.json")
    assert [p.relpath for p in Outbox.open(tmp_path).pending()] == ["session.json"]
