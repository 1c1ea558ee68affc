"""The device path (``assemble="device"``: blocks to the device once, shuffled and cut into batches
there) against the host path, run here with torch-CPU tensors standing in for the device: the same
code as on a GPU, and a lane that defers the device work until it is waited for, so that a missing
wait or an early reuse of a staging slot shows as wrong batches. ``test_device_gpu.py`` repeats the
equality on a real device."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from shardsmith.errors import InputError, ShardsmithError  # noqa: E402
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402
from shardsmith.shards import order as od  # noqa: E402
from shardsmith.shards.loader import gather  # noqa: E402
from shardsmith.shards.loader.device import Staging  # noqa: E402
from shardsmith.shards.loader.layout import BatchSpec  # noqa: E402
from shardsmith.shards.loader.permute import hash_permutation_tensor, xxh64_words  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
SENTINEL = 0xAB  # what device memory holds before the deferred work that fills it has run


class DeferredLane:
    """A lane whose work runs only when the consumer joins it or the host waits for it, in the order
    it was submitted (one stream): the slowest a GPU stream may be. Counts what it was given."""

    def __init__(self, device=None):
        self.device = device or torch.device("cpu")
        self.queue: list = []
        self.lock = threading.RLock()
        self.submitted = self.joined = self.waited = 0

    def alloc(self, nbytes):
        return torch.full((nbytes,), SENTINEL, dtype=torch.uint8)

    def pinned(self, nbytes):
        return torch.empty(nbytes, dtype=torch.uint8)

    def submit(self, work):
        with self.lock:
            token = object()
            self.queue.append((token, work))
            self.submitted += 1
            return token

    def _run_until(self, token):
        with self.lock:
            if all(t is not token for t, _ in self.queue):
                return  # ran already
            while self.queue:
                t, work = self.queue.pop(0)
                work()
                if t is token:
                    return

    def join(self, token, tensors):
        self.joined += 1
        self._run_until(token)

    def wait(self, token):
        self.waited += 1
        self._run_until(token)


def bits(batch) -> list:
    """A batch as (name, dtype, bytes) per column, in order: equal means bit-identical."""
    return [(k, str(t.dtype), t.numpy().tobytes()) for k, t in batch.items()]


def run(d, assemble, workers=None, rank=None, world=None, state=None, take=None, **kw):
    ds = ShardDataset(d, assemble=assemble, rank=rank, world_size=world, **kw)
    if state is not None:
        ds.load_state_dict(state)
    stage = ds if workers is None else ShardLoader(ds, num_workers=workers)
    out = []
    for b in stage:
        out.append(bits(b))
        if take is not None and len(out) == take:
            break
    return out, stage


def same_batches(d, **kw):
    host, _ = run(d, "host", **kw)
    device, _ = run(d, "device", **kw)
    assert len(host) == len(device) > 0
    for i, (a, b) in enumerate(zip(host, device)):
        assert a == b, (kw, i)
    return host


# --- the permutation, computed where the block is ----------------------------------------------------------
def test_the_device_permutation_is_the_specified_hash_order():
    rng = np.random.default_rng(0)
    words = np.concatenate([rng.integers(-2**63, 2**63 - 1, 5000, dtype=np.int64),
                            np.array([0, 1, -1, -2**63, 2**63 - 1], dtype=np.int64)])
    from shardsmith.kernels.xxhash64 import xxh64_u64

    for seed in (0, 1, 99, 2**63 + 7, 2**64 - 1):
        got = xxh64_words(torch.from_numpy(words), seed).numpy().view(np.uint64)
        np.testing.assert_array_equal(got, xxh64_u64(words.view(np.uint64), seed))
        for n in (0, 1, 2, 1000, 65_537):
            np.testing.assert_array_equal(hash_permutation_tensor(n, seed, torch.device("cpu")).numpy(),
                                          od.hash_permutation(n, seed))


# --- same batches as the host path ---------------------------------------------------------------------------
# (seed, batch_size, shuffle_buffer, shuffle, drop_last): blocks of 2-3 row groups of 1,000 rows; batches that
# straddle blocks; batches of 4,096 rows over blocks of 1,000 (a batch spans five blocks); no shuffle.
CASES = [(3, 1000, 2500, True, False), (7, 333, 1000, True, True), (11, 4096, 1000, True, False),
         (5, 1000, 2500, False, False)]


@pytest.mark.parametrize("seed,bs,buf,shuffle,drop_last", CASES)
def test_device_batches_are_the_host_batches_parquet(dataset_dir, seed, bs, buf, shuffle, drop_last):
    same_batches(dataset_dir, batch_size=bs, seed=seed, shuffle_buffer=buf, shuffle=shuffle, drop_last=drop_last)


@pytest.mark.parametrize("layout", ["batched", "per-row", "batched-zstd"])
@pytest.mark.parametrize("seed,bs,buf,shuffle,drop_last", [CASES[0], CASES[2]])
def test_device_batches_are_the_host_batches_webdataset(layouts, layout, seed, bs, buf, shuffle, drop_last):
    parquet = same_batches(layouts[layout], batch_size=bs, seed=seed, shuffle_buffer=buf, shuffle=shuffle,
                           drop_last=drop_last, format="webdataset")
    assert parquet == run(layouts[layout], "device", batch_size=bs, seed=seed, shuffle_buffer=buf,
                          drop_last=drop_last)[0]


def test_the_default_shuffle_buffer_and_no_readahead_give_the_same_batches(dataset_dir):
    host = same_batches(dataset_dir, batch_size=1000, seed=2)
    assert host == run(dataset_dir, "device", batch_size=1000, seed=2, readahead=False)[0]


@pytest.mark.parametrize("world,workers,uneven", [(1, 1, "pad"), (1, 2, "pad"), (2, 2, "pad"), (3, 1, "drop"),
                                                  (3, 2, "pad")])
def test_device_batches_are_the_host_batches_on_every_rank_and_worker_count(dataset_dir, world, workers, uneven):
    counts = set()
    for rank in range(world):
        got = same_batches(dataset_dir, batch_size=700, seed=4, shuffle_buffer=2000, uneven=uneven, rank=rank,
                           world=world, workers=workers)
        counts.add(len(got))
    assert len(counts) == 1  # equal batches per rank


@pytest.mark.parametrize("workers", [None, 2])
def test_a_device_run_resumes_mid_epoch_exactly_as_the_host_run(dataset_dir, workers):
    kw = dict(batch_size=900, seed=6, shuffle_buffer=2000)
    full, _ = run(dataset_dir, "host", workers=workers, **kw)
    for k in (1, 5, len(full) - 1):
        head, stage = run(dataset_dir, "device", workers=workers, take=k, **kw)
        assert head == full[:k]
        state = json.loads(json.dumps(stage.state_dict()))
        host_state = json.loads(json.dumps(run(dataset_dir, "host", workers=workers, take=k, **kw)[1].state_dict()))
        assert state == host_state
        assert run(dataset_dir, "device", workers=workers, state=state, **kw)[0] == full[k:]


def test_a_device_state_restores_on_other_ranks_and_workers_like_a_host_state(dataset_dir):
    kw = dict(batch_size=800, seed=8, shuffle_buffer=3000)
    _, stage = run(dataset_dir, "device", workers=2, rank=0, world=2, take=4, **kw)
    state = stage.state_dict()
    for world, workers in ((1, None), (3, 2)):
        for rank in range(world):
            host = run(dataset_dir, "host", workers=workers, rank=rank, world=world, state=state, **kw)[0]
            device = run(dataset_dir, "device", workers=workers, rank=rank, world=world, state=state, **kw)[0]
            assert host == device and host


# --- the bookkeeping: waits, staging slots, releases ------------------------------------------------------------
@pytest.mark.parametrize("workers", [None, 2])
def test_deferred_device_work_still_gives_the_host_batches(dataset_dir, monkeypatch, workers):
    lanes = []

    def lane(self):
        lanes.append(DeferredLane(self.device))
        return lanes[-1]

    monkeypatch.setattr(ShardDataset, "lane", lane)
    kw = dict(batch_size=700, seed=9, shuffle_buffer=2000, workers=workers)
    same_batches(dataset_dir, **kw)
    (ln,) = lanes
    assert ln.submitted == ln.joined > 5 and not ln.queue


def _parts(plan, spec):
    """Random columns for every block of the plan: block j's units as NumPy parts."""
    rng = np.random.default_rng(1)
    return {j: [{n: rng.integers(-100, 100, u.rows).astype(dt) for dt, names in spec.groups for n in names}
                for u in units] for j, units in enumerate(plan.blocks)}


