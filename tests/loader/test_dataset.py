"""ShardDataset / ShardLoader on a dataset made by the real compiler, checked against pyarrow reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from shardsmith.errors import InputError, ShardsmithError

torch = pytest.importorskip("torch")
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402

from .conftest import batch_keys  # noqa: E402

BS = 1000
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def keys_of(batches):
    return np.concatenate([batch_keys(b) for b in batches]) if batches else np.zeros(0, dtype="V8")


def test_an_epoch_yields_every_row_once_in_batches(dataset_dir, reference):
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=3)
    batches = list(ds)
    n = len(reference["keys"])
    assert len(batches) == len(ds) == -(-n // BS)
    assert [len(b["label"]) for b in batches] == [BS] * (n // BS) + [n % BS]
    assert sorted(keys_of(batches).tolist()) == sorted(reference["keys"].tolist())
    b = batches[0]
    assert b["label"].dtype == torch.int8 and b["I1"].dtype == torch.float32 and b["C1"].dtype == torch.int32
    assert set(b) == set(reference["columns"])


def test_without_shuffle_rows_come_in_manifest_order(dataset_dir, reference):
    for fmt in ("parquet", "webdataset"):
        got = keys_of(list(ShardDataset(dataset_dir, batch_size=BS, shuffle=False, format=fmt)))
        assert got.tolist() == reference["keys"].tolist(), fmt


def test_shuffle_mixes_rows_and_changes_with_the_epoch(dataset_dir, reference):
    pos = {k: i for i, k in enumerate(reference["keys"].tolist())}
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=3)
    e0 = [pos[k] for k in keys_of(list(ds)).tolist()]
    ds.set_epoch(1)
    e1 = [pos[k] for k in keys_of(list(ds)).tolist()]
    again = [pos[k] for k in keys_of(list(ShardDataset(dataset_dir, batch_size=BS, seed=3))).tolist()]
    assert e0 == again and e0 != e1 and sorted(e0) == sorted(e1)
    n = len(e0)
    assert abs(np.corrcoef(np.arange(n), e0)[0, 1]) < 0.2  # no trace of the input order
    first = np.array(e0[:BS])
    assert len(np.unique(first // 1000)) >= 2  # a batch mixes rows of several row groups


def test_drop_last_drops_only_the_short_batch(dataset_dir, reference):
    batches = list(ShardDataset(dataset_dir, batch_size=BS, seed=3, drop_last=True))
    n = len(reference["keys"])
    assert [len(b["label"]) for b in batches] == [BS] * (n // BS)
    assert len(set(keys_of(batches).tolist())) == n // BS * BS


def test_columns_select_and_webdataset_gives_the_same_rows(dataset_dir, reference):
    got = list(ShardDataset(dataset_dir, batch_size=BS, seed=5, columns=["label", "C3"], format="webdataset"))
    assert set(got[0]) == {"label", "C3"}
    pairs = sorted(zip(torch.cat([b["C3"] for b in got]).tolist(), torch.cat([b["label"] for b in got]).tolist()))
    ref = sorted(zip(reference["columns"]["C3"].tolist(), reference["columns"]["label"].tolist()))
    assert pairs == ref


def batch_sets(batches):
    return sorted(tuple(sorted(batch_keys(b).tolist())) for b in batches)


def test_batches_are_the_same_whatever_the_ranks_and_workers(dataset_dir):
    one = batch_sets(list(ShardDataset(dataset_dir, batch_size=BS, seed=9)))
    for ranks, workers in ((2, 2), (3, 1), (1, 3)):
        got = []
        counts = []
        for r in range(ranks):
            ds = ShardDataset(dataset_dir, batch_size=BS, seed=9, rank=r, world_size=ranks)
            part = list(ShardLoader(ds, num_workers=workers))
            counts.append(len(part))
            got.extend(part)
        assert len(set(counts)) == 1, (ranks, counts)
        assert sorted(set(batch_sets(got))) == sorted(set(one)), (ranks, workers)


# --- resumability: one conformance test for every stage --------------------------------------------------
STAGES = {
    "dataset": dict(loader=None),
    "dataset-webdataset": dict(loader=None, format="webdataset"),
    "dataset-no-shuffle": dict(loader=None, shuffle=False),
    "loader-2-workers": dict(loader=2),
    "loader-3-workers-webdataset": dict(loader=3, format="webdataset"),
    "rank-1-of-3-drop-last": dict(loader=2, rank=1, world_size=3, drop_last=True),
}


def make_stage(dataset_dir, name):
    kw = dict(STAGES[name])
    workers = kw.pop("loader")
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=11, **kw)
    return ds if workers is None else ShardLoader(ds, num_workers=workers)


def take(stage, n):
    out = []
    if n == 0:
        return out
    for b in stage:
        out.append(batch_keys(b))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_resumes_with_the_identical_remaining_sequence(dataset_dir, name):
    full = [batch_keys(b) for b in make_stage(dataset_dir, name)]
    assert len(full) >= 7
    for k in (0, 1, 5, len(full) - 1, len(full)):
        stage = make_stage(dataset_dir, name)
        head = take(stage, k)
        state = json.loads(json.dumps(stage.state_dict()))  # plain JSON survives
        fresh = make_stage(dataset_dir, name)
        fresh.load_state_dict(state)
        rest = [batch_keys(b) for b in fresh]
        if k == len(full):  # a finished epoch resumes into the next one
            nxt = make_stage(dataset_dir, name)
            (nxt.dataset if isinstance(nxt, ShardLoader) else nxt).set_epoch(1)
            assert [r.tolist() for r in rest] == [batch_keys(b).tolist() for b in nxt]
            continue
        assert [h.tolist() for h in head] == [f.tolist() for f in full[:k]]
        assert [r.tolist() for r in rest] == [f.tolist() for f in full[k:]], (name, k)


def test_an_interrupted_epoch_continues_where_it_stopped(dataset_dir):
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=2)
    full = [batch_keys(b).tolist() for b in ShardDataset(dataset_dir, batch_size=BS, seed=2)]
    head = [b.tolist() for b in take(ds, 4)]
    rest = [batch_keys(b).tolist() for b in ds]
    assert head + rest == full


def test_resume_on_another_number_of_ranks_gives_exactly_the_remaining_rows(dataset_dir, reference):
    def rank_loaders(ranks, workers, state=None):
        out = []
        for r in range(ranks):
            ds = ShardDataset(dataset_dir, batch_size=BS, seed=4, rank=r, world_size=ranks)
            if state is not None:
                ds.load_state_dict(state)
            out.append(ShardLoader(ds, num_workers=workers))
        return out

    first = rank_loaders(2, 2)
    seen = [k for ld in first for b in take(ld, 3) for k in b.tolist()]
    states = [ld.state_dict() for ld in first]
    assert states[0] == states[1]
    everything = set(reference["keys"].tolist())
    for ranks, workers in ((1, 0), (3, 2), (2, 2)):
        later = [rank_loaders(ranks, workers, states[0])[r] for r in range(ranks)]
        per_rank = [[batch_keys(b).tolist() for b in ld] for ld in later]
        assert len({len(p) for p in per_rank}) == 1
        rows = [k for p in per_rank for b in p for k in b]
        assert set(rows) | set(seen) == everything and len(seen) == len(set(seen))
        assert not set(seen) & set(rows)
        if ranks == 1:
            assert len(rows) == len(everything) - len(seen)  # one rank: no padding, every row once


def test_state_from_another_setup_is_refused(dataset_dir):
    state = ShardDataset(dataset_dir, batch_size=BS).state_dict()
    with pytest.raises(ShardsmithError, match="state.batch_size: the state was saved with batch_size=1000"):
        ShardDataset(dataset_dir, batch_size=500).load_state_dict(state)
    with pytest.raises(ShardsmithError, match="state.dataset"):
        ShardDataset(dataset_dir, batch_size=BS, split="valid").load_state_dict(state)
    with pytest.raises(ShardsmithError, match="not a ShardDataset state"):
        ShardDataset(dataset_dir, batch_size=BS).load_state_dict({"epoch": 3})


# --- bad input ----------------------------------------------------------------------------------------------
def _first_parquet(d, split="train"):
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    return os.path.join(d, next(s["path"] for s in m["splits"][split]["shards"] if s["format"] == "parquet"))


def test_missing_shard_names_its_path(dataset_copy):
    path = _first_parquet(dataset_copy)
    os.remove(path)
    with pytest.raises(InputError, match=f"{path}: shard listed in the manifest is missing"):
        ShardDataset(dataset_copy)


def test_corrupt_shard_fails_the_checksum_naming_its_path(dataset_copy):
    path = _first_parquet(dataset_copy)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(InputError, match=f"{path}: checksum mismatch"):
        list(ShardDataset(dataset_copy, shuffle=False, verify=True))


def test_truncated_shard_fails_to_read_naming_its_path(dataset_copy):
    path = _first_parquet(dataset_copy)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    with pytest.raises(InputError, match=f"{path}: corrupt shard: "):
        list(ShardDataset(dataset_copy, shuffle=False))


def test_unreadable_or_missing_manifest_names_its_path(dataset_copy, tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path}/nope/manifest.json: no such manifest"):
        ShardDataset(str(tmp_path / "nope" / "manifest.json"))
    bad = os.path.join(dataset_copy, "manifest.json")
    open(bad, "w").write("{not json")
    with pytest.raises(InputError, match=f"{bad}: not a readable manifest"):
        ShardDataset(dataset_copy)


def test_bad_arguments_name_the_argument(dataset_dir):
    with pytest.raises(InputError, match="split: no split 'trian'.*did you mean 'train'"):
        ShardDataset(dataset_dir, split="trian")
    with pytest.raises(ShardsmithError, match="columns: no column 'C99'"):
        ShardDataset(dataset_dir, columns=["C99"])
    with pytest.raises(ShardsmithError, match="columns: no columns to yield"):
        ShardDataset(dataset_dir, columns=[])
    with pytest.raises(ShardsmithError, match="batch_size"):
        ShardDataset(dataset_dir, batch_size=0)
    with pytest.raises(ShardsmithError, match="uneven"):
        ShardDataset(dataset_dir, uneven="wrap")
    if not torch.cuda.is_available():
        with pytest.raises(ShardsmithError, match="device: 'cuda' was asked for"):
            ShardDataset(dataset_dir, device="cuda")
    with pytest.raises(ShardsmithError, match="persistent_workers"):
        ShardLoader(ShardDataset(dataset_dir), num_workers=2, persistent_workers=True)


# --- device transfer ----------------------------------------------------------------------------------------
def test_batch_tensors_share_one_buffer_that_rebuilds_exactly(dataset_dir):
    from shardsmith.shards.loader.device import _shared_buffer

    batch = next(iter(ShardDataset(dataset_dir, batch_size=BS, seed=1)))
    host, views = _shared_buffer(batch)
    assert len({t.untyped_storage().data_ptr() for t in batch.values()}) == 1
    for name, (off, size, dtype) in views.items():
        assert torch.equal(host[off: off + size].view(dtype), batch[name])
    loose = {"a": torch.arange(5), "b": torch.ones(3, dtype=torch.float32)}
    host, views = _shared_buffer(loose)
    for name, (off, size, dtype) in views.items():
        assert torch.equal(host[off: off + size].view(dtype), loose[name])


@pytest.mark.gpu(needs="cuda")
def test_cuda_batches_match_the_cpu_ones(dataset_dir):
    for workers in (0, 2):
        # The same worker count on both sides: with workers, batches are dealt out in another order.
        cpu = list(ShardLoader(ShardDataset(dataset_dir, batch_size=BS, seed=1), num_workers=workers))
        for assemble in ("host", "device"):
            gpu = list(ShardLoader(ShardDataset(dataset_dir, batch_size=BS, seed=1, device="cuda", assemble=assemble),
                                   num_workers=workers))
            torch.cuda.synchronize()
            assert len(gpu) == len(cpu)
            for a, b in zip(cpu, gpu):
                assert all(b[k].is_cuda and torch.equal(a[k], b[k].cpu()) for k in a), assemble


def test_messages_of_several_batches_keep_the_single_batch_order(dataset_dir):
    seqs = []
    for k in (1, 3, 8):
        ds = ShardDataset(dataset_dir, batch_size=BS, seed=8)
        seqs.append([batch_keys(b).tolist() for b in ShardLoader(ds, num_workers=2, batches_per_message=k)])
    assert seqs[0] == seqs[1] == seqs[2]


def test_interleave_deals_message_rounds_batch_by_batch():
    from shardsmith.shards.loader.layout import BatchSpec
    from shardsmith.shards.loader.transport import interleave

    spec = BatchSpec([("x", np.dtype("int64"))])
    counts, k = [5, 3, 0, 4], 2
    lists = [[100 * w + i for i in range(c)] for w, c in enumerate(counts)]
    messages, r = [], 0  # what a DataLoader sends: one message per busy worker, in turn
    while any(lists[w][r * k:] for w in range(len(counts))):
        for w in range(len(counts)):
            part = lists[w][r * k: (r + 1) * k]
            if part:
                buf = torch.tensor(part, dtype=torch.int64).view(torch.uint8)
                messages.append({"__shardsmith_batches__": buf, "__rows__": torch.ones(len(part), dtype=torch.int64)})
        r += 1
    got = [int(b["x"][0]) for b in interleave(messages, counts, k, spec)]
    expect = [lst[j] for j in range(max(counts)) for lst in lists if j < len(lst)]  # one batch per worker in turn
    assert got == expect


def test_after_the_last_batch_the_position_is_the_next_epochs_start(dataset_dir):
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=2)
    first = [batch_keys(b).tolist() for b in ds]
    state = ds.state_dict()
    assert state["epoch"] == 1 and state["jobs"] is None and len(ds) == len(first)
    ds.set_epoch(1)  # the loop's own set_epoch(1) keeps that position
    second = [batch_keys(b).tolist() for b in ds]
    again = ShardDataset(dataset_dir, batch_size=BS, seed=2)
    again.load_state_dict(state)
    again.set_epoch(0)  # naming another epoch starts it from its beginning
    assert [batch_keys(b).tolist() for b in again] == first != second
