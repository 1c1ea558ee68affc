"""Config errors name the key, and happen before any data is read."""

from __future__ import annotations

import pytest

from shardsmith.compiler.build import build
from shardsmith.compiler.config import compose, parse_size
from shardsmith.errors import ConfigError


def build_with(demo_dir, *overrides):
    return build(compose([f"source.paths=[{demo_dir}/*.parquet]", *overrides]))


def message(excinfo) -> str:
    return str(excinfo.value)


def test_default_config_composes_and_builds(demo_dir):
    g = build_with(demo_dir)
    assert g.name == "criteo_synthetic"
    assert [s.op.op_name for s in g.steps] == ["fill_missing", "clip", "log1p", "normalize", "hashed_cross",
                                               "categorify"]
    # Patterns expand against the input schema, in schema order.
    assert g.steps[0].op.cols == tuple(f"I{i}" for i in range(1, 14))
    assert g.steps[5].op.cols == tuple(f"C{i}" for i in range(1, 27))


@pytest.mark.parametrize("override,expected", [
    ("engine.n_workrs=2", "n_workrs"),
    ("engine.n_workers=abc", "engine.n_workers"),
    ("split.fractions={train: 0.5, valid: 0.2}", "split.fractions: fractions must sum to 1"),
    ("engine.kind=tpu", "engine.kind: expected one of cpu, gpu, auto"),
    ("engine.partition_bytes=lots", "engine.partition_bytes: expected a size"),
    ("engine.cpu_kernels=numbaa", "engine.cpu_kernels: expected one of auto, numba, numpy, got 'numbaa' (did you mean"),
    ("output.format=[parquet,csv]", "output.format"),
    ("split.fit_on=trian", "split.fit_on"),
])
def test_bad_keys_and_values_name_the_key(demo_dir, override, expected):
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, override)
    assert expected in message(e)


def test_unknown_column_suggests_a_close_name(demo_dir):
    with pytest.raises(ConfigError) as e:
        # The issue's own example.
        build_with(demo_dir, "graph=[{op: log1p, cols: [I1]}, {op: clip, cols: [I14], lower: 0}]")
    assert message(e) == "graph[1].cols: column 'I14' is not in the input schema (did you mean 'I4'?)"


def test_unknown_op_and_parameter(demo_dir):
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, "graph=[{op: normalise, cols: [I1]}]")
    assert "graph[0].op: unknown op 'normalise' (did you mean 'normalize'?)" == message(e)
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, "graph=[{op: clip, cols: [I1], lowr: 0}]")
    assert message(e).startswith("graph[0].lowr: unknown parameter for op 'clip' (did you mean 'lower'?)")


def test_parameter_types_and_ranges(demo_dir):
    cases = [
        ("graph=[{op: clip, cols: [I1], lower: abc}]", "graph[0].lower: expected a number"),
        ("graph=[{op: clip, cols: [I1]}]", "graph[0].lower: give lower, upper or both"),
        ("graph=[{op: log1p, cols: [C1]}]", "graph[0].cols: column 'C1' is string"),
        ("graph=[{op: bucketize, cols: [I1], boundaries: [3, 1]}]", "graph[0].boundaries: expected strictly"),
        ("graph=[{op: categorify, cols: [C1], freq_threshold: -1}]", "graph[0].freq_threshold"),
        ("graph=[{op: hash_bucket, cols: [C1], num_buckets: 0}]", "graph[0].num_buckets"),
        ("graph=[{op: hashed_cross, cols: [C1], num_buckets: 10}]", "graph[0].cols: a cross needs two"),
        ("graph=[{op: filter, expr: 'I1 >'}]", "graph[0].expr: cannot parse predicate"),
        ("graph=[{op: filter, expr: 'C1 > 3'}]", "graph[0].expr: cannot compare string with number"),
        ("graph=[{op: filter, expr: 'I99 > 3'}]", "graph[0].expr: column 'I99' is not in the input schema"),
        ("graph=[{op: rename, mapping: {I1: I2}}]", "graph[0].mapping.I1: 'I2' already exists"),
        ("graph=[{op: fill_missing, cols: ['X*'], value: 0}]", "graph[0].cols: pattern 'X*' matches no column"),
        ("graph=[{op: drop, cols: [label]}, {op: log1p, cols: [label]}]", "graph[1].cols: column 'label'"),
        ("graph=[{op: cast, cols: [I1], dtype: int128}]", "graph[0].dtype: expected one of"),
    ]
    for override, expected in cases:
        with pytest.raises(ConfigError) as e:
            build_with(demo_dir, override)
        assert message(e).startswith(expected), (override, message(e))


def test_split_and_role_keys(demo_dir):
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, "split.key=userid")
    assert message(e).startswith("split.key: column 'userid' is not in the input schema")
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, "+roles.lable=label")
    assert message(e).startswith("roles.lable: column 'lable'")


def test_parse_size():
    assert parse_size("64MB", "k") == 64_000_000
    assert parse_size("1GiB", "k") == 2**30
    assert parse_size(512, "k") == 512
    with pytest.raises(ConfigError, match="k: expected a size"):
        parse_size("12 parsecs", "k")


@pytest.mark.parametrize("overrides,expected", [
    (("output.writer=pyarrow",), "output.writer: expected one of auto, arrow, cudf, got 'pyarrow'"),
    (("engine=cpu", "output.writer=cudf"), "output.writer: cudf writes Parquet from GPU memory and needs the GPU "
                                           "engine"),
    (("engine=gpu", "output.writer=cudf", "output.compression=gzip"), "output.compression: cuDF's Parquet writer "
                                                                      "has no gzip"),
    (("engine=gpu", "output.writer=cudf", "output.compression_level=3"), "output.compression_level: cuDF's Parquet "
                                                                         "writer takes no compression level"),
    (("engine.float_mode=fastest",), "engine.float_mode: expected one of exact, fast, got 'fastest'"),
    (("engine=cpu", "engine.float_mode=fast"), "engine.float_mode: fast is float32 arithmetic in the GPU engine's"),
])
def test_writer_and_float_mode_are_checked(demo_dir, overrides, expected):
    with pytest.raises(ConfigError) as e:
        build_with(demo_dir, *overrides)
    assert message(e).startswith(expected), message(e)