def _tiny_plan(shuffle=True):
    units = od.make_units([3000, 2500], [1000, 1000])
    return od.EpochPlan(units, seed=5, epoch=0, shuffle=shuffle, block_units=1, batch_size=256, drop_last=False)


def test_a_staging_slot_is_reused_only_after_its_copy_ran():
    """One slot, two blocks through it before either is joined: the second pack must wait for the first
    copy, or the first block would hold the second's rows. The same with the wait left out fails."""
    spec = BatchSpec([("a", np.dtype("int64")), ("b", np.dtype("float32"))])
    plan = _tiny_plan()
    parts = _parts(plan, spec)

    def two_blocks(staging, lane):
        out = []
        for j in (0, 1):
            n = plan.block_rows(j)
            out.append(gather.staged_upload(staging, lane, spec, plan, j,
                                            lambda slot, j=j, n=n: spec.pack(parts[j], slot.numpy(), n)))
        for blk in out:
            lane.join(blk.token, [blk.buf])
        return out

    def expected(j):
        perm = plan.block_permutation(j)
        return np.concatenate([p["a"] for p in parts[j]]).astype(np.int64)[perm]

    lane = DeferredLane()
    blocks = two_blocks(Staging(lane, 1), lane)
    assert lane.waited == 1
    for j, blk in enumerate(blocks):
        np.testing.assert_array_equal(blk.mats[np.dtype("int64")][0].numpy(), expected(j))

    class NoWait(Staging):
        def acquire(self, nbytes):
            i, token = self.free.get()
            self.buffers[i] = self.buffers[i] if self.buffers[i] is not None else self.lane.pinned(nbytes)
            return i, self.buffers[i][:nbytes]

    lane = DeferredLane()
    blocks = two_blocks(NoWait(lane, 1), lane)
    assert not np.array_equal(blocks[0].mats[np.dtype("int64")][0].numpy(), expected(0))


