"""Bad inputs and a bad output location, as users meet them: one ``error:`` line naming the file
(and the line or row), exit 2, nothing left behind; or, with ``source.on_error: quarantine``, the
rows that do not parse in the quarantine with file, row and reason, and the row accounting
balanced."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.errors import ShardsmithError
from shardsmith.runtime import fitsource
from shardsmith.shards import writers
from tests.conftest import cli, run_compile
from tests.test_cli import assert_one_line_error, compile_args
from tests.test_output_safety import snapshot

ROWS = 200_000  # about 2 MB of CSV: the bad rows lie after the first megabyte (the first block)
BAD = 150_000
GRAPH = "graph=[{op: log1p, cols: [I1]}, {op: categorify, cols: [C1]}]"
SMALL = ("output.shard_rows=60000", "roles={label: label}", GRAPH)


def nothing_left(tmp_path, out="out") -> None:
    assert not os.path.exists(tmp_path / out)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(f"{out}.partial") or p.endswith(".lock")]


def _rows(n: int):
    i = np.arange(n)
    return i % 2, (i * 7) % 1000, [f"c{k % 311}" for k in range(n)]


@pytest.fixture()
def bad_csv(tmp_path):
    label, i1, c1 = _rows(ROWS)
    lines = ["label,I1,C1"] + [f"{a},{b},{c}" for a, b, c in zip(label, i1, c1)]
    lines[1 + BAD] = "1,abc,c1"  # not an integer, after the first block
    lines[1 + BAD + 500] = "0,5,c2,extra"  # one value too many
    path = tmp_path / "in" / "data.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    assert len("\n".join(lines[:1 + BAD])) > 1 << 20
    return path


@pytest.fixture()
def bad_jsonl(tmp_path):
    label, i1, c1 = _rows(ROWS)
    lines = [f'{{"label": {a}, "I1": {b}, "C1": "{c}"}}' for a, b, c in zip(label, i1, c1)]
    lines[BAD] = '{"label": 1, "I1": 3, "C1": '  # cut short
    lines[BAD + 7] = b'{"label": 1, "I1": 3, "C1": "caf\xe9"}'.decode("latin-1")  # Latin-1, not UTF-8
    path = tmp_path / "in" / "data.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    return path


def test_a_bad_csv_row_after_the_first_megabyte_fails_naming_the_line(tmp_path, bad_csv):
    proc = cli(*compile_args(bad_csv, tmp_path / "out", "source.format=csv", *SMALL))
    assert_one_line_error(proc, f"{bad_csv}: line {BAD + 2}: column 'I1'", "invalid value 'abc'")
    nothing_left(tmp_path)


def test_a_bad_json_line_fails_naming_the_line(tmp_path, bad_jsonl):
    proc = cli(*compile_args(bad_jsonl, tmp_path / "out", "source.format=jsonl", *SMALL))
    assert_one_line_error(proc, f"{bad_jsonl}: line {BAD + 1}: JSON parse error")
    nothing_left(tmp_path)


@pytest.mark.parametrize(("fmt", "reads"), [("csv", "once"), ("jsonl", "once"), ("csv", "per_pass")])
def test_rows_that_do_not_parse_go_to_the_quarantine(tmp_path, bad_csv, bad_jsonl, fmt, reads):
    """The graph fits (categorify): rows quarantined as read must reach the quarantine whether the
    decoded partitions are kept for the transform (reads=once) or read again (per_pass)."""
    path = bad_csv if fmt == "csv" else bad_jsonl
    res = run_compile(str(path), tmp_path / "out", f"source.format={fmt}", "source.on_error=quarantine", *SMALL,
                      f"engine.reads={reads}", "fit.cache=off")
    rows = res.manifest["rows"]
    assert rows == {"in": ROWS, "out": ROWS - 2, "filtered": 0, "quarantined": 2}
    q = pa.concat_tables([pq.read_table(tmp_path / "out" / s["path"]) for s in res.manifest["quarantine"]["shards"]])
    got = sorted(zip(q["_row"].to_pylist(), q["_reason"].to_pylist(), q["_file"].to_pylist(), q["_step"].to_pylist()))
    if fmt == "csv":
        assert [r[0] for r in got] == [BAD, BAD + 500]
        assert got[0][1] == f"line {BAD + 2}: column 'I1': CSV conversion error to int64: invalid value 'abc'"
        assert got[1][1] == f"line {BAD + 502}: CSV parse error: Expected 3 columns, got 4: 0,5,c2,extra"
    else:
        assert [r[0] for r in got] == [BAD, BAD + 7]
        assert got[0][1].startswith(f"line {BAD + 1}: JSON parse error")
        assert got[1][1] == f"line {BAD + 8}: column 'C1' is not valid UTF-8"
    assert {r[2] for r in got} == {str(path)} and {r[3] for r in got} == {"source"}


def test_invalid_utf8_in_parquet_strings(tmp_path):
    good = ["a", "b", "caf\u00e9"] * 1000
    offsets = np.concatenate([[0], np.cumsum([len(s.encode()) for s in good])]).astype(np.int32)
    data = bytearray("".join(good).encode())
    bad_row = 1000
    data[offsets[bad_row]] = 0xFF  # "b" becomes the byte 0xff: not UTF-8
    col = pa.StringArray.from_buffers(len(good), pa.py_buffer(offsets.tobytes()), pa.py_buffer(bytes(data)))
    table = pa.table({"label": np.zeros(len(good), np.int8), "I1": np.ones(len(good), np.float32), "C1": col})
    src = tmp_path / "in" / "strings.parquet"
    src.parent.mkdir()
    pq.write_table(table, src, row_group_size=1000)
    proc = cli(*compile_args(src, tmp_path / "out", *SMALL))
    assert_one_line_error(proc, f"{src}: row {bad_row} (counted from 0): column 'C1' is not valid UTF-8")
    nothing_left(tmp_path)
    res = run_compile(str(src), tmp_path / "out", "source.on_error=quarantine", *SMALL)
    assert res.manifest["rows"]["quarantined"] == 1 and res.manifest["rows"]["out"] == len(good) - 1
    q = pq.read_table(tmp_path / "out" / res.manifest["quarantine"]["shards"][0]["path"])
    assert q["_row"].to_pylist() == [bad_row] and q["_value"].to_pylist() == ["\\xff"]
    vocab = [p for p in snapshot(tmp_path / "out") if p.startswith("state/") and p.endswith(".parquet")]
    for p in vocab:  # every string the dataset holds is UTF-8 again (polars refused the old vocabularies)
        pq.read_table(tmp_path / "out" / p).validate(full=True)


def test_a_parquet_file_with_corrupt_pages_behind_a_valid_footer(tmp_path, demo_dir):
    src = tmp_path / "in" / "damaged.parquet"
    src.parent.mkdir()
    data = bytearray(open(os.path.join(demo_dir, "part-00000.parquet"), "rb").read())
    md = pq.ParquetFile(os.path.join(demo_dir, "part-00000.parquet")).metadata
    col = md.row_group(1).column(md.num_columns - 1)
    data[col.data_page_offset + 60: col.data_page_offset + 124] = b"\xff" * 64
    src.write_bytes(bytes(data))
    proc = cli(*compile_args(src, tmp_path / "out"))
    assert_one_line_error(proc, f"{src}: cannot read row group(s)")
    nothing_left(tmp_path)


# --- the output location ----------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(where, *options):
    """A small tmpfs mounted at ``where`` (root only); skips the test where mounting is not allowed."""
    os.makedirs(where)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_read_only_output_location(tmp_path, demo_dir):
    ro = tmp_path / "ro"
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o555)
        mount = contextlib.nullcontext()
    else:
        mount = tmpfs(ro, "ro", "size=1m")
    with mount:
        proc = cli(*compile_args(f"{demo_dir}/part-00000.parquet", ro / "out", f"hydra.run.dir={tmp_path}/hydra"))
        assert_one_line_error(proc, str(ro), "cannot write")
        assert os.listdir(ro) == []


def test_a_full_disk(tmp_path, demo_dir):
    with tmpfs(tmp_path / "small", "size=600k") as small:
        proc = cli(*compile_args(f"{demo_dir}/*.parquet", small / "out", "output.shard_rows=2000",
                                 f"hydra.run.dir={tmp_path}/hydra"))
        assert_one_line_error(proc, str(small / "out"), "No space left on device")
        # Only the fit cache may stay (main's fit cache keeps fitted state across failed compiles), and
        # nothing half-written in it.
        assert set(os.listdir(small)) <= {fitsource.CACHE_DIR}
        cache = small / fitsource.CACHE_DIR
        assert not cache.exists() or not [p for p in os.listdir(cache) if p.startswith(".tmp-")]


def test_a_full_disk_simulated(tmp_path, demo_dir, monkeypatch):
    """The same where no tmpfs can be mounted: the third shard file meets ENOSPC part-way (after
    its first pages), through the native sink that Arrow's Parquet writer writes to."""
    opened = []

    class FillingDisk(io.FileIO):
        writes = 0

        def write(self, data):
            self.writes += 1
            if len(opened) >= 3 and self.writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    def open_native(path):
        opened.append(path)
        return pa.PythonFile(FillingDisk(path, "wb"), mode="w")

    monkeypatch.setattr(writers, "_open_native", open_native)
    with pytest.raises(ShardsmithError, match="cannot write: No space left on device") as exc:
        run_compile(f"{demo_dir}/*.parquet", tmp_path / "out", "output.shard_rows=2000")
    assert exc.value.exit_code == 2 and str(tmp_path / "out.partial-") in str(exc.value)
    nothing_left(tmp_path)


