"""Bad values for every config key and every op parameter, through the command line: each must give
one ``error:`` line naming the key, exit code 2, no traceback and nothing written. A new config key
must get its bad values here (test_every_key_is_fuzzed)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.cli.config_help import config_keys
from shardsmith.ops import base
from tests.test_cli_ux import assert_error

# key -> values that must be refused. Numbers past 64 bits, infinities, wrong types, empty values.
HUGE, U64 = "100000000000000000000000", "18446744073709551616"
BAD_VALUES = {
    "name": ["''", "'../up'"],
    "source.paths": ["[]", "/no/such/file.parquet", "'[1, 2]'"],
    "source.format": ["csvv"],
    "source.schema": ["[a]", "{nope: int32}"],
    "graph": ["3", "[{cols: [I1]}]"],
    "roles": ["[a]", "{label: nope}", "{nope: label}"],
    "plugins": ["no_such_module_xyz", "[1]", "ss_broken_plugin"],
    "split.key": ["nope"],
    "split.seed": ["-1", U64, "1.5"],
    "split.fractions": ["3", "{train: -1, test: 2}", "{Train: 1.0}", "{train: 0.5}"],
    "split.fit_on": ["nope"],
    "split.by": ["random"],
    "split.cuts": ["[2024-01-01]"],
    "split.names": ["[a, b]"],
    "split.values": ["{train: [a]}"],
    "split.default": ["nope"],
    "tables": ["3", "{users: {paths: []}}"],
    "source.on_error": ["skip"],
    "source.storage_options": ["3"],
    "output.storage_options": ["3"],
    "output.dir": ["''"],
    "output.format": ["csv", "[]"],
    "output.shard_rows": ["0", HUGE, "abc"],
    "output.shard_bytes": ["''", "0", "1e23", "MB"],
    "output.row_group_rows": ["0", HUGE],
    "output.compression": ["zip"],
    "output.writer": ["pandas", "cudf"],  # cudf: the GPU engine's writer, refused with engine.kind=cpu
    "output.compression_level": ["100", HUGE],
    "output.webdataset_compression": ["bz2"],
    "output.webdataset.rows_per_sample": ["0", HUGE, "abc"],
    "output.webdataset.compression": ["bz2", "1"],
    "output.overwrite": ["maybe"],
    "engine.kind": ["tpu"],
    "engine.cluster": ["k8s"],
    "engine.scheduler": ["localhost:8786"],
    "engine.n_workers": ["0", "two", HUGE, "1.5"],
    "engine.threads_per_worker": ["0", "100000"],
    "engine.processes": ["maybe"],
    "engine.cpu_kernels": ["fast", "1"],
    "engine.reads": ["twice"],
    "engine.memory_limit": ["lots", "''", "1e23"],
    "engine.partition_bytes": ["''", "0", "0.5", U64],
    "engine.rmm_pool_size": ["lots"],
    "engine.device_memory_limit": ["-1"],
    "engine.spill_cudf": ["maybe"],
    "engine.gpu_threads_per_worker": [HUGE],
    "engine.dashboard": ["maybe"],
    "engine.float_mode": ["fastest", "fast"],  # fast: float32 GPU kernels, refused with engine.kind=cpu
    "engine.host": ["'a b'", "''"],
    "stats.quantile_bits": ["0", "53"],
    "profiling.enabled": ["maybe"],
    "profiling.cost_per_hour": ["-1"],
    "profiling.gpus_per_node": ["-1"],
    "profiling.project_to_bytes": ["0"],
    "profiling.sample_interval": ["1000"],
    "profiling.progress": ["fancy"],
    "expect": ["3", "[{col: I1}]", "[{col: I1, check: nope}]"],
    "fit": ["3", "[a]"],
    "drift.psi": ["-1", "abc"],
    "drift.js": ["-1"],
    "drift.ks": ["-0.5"],
    "drift.null_rate": ["-1"],
    "drift.oov_rate": ["abc"],
    "drift.row_count": ["-1"],
    "drift.bins": ["1", "abc"],
}
ANY_VALUE_GOES = {"profiling.currency", "drift.split"}  # a label; a split name checked by 'shardsmith drift'

# (op, its other parameters, the parameter under test, bad values)
BAD_PARAMETERS = [
    ("hash_bucket", "cols: [C1]", "num_buckets", ["0", "1e23", HUGE, "9223372036854775808", "[1]", "true"]),
    ("hash_bucket", "cols: [C1], num_buckets: 10", "seed", ["-1", U64, "1.5"]),
    ("hash_bucket", "cols: [C1, C2], num_buckets: 10", "out", ["[Y, Y]", "[C2, Y]", "[Y]", "['', Y]"]),
    ("hashed_cross", "cols: [C1, C2], num_buckets: 10", "out", ["[Y, Y]", "I1", "__row"]),
    ("hashed_cross", "num_buckets: 10", "cols", ["[C1]", "5", "{C1: 1}"]),
    ("log1p", "cols: [I1, I2]", "out", ["[Y, Y]", "[I2, I1]", "[C1, Y]", "[Y]"]),
    ("log1p", "cols: [I1]", "lowr", ["1"]),
    ("fill_missing", "cols: [I1]", "value", ["inf", "nan", "1e400", "abc"]),
    ("fill_missing", "cols: [I1]", "strategy", ["mode", "1"]),
    ("clip", "cols: [I1]", "lower", ["-inf", "nan"]),
    ("clip", "cols: [I1], lower: 5", "upper", ["1", "-inf"]),
    ("bucketize", "cols: [I1]", "quantiles", ["1", "100000000"]),
    ("bucketize", "cols: [I1]", "boundaries", ["[]", "[2, 1]", "[1, inf]", "[nan]", "[a]"]),
    ("categorify", "cols: [C1]", "freq_threshold", ["-1", "9223372036854775808", "1.5"]),
    ("categorify", "cols: [C1]", "max_size", ["0", "9223372036854775808"]),
    ("cast", "cols: [I1]", "dtype", ["int128", "5"]),
    ("cast", "cols: [I1]", "on_error", ["ignore"]),
    ("rename", "", "mapping", ["[a]", "{I1: 5}", "{I1: ''}", "{I1: X, I2: X}", "{nope: X}", "{I1: I2}"]),
    ("drop", "", "cols", ["5", "[nope]", "[]"]),
    ("normalize", "", "cols", ["5", "true", "[C1]", "[nope]", "'X*'"]),
    ("filter", "", "expr", ["5", "''"]),
]


@pytest.fixture(scope="module", autouse=True)
def broken_plugin(tmp_path_factory):
    """A user's op module with a bug that shows while it is imported (written here: pytest would
    fail collecting it from the test tree)."""
    d = tmp_path_factory.mktemp("plugins")
    (d / "ss_broken_plugin.py").write_text('"""Registers nothing: it fails first."""\n\nRATE = 1 / 0\n')
    sys.path.insert(0, str(d))
    yield "ss_broken_plugin"
    sys.path.remove(str(d))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"label": rng.integers(0, 2, 200).astype(np.int8), "I1": rng.normal(size=200),
                             "I2": rng.normal(size=200).astype(np.float32),
                             "C1": pa.array([f"c{i % 7}" for i in range(200)]),
                             "C2": rng.integers(0, 9, 200)}), d / "part-0.parquet")
    return str(d / "part-0.parquet")


def _cases():
    for key, values in BAD_VALUES.items():
        for value in values:  # graph=[]: the default pipeline's ops need columns the small input lacks
            yield pytest.param([f"{key}={value}"] if key == "graph" else ["graph=[]", f"{key}={value}"], key,
                               id=f"{key}={value}")
    for op, others, param, values in BAD_PARAMETERS:
        for value in values:
            entry = ", ".join(p for p in (f"op: {op}", others, f"{param}: {value}") if p)
            yield pytest.param([f"graph=[{{{entry}}}]"], "graph[0]", id=f"{op}.{param}={value}")


@pytest.mark.slow
@pytest.mark.parametrize("overrides,key", list(_cases()))
def test_a_bad_value_is_one_line_naming_the_key(capsys, tmp_path, small, overrides, key):
    line = assert_error(capsys, ["plan", f"source.paths=[{small}]", *overrides])
    where = line[len("error: "):].split(": ", 1)[0]
    assert where == key or where.startswith((f"{key}.", f"{key}[")), line  # the key, or a part of it

@pytest.mark.parametrize("key", ["split.fractions", "plugins", "roles", "output.compression_level",
                                 "engine.n_workers", "engine.partition_bytes", "split.key"])
def test_compile_refuses_before_writing_anything(capsys, tmp_path, small, key):
    """A bad value through ``compile``: refused before Hydra makes a run directory and before
    output.dir exists."""
    override = f"{key}={BAD_VALUES[key][-1]}"
    args = ["compile", f"source.paths=[{small}]", f"output.dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/hydra",
            "engine=inprocess", "graph=[]", override]
    assert_error(capsys, args)
    assert os.listdir(tmp_path) == []


def test_op_parameters_through_compile_too(capsys, tmp_path, small):
    for op, others, param, values in BAD_PARAMETERS[:8]:
        entry = ", ".join(p for p in (f"op: {op}", others, f"{param}: {values[0]}") if p)
        assert_error(capsys, ["compile", f"source.paths=[{small}]", f"output.dir={tmp_path}/out",
                              f"hydra.run.dir={tmp_path}/hydra", "engine=inprocess", f"graph=[{{{entry}}}]"],
                     f"graph[0].{param}")
        assert os.listdir(tmp_path) == []


def test_every_key_is_fuzzed():
    assert set(config_keys()) - ANY_VALUE_GOES == set(BAD_VALUES), set(config_keys()) ^ set(BAD_VALUES)


def test_a_plugin_that_raises_on_import_is_one_line(capsys, small):
    line = assert_error(capsys, ["plan", f"source.paths=[{small}]", "plugins=[ss_broken_plugin]"],
                        "error: plugins[0]: plugin module 'ss_broken_plugin' raised ZeroDivisionError "
                        "on import: ", "ss_broken_plugin.py:")
    assert "Traceback" not in line


def test_duplicate_and_colliding_outputs_name_the_key(capsys, small):
    src = f"source.paths=[{small}]"
    assert_error(capsys, ["plan", src, "graph=[{op: log1p, cols: [I1, I2], out: [Y, Y]}]"],
                 "error: graph[0].out: the output column 'Y' is named more than once")
    assert_error(capsys, ["plan", src, "graph=[{op: log1p, cols: [I1], out: [I2]}]"],
                 "error: graph[0].out: the output column 'I2' already exists: give a new name")
    assert_error(capsys, ["plan", src, "graph=[{op: hashed_cross, cols: [C1, C2], num_buckets: 9}, "
                                       "{op: hashed_cross, cols: [C1, C2], num_buckets: 9}]"],
                 "error: graph[1].out: the output column 'C1_x_C2' already exists")
    assert_error(capsys, ["plan", src, "graph=[{op: hash_bucket, cols: [C1], num_buckets: 1e23}]"],
                 "error: graph[0].num_buckets: expected an integer, got 1e+23")
    assert_error(capsys, ["plan", src, "graph=[{op: hash_bucket, cols: [C1], num_buckets: 100000000000000000000000}]"],
                 "error: graph[0].num_buckets: expected an integer of at most 64 bits")


class _BrokenEntryPoint:
    name, value = "my_op", "my_pkg.ops:MyOp"

    def load(self):
        raise RuntimeError("boom")


def test_a_broken_op_package_is_named_when_its_op_is_asked_for(capsys, small, monkeypatch):
    monkeypatch.setattr(base, "entry_points", lambda group: [_BrokenEntryPoint()])
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(base, "_ENTRY_POINT_FAILURES", {})
    assert_error(capsys, ["plan", f"source.paths=[{small}]", "graph=[{op: my_op, cols: [I1]}]"],
                 "error: graph[0].op: unknown op 'my_op'",
                 "the installed op plugin 'my_op' failed to load: my_pkg.ops:MyOp: RuntimeError: boom")
