"""The loader's sample order and its split over ranks and workers: pure arithmetic, no I/O, no torch.

**The epoch's sequence** depends on the manifest, ``seed``, ``epoch``, ``batch_size``, ``drop_last``,
``shuffle`` and the buffer size, and never on the number of ranks or workers:

1. *Units* are the shards cut at ``unit_rows`` (the Parquet row-group size the compiler wrote;
   WebDataset shards are cut at the same rows, so both formats give the same sequence).
2. The units are put in a random order: ascending shardsmith hash (``kernels/xxhash64``) of the unit
   index, seeded from (seed, epoch).
3. *Blocks* are runs of ``block_units`` consecutive units of that order: the shuffle buffer. The
   rows of block ``j`` are permuted by ascending hash of their index within the block, seeded from
   (seed, epoch, j). Concatenated, the blocks form the epoch's *stream* of rows.
4. *Batches* are consecutive ``batch_size`` slices of the stream; ``drop_last`` drops the short
   one at the end. Batch ``b`` holds stream rows ``[b * batch_size, (b + 1) * batch_size)``.

The hash, not NumPy's generators, makes the order: it is specified, so a job resumes on another
machine or NumPy version with the same order. Without ``shuffle`` the stream is the manifest's row
order.

**The split** (the only part that depends on the world): the epoch's batch ids are cut into
``ranks`` contiguous runs of equal length (+-1), each rank's run into ``workers`` contiguous runs
(the first workers take the one extra). Contiguous runs mean each worker reads its own blocks:
no shard is decoded twice, except a block shared by two neighbours. A DataLoader hands a rank's
batches out round-robin over its workers (skipping workers that are done), so rank step ``s`` comes
from worker ``s mod workers`` while all are busy.

**Equal batch counts per rank** (uneven counts hang DDP): with ``uneven="pad"`` (the default) a
rank one batch short repeats its own first batch (so every sample is seen at least once, the first
batch of a few ranks twice); with ``uneven="drop"`` a rank with one batch more skips its last (so
every sample is seen at most once; at most ``ranks - 1`` batches are left out of the epoch).

**Resuming.** A rank counts the batches it delivered; with DDP all ranks are at the same step, so
every rank can work out what every worker of every rank delivered, and all ranks save the same
state: the epoch and, per rank and worker, the batch ids still to deliver (padding marked). On the
same number of ranks and workers the run continues exactly as if never stopped (the worker due
next is moved to the front). On another number, the remaining real batch ids are split afresh as
above: exactly the remaining samples, in the same batches, only dealt differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shardsmith.kernels import xxhash64 as xx

# A job: batch ids [start, stop), and whether they are padding (repeats that count for nothing).
Job = tuple[int, int, bool]
SALT_UNITS, SALT_ROWS = 0x756E697473, 0x726F7773  # "units", "rows": keep the two orders unrelated


@dataclass(frozen=True)
class Unit:
    """Rows ``[start, stop)`` of shard number ``shard`` (its index in the split's shard list)."""

    shard: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def make_units(shard_rows, unit_rows) -> list[Unit]:
    """Cut each shard (rows ``shard_rows[i]``) into units of ``unit_rows[i]`` rows (None: whole)."""
    units = []
    for i, (n, per) in enumerate(zip(shard_rows, unit_rows)):
        step = per or max(n, 1)
        units.extend(Unit(i, s, min(s + step, n)) for s in range(0, n, step))
    return units


def _seed(*parts: int) -> int:
    """A 64-bit seed from integers, by chaining the shardsmith hash."""
    h = 0x5EED
    for p in parts:
        h = int(xx.xxh64_u64(np.array([p & (2**64 - 1)], dtype=np.uint64), h)[0])
    return h


def hash_permutation(n: int, seed: int) -> np.ndarray:
    """Indices 0..n-1 in ascending order of their seeded hash. XXH64 of one 8-byte word is a
    bijection of the word (every step is invertible), so there are no ties and any sort agrees."""
    keys = xx.xxh64_u64(np.arange(n, dtype=np.uint64), seed)
    return np.argsort(keys)


class EpochPlan:
    """The stream of one epoch: units in order, blocks, and batches (see the module docstring)."""

    def __init__(self, units: list[Unit], *, seed: int, epoch: int, shuffle: bool, block_units: int,
                 batch_size: int, drop_last: bool):
        self.seed, self.epoch, self.shuffle, self.batch_size = seed, epoch, shuffle, batch_size
        order = hash_permutation(len(units), _seed(seed, epoch, SALT_UNITS)) if shuffle else range(len(units))
        self.units = [units[i] for i in order]
        self.blocks = [self.units[i: i + block_units] for i in range(0, len(self.units), block_units)]
        sizes = np.array([sum(u.rows for u in b) for b in self.blocks], dtype=np.int64)
        self.block_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.block_starts[-1])
        self.rows = total - total % batch_size if drop_last else total
        self.batches = -(-self.rows // batch_size)

    def batch_rows(self, b: int) -> tuple[int, int]:
        """Stream rows of batch ``b``."""
        return b * self.batch_size, min((b + 1) * self.batch_size, self.rows)

    def block_of(self, position: int) -> int:
        return int(np.searchsorted(self.block_starts, position, side="right") - 1)

    def block_rows(self, j: int) -> int:
        return int(self.block_starts[j + 1] - self.block_starts[j])

    def block_seed(self, j: int) -> int:
        """The seed of block ``j``'s row permutation (``hash_permutation(rows, seed)``)."""
        return _seed(self.seed, self.epoch, j, SALT_ROWS)

    def block_permutation(self, j: int) -> np.ndarray:
        n = self.block_rows(j)
        if not self.shuffle:
            return np.arange(n)
        return hash_permutation(n, self.block_seed(j))

    def pieces(self, b: int) -> list[tuple[int, int, int, int]]:
        """Batch ``b`` as pieces ``(block j, first row, end row, at)``: rows ``[first, end)`` of block
        ``j`` (in its permuted order) go to batch rows from ``at`` on. Most batches are one piece.

        >>> plan = EpochPlan(make_units([10, 10], [5, 5]), seed=0, epoch=0, shuffle=False, block_units=2,
        ...                  batch_size=4, drop_last=False)
        >>> plan.pieces(2)   # stream rows 8..11: the last two of block 0, the first two of block 1
        [(0, 8, 10, 0), (1, 0, 2, 2)]
        """
        start, stop = self.batch_rows(b)
        out, pos = [], start
        while pos < stop:
            j = self.block_of(pos)
            first, end = int(self.block_starts[j]), int(self.block_starts[j + 1])
            take = min(stop, end) - pos
            out.append((j, pos - first, pos - first + take, pos - start))
            pos += take
        return out

    def blocks_in_order(self, batch_ids: np.ndarray) -> list[int]:
        """The blocks that ``batch_ids`` read, in first-use order (for read-ahead)."""
        if len(batch_ids) == 0:
            return []
        firsts = np.searchsorted(self.block_starts, batch_ids * self.batch_size, side="right") - 1
        lasts = np.searchsorted(self.block_starts, np.minimum((batch_ids + 1) * self.batch_size, self.rows) - 1,
                                side="right") - 1
        seq = np.stack([firsts, lasts], axis=1).ravel()
        seq = seq[np.concatenate([[True], seq[1:] != seq[:-1]])]
        seen, out = set(), []
        for j in seq.tolist():
            if j not in seen:
                seen.add(j)
                out.append(j)
        return out


class BlockCache:
    """Which blocks a reader holds: the ``capacity`` used last. Bookkeeping only, so that a producer
    of blocks (a DataLoader worker, a read-ahead thread) and their consumer, running it over the same
    batches, agree on which block is loaded when and when it is released.

    >>> cache = BlockCache(2)
    >>> [cache.touch(j) for j in (0, 1, 0, 2, 1)]   # (load it?, the block released to make room)
    [(True, None), (True, None), (False, None), (True, 1), (True, 0)]
    """

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.held: list[int] = []  # least recently used first

    def touch(self, j: int) -> tuple[bool, int | None]:
        if j in self.held:
            self.held.remove(j)
            self.held.append(j)
            return False, None
        released = self.held.pop(0) if len(self.held) >= self.capacity else None
        self.held.append(j)
        return True, released

    def forget(self, j: int) -> None:
        """Block ``j`` is loaded afresh when next used (its copy held now goes with its last user)."""
        if j in self.held:
            self.held.remove(j)


# A step of a block schedule: rows [lo, hi) of block j go to batch rows from ``at`` on; ``load``: the
# block is loaded for this step; ``released``: the block let go to make room for it (or None).
Step = tuple[int, int, int, int, bool, "int | None"]


def block_schedule(plan: EpochPlan, batch_ids, capacity: int) -> list[list[Step]]:
    """For each of ``batch_ids`` (in order), its pieces (``EpochPlan.pieces``) as steps of a reader
    holding ``capacity`` blocks (``BlockCache``). A batch id that comes again (``uneven="pad"``)
    loads its blocks afresh: a batch may be a view of its block, which its first user may have
    changed in place, and the repeat must hold the rows as the shards do."""
    cache, seen, out = BlockCache(capacity), set(), []
    for b in np.asarray(batch_ids).tolist():
        again = b in seen
        seen.add(b)
        steps = []
        for j, lo, hi, at in plan.pieces(b):
            if again:
                cache.forget(j)
            load, released = cache.touch(j)
            steps.append((j, lo, hi, at, load, released))
        out.append(steps)
    return out


def loads(schedule: list[list[Step]]) -> list[int]:
    """The blocks a block schedule loads, in order: what its producer makes."""
    return [step[0] for steps in schedule for step in steps if step[4]]


def block_loads(plan: EpochPlan, batch_ids, capacity: int) -> list[int]:
    """The blocks a reader of ``batch_ids`` loads, in order (``block_schedule``)."""
    return loads(block_schedule(plan, batch_ids, capacity))


# --- the split over ranks and workers ----------------------------------------------------------------
def job_ids(jobs: list[Job]) -> np.ndarray:
    """The batch ids of a job list, in order."""
    parts = [np.arange(a, b, dtype=np.int64) for a, b, _ in jobs]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _runs(ids: np.ndarray, pad: bool) -> list[Job]:
    """Compress a sequence of ids into (start, stop, pad) runs of consecutive ids."""
    if len(ids) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(ids)]])
    return [(int(ids[s]), int(ids[e - 1]) + 1, pad) for s, e in zip(starts, stops)]


