"""Reading the epoch's stream a block at a time, the next block read ahead on a thread."""

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
