"""Reading the epoch's stream a block at a time, the next block read ahead on a thread: by
random access with a small cache (``BlockReader``, the host path), or in a fixed order worked out
beforehand (``BlockFeed``, the device path: ``order.block_schedule``)."""

from __future__ import annotations

import collections
import concurrent.futures

from shardsmith.shards import order as od
from shardsmith.shards.loader.layout import BatchSpec
from shardsmith.shards.readers import ShardSource


class BlockReader:
    """Blocks of the epoch's stream as NumPy columns with their row permutation; the next block
    this worker needs is read ahead on one background thread (pyarrow decodes without the GIL)."""

    def __init__(self, plan: od.EpochPlan, source: ShardSource, spec: BatchSpec, order: list[int], readahead: bool):
        self.plan, self.source, self.spec = plan, source, spec
        self.next = {a: b for a, b in zip(order, order[1:])}
        self.cache: collections.OrderedDict = collections.OrderedDict()
        self.pending: dict = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(1) if readahead else None

    def get(self, j: int):
        if j in self.cache:
            return self.cache[j]
        fut = self.pending.pop(j, None)
        data = fut.result() if fut is not None else self._submit(j).result() if self.pool else self._load(j)
        self.cache[j] = data
        while len(self.cache) > 2:
            self.cache.popitem(last=False)
        nxt = self.next.get(j)
        if self.pool is not None and nxt is not None and nxt not in self.cache and nxt not in self.pending:
            self.pending[nxt] = self._submit(nxt)
        return data

    def _submit(self, j: int):
        return self.pool.submit(self._load, j)

    def _load(self, j: int):
        parts = [self.source.read(u) for u in self.plan.blocks[j]]
        return self.spec.block(parts, self.plan.block_permutation(j) if self.plan.shuffle else None)

    def close(self) -> None:
        if self.pool is not None:
            for fut in self.pending.values():
                fut.cancel()
            self.pool.shutdown(wait=True)


class BlockFeed:
    """The blocks of a fixed list of loads, in order, each made by ``make(j)`` on up to ``depth``
    threads ahead of its use (``depth`` 0: when asked for). Call it for the next one."""

    def __init__(self, loads: list[int], make, depth: int):
        self.loads, self.make, self.depth = list(loads), make, depth
        self.next_load = 0
        self.pending: collections.deque = collections.deque()
        self.pool = concurrent.futures.ThreadPoolExecutor(depth) if depth else None
        self._fill()

    def _fill(self) -> None:
        while self.pool is not None and len(self.pending) < self.depth and self.next_load < len(self.loads):
            self.pending.append(self.pool.submit(self.make, self.loads[self.next_load]))
            self.next_load += 1

    def __call__(self):
        if self.pool is None:
            if self.next_load >= len(self.loads):
                raise RuntimeError("no block left to load: the loads and the batches disagree")
            self.next_load += 1
            return self.make(self.loads[self.next_load - 1])
        if not self.pending:
            raise RuntimeError("no block left to load: the loads and the batches disagree")
        block = self.pending.popleft().result()
        self._fill()
        return block

    def close(self) -> None:
        if self.pool is not None:
            for fut in self.pending:
                fut.cancel()
            self.pool.shutdown(wait=True)