def _balanced(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges over ``n`` items; the first ``n % parts`` are one longer."""
    q, r = divmod(n, parts)
    bounds = np.cumsum([0] + [q + (1 if i < r else 0) for i in range(parts)])
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(parts)]


def split_jobs(remaining: list[tuple[int, int]], ranks: int, workers: int, uneven: str) -> list[list[list[Job]]]:
    """Deal the batch ids in ``remaining`` (ordered, disjoint intervals) to ranks, then workers:
    ``jobs[rank][worker]`` is that worker's job list. Every rank gets the same number of batches."""
    ids = job_ids([(a, b, False) for a, b in remaining])
    per_rank = [ids[a:b] for a, b in _balanced(len(ids), ranks)]
    counts = [len(p) for p in per_rank]
    target = max(counts) if uneven == "pad" else min(counts)
    jobs = []
    for r, real in enumerate(per_rank):
        real = real[:target]
        pool = real if len(real) else ids
        pad = pool[(np.arange(target - len(real)) + r) % len(pool)] if len(pool) and target > len(real) else ids[:0]
        n = len(real)
        jobs.append([_runs(real[a:min(b, n)], False) + _runs(pad[max(a - n, 0):max(b - n, 0)], True)
                     for a, b in _balanced(target, workers)])
    return jobs


def delivered(counts: list[int], steps: int) -> tuple[list[int], int]:
    """Round-robin over workers with ``counts`` batches each, skipping the finished ones: how many
    each has delivered after ``steps`` batches, and the worker due next (its index)."""
    counts_a = np.asarray(counts, dtype=np.int64)
    total = int(counts_a.sum())
    if steps >= total:
        return counts_a.tolist(), 0
    lo, hi = 0, int(counts_a.max())  # full rounds done: the largest k with sum(min(c, k)) <= steps
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(counts_a, mid).sum()) <= steps:
            lo = mid
        else:
            hi = mid - 1
    done = np.minimum(counts_a, lo)
    extra = steps - int(done.sum())
    active = np.flatnonzero(counts_a > lo)
    done[active[:extra]] += 1
    nxt = int(active[extra]) if extra < len(active) else int(np.flatnonzero(counts_a > lo + 1)[0])
    return done.tolist(), nxt