def test_source_on_error_is_validated():
    from shardsmith.compiler.config import compose
    from shardsmith.errors import ConfigError

    with pytest.raises(ConfigError, match="source.on_error: expected one of fail, quarantine, got 'skip'"):
        compose(["source.on_error=skip"])


def test_a_bad_line_in_the_first_block_fails_at_plan_time_naming_it(tmp_path):
    from shardsmith.errors import InputError

    path = tmp_path / "small.jsonl"
    path.write_text('{"label": 0, "I1": 1}\n{"label": 1, "I1": 2}\n\n{"label": 1, "I1": oops}\n')
    with pytest.raises(InputError, match=f"{path}: line 4: JSON parse error"):
        run_compile(str(path), tmp_path / "out", "source.format=jsonl", "roles={label: label}", "graph=[]")
    nothing_left(tmp_path)


@pytest.mark.parametrize("dtypes", [{}, {"n": "float64", "when": "string"}])
def test_a_local_csv_reads_as_the_streaming_reader_reads_it(tmp_path, dtypes):
    """Local CSV files are parsed on Arrow's threads with the streaming reader's column types (its
    first block's, with the overrides): the same table as that reader's, over CRLF line ends,
    empty lines, quoted separators and quotes, nulls, timestamps, and blocks past the first."""
    import pyarrow.csv as pcsv

    from shardsmith.inputs.read import open_text, read_text

    rng = np.random.default_rng(3)
    lines = ["id,n,x,label,when"]
    for i in range(60_000):  # about 2.5 MB: several blocks
        x = "" if i % 7 == 0 else f"{rng.normal():.6f}"
        label = '"a, ""quoted"" b"' if i % 11 == 0 else ("" if i % 13 == 0 else f"w{i % 97}")
        lines.append(f"{i},{i % 5},{x},{label},2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00")
        if i % 5000 == 0:
            lines.append("")
    path = tmp_path / "t.csv"
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    got = read_text(str(path), "csv", dtypes, ["id", "n", "x", "label", "when"])
    want = open_text(str(path), "csv", dtypes).read_all()
    assert got.table.equals(want) and got.count == want.num_rows == 60_000
    assert np.array_equal(got.rows, np.arange(60_000))
    assert got.table.schema == pcsv.open_csv(str(path), convert_options=pcsv.ConvertOptions(
        column_types={k: pa.float64() if v == "float64" else pa.string() for k, v in dtypes.items()})).schema


def test_a_local_csv_value_past_the_first_block_that_does_not_fit_its_type_is_a_bad_line(tmp_path):
    """Types come from the first block, for the whole file: a float in a column of integers there
    is a bad line (quarantined, or an error naming it), not a column silently made float."""
    from shardsmith.inputs.read import read_text

    lines = ["id,n"] + [f"{i},{i % 5}" for i in range(200_000)] + ["200000,7.5", "200001,3"]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    got = read_text(str(path), "csv", {}, ["id", "n"], on_error="quarantine")
    assert got.table.schema.field("n").type == pa.int64() and got.table.num_rows == 200_001
    assert got.quarantine.num_rows == 1 and got.quarantine["_row"].to_pylist() == [200_000]
    with pytest.raises(ShardsmithError, match="line 200002"):
        read_text(str(path), "csv", {}, ["id", "n"], on_error="fail")
