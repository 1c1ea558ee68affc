"""``output.webdataset`` keys and the deprecated ``output.webdataset_compression``: good values reach
the Sink, bad ones fail before any data is read, in one line naming the key (exit 2 on the CLI)."""

from __future__ import annotations

import pytest

from shardsmith.compiler.build import build_sink
from shardsmith.compiler.config import compose
from shardsmith.errors import ConfigError
from tests.conftest import cli


def sink_with(*overrides):
    return build_sink(compose(["source.paths=[x.parquet]", *overrides]))


def test_defaults_and_settings_reach_the_sink():
    sink = sink_with()
    assert (sink.webdataset_rows_per_sample, sink.webdataset_compression) == (1024, "none")
    sink = sink_with("output.webdataset.rows_per_sample=1", "output.webdataset.compression=gzip")
    assert (sink.webdataset_rows_per_sample, sink.webdataset_compression) == (1, "gzip")
    assert sink_with("output.webdataset.compression=zstd").webdataset_compression == "zstd"


@pytest.mark.parametrize("old,new", [("gzip", "none"), ("gzip", "gzip"), ("zstd", "none"), ("none", "none")])
def test_the_deprecated_key_still_sets_the_compression(old, new, caplog):
    sink = sink_with(f"output.webdataset_compression={old}", f"output.webdataset.compression={new}")
    assert sink.webdataset_compression == old
    assert "output.webdataset_compression is deprecated; use output.webdataset.compression" in caplog.text


@pytest.mark.parametrize("override,expected", [
    ("output.webdataset.rows_per_sample=0", "output.webdataset.rows_per_sample: expected an integer in [1, 1048576], "
                                            "got 0"),
    ("output.webdataset.rows_per_sample=2000000", "output.webdataset.rows_per_sample: expected an integer"),
    ("output.webdataset.rows_per_sample=many", "output.webdataset.rows_per_sample"),
    ("output.webdataset.compression=lz4", "output.webdataset.compression: expected one of none, gzip, zstd, got 'lz4'"),
    ("output.webdataset.compresion=gzip", "compresion"),
    ("output.webdataset_compression=bzip2", "output.webdataset_compression: expected one of none, gzip, zstd"),
])
def test_bad_values_name_the_key(override, expected):
    with pytest.raises(ConfigError) as e:
        sink_with(override)
    assert expected in str(e.value)


def test_conflicting_and_pointless_settings_are_refused():
    with pytest.raises(ConfigError, match="output.webdataset_compression: conflicts with "
                                          "output.webdataset.compression='zstd'"):
        sink_with("output.webdataset_compression=gzip", "output.webdataset.compression=zstd")
    with pytest.raises(ConfigError, match="output.webdataset.compression: zstd compresses the members of batched"):
        sink_with("output.webdataset.rows_per_sample=1", "output.webdataset.compression=zstd")


@pytest.mark.parametrize("override,fragment", [
    ("output.webdataset.rows_per_sample=-3", "output.webdataset.rows_per_sample: expected an integer"),
    ("output.webdataset.compression=brotli", "output.webdataset.compression: expected one of"),
    ("output.webdataset_compression=xz", "output.webdataset_compression: expected one of"),
])
def test_the_cli_fails_with_one_line_exit_2_and_no_output(tmp_path, demo_dir, override, fragment):
    out = tmp_path / "out"
    proc = cli("compile", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={out}", "engine=inprocess",
               "output.format=[parquet,webdataset]", f"hydra.run.dir={tmp_path}/hydra", override)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith("out")]