def advance(jobs: list[list[list[Job]]], steps: int) -> list[list[list[Job]]]:
    """The job lists after every rank delivered ``steps`` batches; the worker due next comes first."""
    out = []
    for rank_jobs in jobs:
        lists = [_drop_front(lst, 0) for lst in rank_jobs]
        counts = [sum(b - a for a, b, _ in lst) for lst in lists]
        done, nxt = delivered(counts, steps)
        rest = [_drop_front(lst, d) for lst, d in zip(lists, done)]
        out.append(rest[nxt:] + rest[:nxt])
    return out


def _drop_front(jobs: list[Job], n: int) -> list[Job]:
    out = []
    for a, b, pad in jobs:
        a, b = int(a), int(b)
        take = min(n, b - a)
        n -= take
        if a + take < b:
            out.append((a + take, b, bool(pad)))
    return out


def remaining_real(jobs: list[list[list[Job]]]) -> list[tuple[int, int]]:
    """The real (not padding) batch ids still to deliver, as sorted merged intervals."""
    spans = sorted((a, b) for rank_jobs in jobs for lst in rank_jobs for a, b, pad in lst if not pad)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def reshape(jobs: list[list[list[Job]]], ranks: int, workers: int, uneven: str) -> list[list[list[Job]]]:
    """The same remaining work for another number of ranks or workers (unchanged if the same)."""
    if len(jobs) == ranks and all(len(r) == workers for r in jobs):
        return jobs
    return split_jobs(remaining_real(jobs), ranks, workers, uneven)
