"""``assemble="cudf"`` (blocks decoded by cuDF's Parquet reader, then shuffled and cut on the
device) gives the host path's batches. Runs where cuDF imports: on a GPU machine with the RAPIDS
stack (the device is CUDA), and in CI on the emulated GPU (tests/fakegpu.py, started by
``test_device_path.py::test_the_cudf_path_on_the_emulated_gpu``), where the "device" is the CPU."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
cudf = pytest.importorskip("cudf")
from shardsmith.errors import InputError, ShardsmithError  # noqa: E402
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402
from tests.loader import synthetic  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return synthetic.write(str(tmp_path_factory.mktemp("cudf-ds")), 12_000, shard_rows=5_000, row_group_rows=1_000,
                              formats=("parquet", "webdataset"), rows_per_sample=300)


def bits(batch) -> list:
    return [(k, str(t.dtype), t.cpu().numpy().tobytes()) for k, t in batch.items()]


def batches(d, **kw):
    return [bits(b) for b in ShardDataset(d, **kw)]


@pytest.mark.parametrize("kw", [dict(batch_size=1000, seed=3, shuffle_buffer=2500),
                                dict(batch_size=4096, seed=5, shuffle_buffer=1000, drop_last=True),
                                dict(batch_size=700, shuffle=False)])
def test_cudf_decoded_batches_are_the_host_batches(demo, kw):
    host = batches(demo, **kw)
    assert host and batches(demo, device=DEVICE, assemble="cudf", **kw) == host


def _with_nulls(root, ints_too: bool):
    rng = np.random.default_rng(0)
    x = pa.array(rng.random(3000).astype(np.float32), mask=rng.random(3000) < 0.2)
    k = pa.array(rng.integers(0, 9, 3000).astype(np.int64), mask=(rng.random(3000) < 0.1) if ints_too else None)
    t = pa.table({"y": pa.array(rng.integers(0, 2, 3000).astype(np.int8)), "x": x, "k": k})
    return synthetic.write_tables(str(root), [t.slice(0, 1700), t.slice(1700)], {"y": "label"}, 500)


def test_float_nulls_are_nan_and_integer_nulls_are_refused_as_on_the_host(tmp_path):
    d = _with_nulls(tmp_path / "floats", ints_too=False)
    assert batches(d, batch_size=256, seed=1, device=DEVICE, assemble="cudf") == batches(d, batch_size=256, seed=1)
    bad = _with_nulls(tmp_path / "ints", ints_too=True)
    with pytest.raises(InputError, match=r"part-0000\d.parquet: column 'k' has \d+ null"):
        list(ShardDataset(bad, batch_size=256, device=DEVICE, assemble="cudf"))


def test_the_cudf_path_reads_parquet_in_this_process_only(demo):
    with pytest.raises(ShardsmithError, match="assemble: 'cudf' decodes Parquet shards, not webdataset"):
        ShardDataset(demo, format="webdataset", device=DEVICE, assemble="cudf")
    with pytest.raises(ShardsmithError, match="num_workers: assemble='cudf' decodes on the GPU in this process"):
        ShardLoader(ShardDataset(demo, device=DEVICE, assemble="cudf"), num_workers=2)


def test_a_cudf_run_resumes_like_a_host_run(demo):
    kw = dict(batch_size=900, seed=6, shuffle_buffer=2000)
    full = batches(demo, **kw)
    ds = ShardDataset(demo, device=DEVICE, assemble="cudf", **kw)
    head = []
    for b in ds:
        head.append(bits(b))
        if len(head) == 4:
            break
    fresh = ShardDataset(demo, device=DEVICE, assemble="cudf", **kw)
    fresh.load_state_dict(ds.state_dict())
    assert head == full[:4] and [bits(b) for b in fresh] == full[4:]
