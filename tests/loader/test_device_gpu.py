"""The device path on a real CUDA device: the same batches as the host path, bit for bit and in the
same order, with the copies and shuffles on a side stream and the staging in pinned memory.
Skipped where torch sees no CUDA device (``test_device_path.py`` covers the logic everywhere).
The datasets are written by ``synthetic.py`` (no compile: the GPU machine has no Hydra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402
from shardsmith.shards import order as od  # noqa: E402
from shardsmith.shards.loader import gather  # noqa: E402
from shardsmith.shards.loader.device import CudaLane, Staging  # noqa: E402
from shardsmith.shards.loader.layout import BatchSpec  # noqa: E402
from shardsmith.shards.loader.permute import hash_permutation_tensor  # noqa: E402
from tests.loader import synthetic  # noqa: E402

pytestmark = [pytest.mark.gpu(needs="cuda"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device"),
              pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """24,000 rows, shards of 5,000, row groups of 1,000, tar samples of 300 rows (straddling them)."""
    return synthetic.write(str(tmp_path_factory.mktemp("cuda-ds")), 24_000, shard_rows=5_000,
                              row_group_rows=1_000, rows_per_sample=300)


@pytest.fixture(scope="module")
def per_row_dir(tmp_path_factory):
    """One tar sample per row (the other WebDataset layout)."""
    return synthetic.write(str(tmp_path_factory.mktemp("cuda-ds-rows")), 6_000, shard_rows=2_500,
                              row_group_rows=1_000, rows_per_sample=1)


def bits(batch) -> list:
    return [(k, str(t.dtype), t.cpu().numpy().tobytes()) for k, t in batch.items()]


def run(d, device, workers=None, state=None, take=None, **kw):
    ds = ShardDataset(d, device=device, **kw)
    if state is not None:
        ds.load_state_dict(state)
    stage = ds if workers is None else ShardLoader(ds, num_workers=workers)
    out = []
    for b in stage:
        if device == "cuda":
            assert all(t.is_cuda for t in b.values())
        out.append(bits(b))
        if take is not None and len(out) == take:
            break
    torch.cuda.synchronize()
    return out, stage


def test_the_permutation_on_the_device_is_the_specified_one():
    for n, seed in ((1, 3), (1000, 0), (262_144, 2**64 - 1), (1_000_003, 12345)):
        got = hash_permutation_tensor(n, seed, torch.device("cuda")).cpu().numpy()
        np.testing.assert_array_equal(got, od.hash_permutation(n, seed))


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
@pytest.mark.parametrize("workers", [None, 2])
def test_cuda_batches_are_the_host_batches(dataset_dir, fmt, workers):
    for kw in (dict(batch_size=1000, seed=3, shuffle_buffer=2500), dict(batch_size=4096, seed=5, shuffle_buffer=1000),
               dict(batch_size=777, shuffle=False, drop_last=True)):
        host = run(dataset_dir, "cpu", workers, format=fmt, **kw)[0]
        cuda = run(dataset_dir, "cuda", workers, format=fmt, **kw)[0]
        assert host == cuda and host, kw


def test_cuda_batches_are_the_host_batches_per_row_samples(per_row_dir):
    for workers in (None, 2):
        kw = dict(batch_size=500, seed=2, shuffle_buffer=2000, format="webdataset")
        host = run(per_row_dir, "cpu", workers, **kw)[0]
        assert host == run(per_row_dir, "cuda", workers, **kw)[0] and host


def test_cuda_batches_are_the_host_batches_on_every_rank_and_after_a_resume(dataset_dir):
    kw = dict(batch_size=700, seed=4, shuffle_buffer=2000)
    for world in (2, 3):
        for rank in range(world):
            host = run(dataset_dir, "cpu", 2, rank=rank, world_size=world, **kw)[0]
            assert host == run(dataset_dir, "cuda", 2, rank=rank, world_size=world, **kw)[0]
    full = run(dataset_dir, "cpu", None, **kw)[0]
    head, stage = run(dataset_dir, "cuda", None, take=5, **kw)
    state = json.loads(json.dumps(stage.state_dict()))
    assert head == full[:5]
    assert run(dataset_dir, "cuda", None, state=state, **kw)[0] == full[5:]
    assert run(dataset_dir, "cuda", 2, state=state, **kw)[0] == run(dataset_dir, "cpu", 2, state=state, **kw)[0]


def test_batches_gathered_under_the_callers_stream_are_complete(dataset_dir):
    kw = dict(batch_size=1000, seed=7, shuffle_buffer=2000)
    host = run(dataset_dir, "cpu", None, **kw)[0]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = [bits(b) for b in ShardDataset(dataset_dir, device="cuda", **kw)]
    assert got == host


def test_staging_is_pinned_and_the_copies_run_on_the_side_stream():
    lane = CudaLane(torch.device("cuda"))
    assert lane.stream != torch.cuda.current_stream()
    spec = BatchSpec([("a", np.dtype("int32")), ("b", np.dtype("float64"))])
    units = od.make_units([40_000], [10_000])
    plan = od.EpochPlan(units, seed=1, epoch=0, shuffle=True, block_units=2, batch_size=512, drop_last=False)
    staging = Staging(lane, 2)
    rng = np.random.default_rng(0)
    cols = {"a": rng.integers(0, 1 << 30, 20_000).astype(np.int32), "b": rng.random(20_000)}
    blk = gather.staged_upload(staging, lane, spec, plan, 0, lambda slot: spec.pack([cols], slot.numpy(), 20_000))
    assert all(b is None or b.is_pinned() for b in staging.buffers) and any(b is not None for b in staging.buffers)
    lane.join(blk.token, [blk.buf])
    perm = plan.block_permutation(0)
    np.testing.assert_array_equal(blk.mats[np.dtype("int32")][0].cpu().numpy(), cols["a"][perm])
    np.testing.assert_array_equal(blk.mats[np.dtype("float64")][0].cpu().numpy(), cols["b"][perm])