def test_a_block_is_read_only_after_the_consumer_joined_its_copy():
    """Without the join the consumer reads device memory the deferred copy has not filled yet."""
    spec = BatchSpec([("a", np.dtype("int32"))])
    plan = _tiny_plan(shuffle=False)
    parts = _parts(plan, spec)
    lane = DeferredLane()
    blk = gather.staged_upload(Staging(lane, 2), lane, spec, plan, 0,
                               lambda slot: spec.pack(parts[0], slot.numpy(), plan.block_rows(0)))
    assert (blk.buf.numpy() == SENTINEL).all()
    lane.join(blk.token, [blk.buf])
    np.testing.assert_array_equal(blk.mats[np.dtype("int32")][0].numpy(), parts[0][0]["a"])


def _threads() -> int:
    """Live threads, less multiprocessing's queue feeders: a DataLoader closes its workers' index
    queues when it finishes, and their feeder threads exit on their own a moment later."""
    return sum(t.name != "QueueFeederThread" for t in threading.enumerate())


@pytest.mark.parametrize("workers", [None, 2])
def test_blocks_are_held_two_at_a_time_and_all_released(dataset_dir, monkeypatch, workers):
    live, made = [], []
    batch = gather.DeviceBatches.batch

    def counting_batch(self, steps, next_block, producer=0):
        out = batch(self, steps, next_block, producer)
        live.append((self.live(), len(self.held)))
        for held in self.held:
            made.extend(weakref.ref(blk.buf) for blk in held.values())
        return out

    monkeypatch.setattr(gather.DeviceBatches, "batch", counting_batch)
    threads = _threads()
    kw = dict(batch_size=1000, seed=1, shuffle_buffer=1000)
    ds = ShardDataset(dataset_dir, assemble="device", **kw)
    n = sum(1 for _ in (ds if workers is None else ShardLoader(ds, num_workers=workers)))
    assert n == len(live) and made
    assert all(count <= gather.CAPACITY * producers for count, producers in live)
    if workers is None:  # one consumer, blocks used in turn: each block decoded and copied once
        plan = od.EpochPlan(ds.units, seed=1, epoch=0, shuffle=True, block_units=ds.block_units, batch_size=1000,
                            drop_last=False)
        assert od.block_loads(plan, np.arange(plan.batches), gather.CAPACITY) == list(range(len(plan.blocks)))
        assert len(set(map(id, made))) >= len(plan.blocks)
    assert all(ref() is None for ref in made)  # nothing of a block outlives the iteration
    assert _threads() <= threads, [t.name for t in threading.enumerate()]  # the read-ahead threads are gone


