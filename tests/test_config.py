"""Settings: defaults < TOML < environment < flags; bad keys and values name themselves."""

from __future__ import annotations

import pytest

from otel_benchlab.config import ConfigError, load_config
from otel_benchlab.settings import validate_session_id


def write(tmp_path, text: str) -> str:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return str(p)


def test_precedence_is_defaults_then_file_then_environment_then_flags(tmp_path):
    path = write(tmp_path, 'sample_hz = 5.0\ndata_root = "/from/file"\n[prometheus]\n'
                           'bind = "127.0.0.1:1111"\n')
    cfg = load_config(path, env={"BENCHLAB_SAMPLE_HZ": "20", "BENCHLAB_PROM": "0.0.0.0:2222"},
                      overrides={"prometheus.bind": "127.0.0.1:3333"})
    assert cfg.sample_hz == 20.0
    assert cfg.data_root == "/from/file"
    assert cfg.prometheus.bind == "127.0.0.1:3333"
    assert cfg.pair_window_s == 2.0


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "[parquet]\npart_rowz = 5\n")
    with pytest.raises(ConfigError, match=r"agent.toml \[parquet\].*part_rowz"):
        load_config(path, env={})


def test_bad_value_names_the_variable():
    with pytest.raises(ConfigError, match="BENCHLAB_SAMPLE_HZ"):
        load_config(None, env={"BENCHLAB_SAMPLE_HZ": "fast"})


def test_standard_otel_variables_are_honoured():
    cfg = load_config(None, env={"OTEL_TRACES_SAMPLER": "traceidratio",
                                 "OTEL_TRACES_SAMPLER_ARG": "0.25",
                                 "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                                 "OTEL_METRIC_EXPORT_INTERVAL": "1500"})
    assert cfg.traces.sample_ratio == 0.25
    assert cfg.otlp.endpoint == ""  # left to the exporters, which read it per signal
    assert cfg.otlp.metric_interval_s == 1.5


def test_seed_capframex_stage_variables_add_a_pair():
    cfg = load_config(None, env={"CX_STAGE_A": "ingress", "CX_STAGE_B": "inference_done",
                                 "CX_APP": "mycam"})
    assert ["ingress", "inference_done"] in cfg.pairs and cfg.capframex.app == "mycam"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x..y", "/abs"])
def test_session_ids_with_path_tricks_are_refused(bad):
    with pytest.raises(ConfigError):
        validate_session_id(bad)


def test_a_pair_of_one_stage_is_refused():
    with pytest.raises(ConfigError, match=r"pairs\[0\]"):
        load_config(None, env={}, overrides={"pairs": [["a", "a"]]})


def test_an_unknown_trace_sampler_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER"):
        load_config(None, env={"OTEL_TRACES_SAMPLER": "jaeger_remote"})


def test_parent_based_ratio_sampler_takes_its_argument():
    cfg = load_config(None, env={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                 "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert cfg.traces.sample_ratio == 0.1


def test_power_sources_are_one_lowercase_naming():
    assert load_config(None, env={}, overrides={"power_sources": ["SYS", "Gpu"]}
                       ).power_sources == ["sys", "gpu"]


@pytest.mark.parametrize("uri", ["ftp://host/x", "relative/path", "bucket/prefix"])
def test_an_upload_address_no_store_takes_is_refused_before_anything_starts(uri):
    with pytest.raises(ConfigError, match="upload.uri"):
        load_config(env={"BENCHLAB_UPLOAD_URI": uri})


def test_upload_addresses_of_each_store_are_taken():
    for uri in ("s3://b/p", "gs://b/p", "abfs://c@a.dfs.core.windows.net/p", "/mnt/shared"):
        assert load_config(env={"BENCHLAB_UPLOAD_URI": uri}).upload.uri == uri
