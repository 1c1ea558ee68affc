"""The loader's order and split, as pure arithmetic, against brute-force simulations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shardsmith.shards import order as od


def simulate_round_robin(lists):
    """What a DataLoader hands out: worker 0, 1, ... in turn, skipping finished ones."""
    queues = [list(od.job_ids(lst)) for lst in lists]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def rank_sequence(jobs, rank):
    return simulate_round_robin(jobs[rank])


def test_units_follow_row_groups_and_whole_shards():
    units = od.make_units([2500, 1000, 0, 7], [1000, 1000, 1000, None])
    assert [(u.shard, u.start, u.stop) for u in units] == [
        (0, 0, 1000), (0, 1000, 2000), (0, 2000, 2500), (1, 0, 1000), (3, 0, 7)]


def _plan(epoch=0, seed=1, shuffle=True, drop_last=False, bs=100, block_units=2):
    units = od.make_units([1000, 1000, 550], [200] * 3)
    return od.EpochPlan(units, seed=seed, epoch=epoch, shuffle=shuffle, block_units=block_units,
                        batch_size=bs, drop_last=drop_last)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a, b, c, d = _plan(), _plan(), _plan(epoch=1), _plan(seed=2)
    assert a.units == b.units and a.units != c.units and a.units != d.units
    assert sorted(a.units, key=lambda u: (u.shard, u.start)) == od.make_units([1000, 1000, 550], [200] * 3)
    for j in range(len(a.blocks)):
        p = a.block_permutation(j)
        assert sorted(p.tolist()) == list(range(len(p))) and p.tolist() != sorted(p.tolist())
        np.testing.assert_array_equal(p, b.block_permutation(j))
    assert a.rows == 2550 and a.batches == 26
    assert _plan(drop_last=True).rows == 2500 and _plan(drop_last=True).batches == 25
    unshuffled = _plan(shuffle=False)
    assert unshuffled.units == od.make_units([1000, 1000, 550], [200] * 3)
    np.testing.assert_array_equal(unshuffled.block_permutation(0), np.arange(400))


def test_hash_permutation_is_the_specified_one():
    from shardsmith.kernels.xxhash64 import xxh64_bytes

    keys = [xxh64_bytes(int(i).to_bytes(8, "little"), 99) for i in range(50)]
    assert od.hash_permutation(50, 99).tolist() == sorted(range(50), key=lambda i: (keys[i], i))


@pytest.mark.parametrize("batches,ranks,workers", [(26, 2, 2), (26, 3, 2), (7, 4, 3), (3, 5, 1), (0, 2, 2),
                                                   (100, 1, 3)])
@pytest.mark.parametrize("uneven", ["pad", "drop"])
def test_split_gives_equal_counts_and_every_batch_once(batches, ranks, workers, uneven):
    jobs = od.split_jobs([(0, batches)], ranks, workers, uneven)
    counts = [sum(b - a for lst in r for a, b, _ in lst) for r in jobs]
    assert len(set(counts)) == 1
    real = sorted(i for r in jobs for lst in r for i in od.job_ids([j for j in lst if not j[2]]).tolist())
    pads = [i for r in jobs for lst in r for i in od.job_ids([j for j in lst if j[2]]).tolist()]
    if uneven == "pad":
        assert real == list(range(batches)) and counts[0] == -(-batches // ranks)
        assert set(pads) <= set(range(batches))
    else:
        assert not pads and counts[0] == batches // ranks
        assert len(real) == len(set(real)) and len(real) >= batches - (ranks - 1)


@pytest.mark.parametrize("counts", [[3, 3], [4, 3, 3], [5, 0, 2], [1, 4, 4, 0], [0, 0, 2]])
def test_delivered_matches_a_round_robin_simulation(counts):
    lists = [[(100 * w, 100 * w + c, False)] if c else [] for w, c in enumerate(counts)]
    seq = simulate_round_robin(lists)
    for steps in range(sum(counts) + 1):
        done, nxt = od.delivered(counts, steps)
        served = seq[:steps]
        assert done == [sum(1 for s in served if s // 100 == w) for w in range(len(counts))]
        if steps < len(seq):
            assert seq[steps] // 100 == nxt


@pytest.mark.parametrize("ranks,workers", [(1, 1), (1, 2), (2, 2), (3, 2), (2, 3)])
def test_advance_then_same_shape_continues_the_identical_sequence(ranks, workers):
    jobs = od.split_jobs([(0, 23)], ranks, workers, "pad")
    full = [rank_sequence(jobs, r) for r in range(ranks)]
    for steps in range(len(full[0]) + 1):
        rest = od.reshape(od.advance(jobs, steps), ranks, workers, "pad")
        for r in range(ranks):
            assert rank_sequence(rest, r) == full[r][steps:]


@pytest.mark.parametrize("uneven", ["pad", "drop"])
@pytest.mark.parametrize("shape,new_shape", list(itertools.product([(2, 2), (3, 1), (1, 3)], [(1, 1), (3, 2), (2, 2)])))
def test_reshape_keeps_exactly_the_remaining_batches(shape, new_shape, uneven):
    ranks, workers = shape
    jobs = od.split_jobs([(0, 31)], ranks, workers, uneven)
    full = [rank_sequence(jobs, r) for r in range(ranks)]
    steps = 3
    seen = {b for r in range(ranks) for b in full[r][:steps]}
    rest = od.reshape(od.advance(jobs, steps), *new_shape, uneven)
    counts = [sum(b - a for lst in r for a, b, _ in lst) for r in rest]
    assert len(set(counts)) == 1
    later = [b for r in range(new_shape[0]) for b in rank_sequence(rest, r)]
    real_later = [b for r in rest for lst in r for b in od.job_ids([j for j in lst if not j[2]]).tolist()]
    assert len(real_later) == len(set(real_later)) and not (set(real_later) & seen)
    if uneven == "pad":  # nothing lost: what was seen plus what comes is everything
        assert set(later) | seen == set(range(31))
    else:  # nothing repeated; each split leaves out at most ranks - 1 batches
        assert sorted(later) == sorted(real_later)
        assert len(set(range(31)) - set(later) - seen) <= (ranks - 1) + (new_shape[0] - 1)


def test_blocks_in_order_lists_each_block_once_in_first_use_order():
    plan = _plan(bs=150)
    ids = np.array([5, 0, 1, 16])
    blocks = plan.blocks_in_order(ids)
    expect = []
    for b in ids.tolist():
        s, e = plan.batch_rows(b)
        for j in (plan.block_of(s), plan.block_of(e - 1)):
            if j not in expect:
                expect.append(j)
    assert blocks == expect


# --- the device path's bookkeeping: pieces of batches, and which block is held when ----------------------
@pytest.mark.parametrize("bs,block_units,drop_last", [(100, 2, False), (333, 1, True), (1000, 1, False), (7, 3, False)])
def test_pieces_tile_the_stream_in_order(bs, block_units, drop_last):
    plan = _plan(bs=bs, block_units=block_units, drop_last=drop_last)
    rows = []
    for b in range(plan.batches):
        start, stop = plan.batch_rows(b)
        at = 0
        for j, lo, hi, dest in plan.pieces(b):
            assert dest == at and 0 <= lo < hi <= plan.block_rows(j)
            rows.extend(int(plan.block_starts[j]) + r for r in range(lo, hi))
            at += hi - lo
        assert at == stop - start
    assert rows == list(range(plan.rows))


def test_block_cache_holds_the_most_recently_used():
    cache = od.BlockCache(2)
    seq = [cache.touch(j) for j in (5, 6, 5, 7, 6, 6, 5)]
    assert seq == [(True, None), (True, None), (False, None), (True, 6), (True, 5), (False, None), (True, 7)]
    assert cache.held == [6, 5]


@pytest.mark.parametrize("capacity", [1, 2, 3])
def test_block_schedule_is_what_a_consumer_of_the_batches_needs(capacity):
    """A consumer that follows the schedule over any batch list (runs, reversals, repeats, a rank's run then
    its pads) holds at most ``capacity`` blocks, holds every block a piece reads, and is sent exactly the
    loads; a batch that comes again loads its blocks afresh."""
    rng = np.random.default_rng(capacity)
    for bs, block_units in ((100, 2), (450, 1), (30, 1)):
        plan = _plan(bs=bs, block_units=block_units)
        runs = [np.arange(plan.batches), np.arange(plan.batches)[::-1], rng.integers(0, plan.batches, 40),
                np.concatenate([np.arange(5, plan.batches), np.arange(0, 2)])]  # a rank's run, then its pads
        for ids in runs:
            schedule = od.block_schedule(plan, ids, capacity)
            loads, held, seen = [], set(), set()
            for b, steps in zip(ids.tolist(), schedule):
                assert [s[:4] for s in steps] == plan.pieces(b)
                for j, _, _, _, load, released in steps:
                    assert released is None or (load and released in held)
                    held.discard(released)
                    if load:
                        loads.append(j)
                        held.add(j)
                    assert j in held and len(held) <= capacity
                    assert load or b not in seen
                seen.add(b)
            assert loads == od.block_loads(plan, ids, capacity) == od.loads(schedule)
