"""The loader: a DataLoader over a ShardDataset whose workers send several batches per message,
dealt back out in the order the DataLoader would have used for single batches."""

from __future__ import annotations

from torch.utils.data import DataLoader

from shardsmith.errors import ShardsmithError
from shardsmith.shards import order as od
from shardsmith.shards.loader import gather
from shardsmith.shards.loader.dataset import ShardDataset
from shardsmith.shards.loader.layout import BatchSpec


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardDataset` that counts the batches it hands out, so that
    ``state_dict()`` is exact with any number of workers. Batches arrive in a fixed order.

    Workers send ``batches_per_message`` batches in one buffer (each message a shared-memory
    segment: they cost about a millisecond each here, more than assembling a batch), and the
    loader hands them out in the order the DataLoader would have for single batches: one batch
    per worker in turn.

    With ``assemble="device"`` (the default for a CUDA dataset) workers decode and send whole
    blocks, one per message, and the batches are gathered on the device in this process, in the
    same order (``gather.worker_batches``)."""

    def __init__(self, dataset: ShardDataset, num_workers: int = 0, batches_per_message: int = 8, **kwargs):
        if not isinstance(dataset, ShardDataset):
            raise TypeError("ShardLoader takes a ShardDataset")
        if kwargs.get("persistent_workers"):
            raise ShardsmithError("persistent workers would keep a stale epoch and state; leave them off",
                                  "persistent_workers")
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn"):
            if key in kwargs:
                raise ShardsmithError("ShardDataset makes the batches; set it on the dataset, not the loader", key)
        if dataset.assemble == "cudf" and num_workers:
            raise ShardsmithError("assemble='cudf' decodes on the GPU in this process, where workers cannot "
                                  "reach it: use num_workers=0", "num_workers")
        if not isinstance(batches_per_message, int) or batches_per_message < 1:
            raise ShardsmithError(f"expected a positive integer, got {batches_per_message!r}", "batches_per_message")
        self.batches_per_message = batches_per_message
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)

    def __iter__(self):
        ds = self.dataset
        ds._begin(max(1, self.num_workers))
        if self.num_workers == 0:
            yield from super().__iter__()
            return
        ds._begun = False
        if ds.assemble == "device":
            yield from self._device_batches(ds)
            return
        k = self.batches_per_message
        ds._chunk = k  # the workers start (and take their copy of the dataset) inside super().__iter__()
        try:
            messages = super().__iter__()
        finally:
            ds._chunk = 0
        rank = ds._resolved[0]
        counts = [sum(b - a for a, b, _ in lst) for lst in ds._start[rank]]
        for batch in interleave(messages, counts, k, BatchSpec(ds.columns)):
            ds._steps += 1
            yield ds.deliver(batch)

    def _device_batches(self, ds: ShardDataset):
        ds._send_blocks = True
        try:
            messages = super().__iter__()
        finally:
            ds._send_blocks = False
        ids = [od.job_ids(jobs) for jobs in ds._start[ds._resolved[0]]]
        for batch in gather.worker_batches(ds.plan(), BatchSpec(ds.columns), ds.lane(), messages, ids):
            ds._steps += 1
            yield batch

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)


def interleave(messages, counts: list[int], k: int, spec: BatchSpec):
    """Batches from workers' messages (``k`` batches each, ``counts[w]`` batches from worker w in
    all), in the order of a DataLoader over single batches: worker 0, 1, ... in turn, skipping
    the finished. The DataLoader hands out the messages in that turn order; a round of messages
    (one per worker still busy) is split and dealt out batch by batch."""
    it = iter(messages)
    chunks = [-(-c // k) for c in counts]
    for r in range(max(chunks, default=0)):
        batches = [unpack(next(it), spec) for w in range(len(counts)) if chunks[w] > r]
        for j in range(k):
            for lst in batches:
                if j < len(lst):
                    yield lst[j]


def unpack(message: dict, spec: BatchSpec) -> list[dict]:
    buf, rows = message["__shardsmith_batches__"], message["__rows__"].tolist()
    out, off = [], 0
    for n in rows:
        size = max(spec.nbytes(n), 1)
        out.append(spec.views(buf[off: off + size], n))
        off += size
    return out