def test_an_early_stop_releases_the_readahead(dataset_dir):
    threads = _threads()
    it = iter(ShardDataset(dataset_dir, assemble="device", batch_size=500, shuffle_buffer=1000))
    next(it)
    it.close()
    assert _threads() <= threads


@pytest.mark.parametrize("workers", [None, 2])
def test_a_truncated_shard_fails_naming_its_path_on_the_device_path(dataset_copy, workers):
    with open(os.path.join(dataset_copy, "manifest.json")) as f:
        shard = next(s for s in json.load(f)["splits"]["train"]["shards"] if s["format"] == "parquet")
    path = os.path.join(dataset_copy, shard["path"])
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    ds = ShardDataset(dataset_copy, assemble="device", batch_size=1000, shuffle=False)
    # The default checks see the size is not the manifest's before anything is decoded.
    with pytest.raises(Exception, match=f"{path}: corrupt shard: {len(data) // 3} bytes") as err:
        list(ds if workers is None else ShardLoader(ds, num_workers=workers))
    if workers is None:
        assert isinstance(err.value, InputError)


def test_assemble_is_checked_and_defaults_by_device(dataset_dir):
    assert ShardDataset(dataset_dir).assemble == "host"
    assert ShardDataset(dataset_dir, assemble="device").assemble == "device"
    with pytest.raises(ShardsmithError, match="assemble: expected one of 'host', 'device', 'cudf', got 'gpu'"):
        ShardDataset(dataset_dir, assemble="gpu")


def test_a_batch_in_one_block_views_it_and_a_batch_across_blocks_has_its_own_buffer(dataset_dir):
    ds = ShardDataset(dataset_dir, assemble="device", batch_size=700, seed=1, shuffle_buffer=2000)
    plan = ds.plan()
    batches = list(ds)
    blocks = {}
    for b, batch in enumerate(batches):
        storages = {t.untyped_storage().data_ptr() for t in batch.values()}
        assert len(storages) == 1 and all(t.is_contiguous() for t in batch.values())
        pieces = plan.pieces(b)
        if len(pieces) == 1:
            blocks.setdefault(pieces[0][0], set()).update(storages)
        else:
            assert not storages & {p for s in blocks.values() for p in s}
    assert len(blocks) == len(plan.blocks) and all(len(s) == 1 for s in blocks.values())
    assert len({next(iter(s)) for s in blocks.values()}) == len(blocks)  # one buffer per block


def test_a_padded_repeat_holds_the_shards_rows_after_its_first_delivery_was_changed(dataset_dir):
    """uneven="pad": a rank one batch short repeats its first; with few blocks per rank the block is still held
    when the repeat comes, so the repeat must be read afresh, not viewed from that block."""
    kw = dict(batch_size=1000, seed=5, shuffle_buffer=30_000, world_size=4, uneven="pad")
    for rank in range(4):
        host = [bits(b) for b in ShardDataset(dataset_dir, rank=rank, **kw)]
        got = []
        for batch in ShardDataset(dataset_dir, assemble="device", rank=rank, **kw):
            got.append(bits(batch))
            for t in batch.values():
                t.zero_()  # a training step that normalises its batch in place
        assert got == host
    ds = ShardDataset(dataset_dir, assemble="device", rank=3, **kw)
    ids = od.job_ids(ds._jobs_for(1)[3][0])
    assert len(ids) != len(set(ids.tolist())), "rank 3 should have a padded repeat here"


def test_the_cudf_path_on_the_emulated_gpu():
    """assemble="cudf" on the emulated cuDF (tests/fakegpu.py) in a child process: its glue runs in CI."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, SHARDSMITH_FAKE_GPU="1", PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/loader/test_gpu_decode.py"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 6, tail


def test_the_cudf_path_without_cudf_says_so(dataset_dir):
    try:
        import cudf  # noqa: F401
        pytest.skip("cuDF is importable here")
    except Exception:  # noqa: BLE001 - the same broad catch as the loader's
        pass
    with pytest.raises(ShardsmithError, match="assemble: 'cudf' needs cuDF, which cannot be imported here"):
        ShardDataset(dataset_dir, assemble="cudf")
