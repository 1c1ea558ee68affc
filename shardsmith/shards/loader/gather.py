"""The device path: whole blocks to the device once, shuffled and cut into batches there.

A block's units are decoded on the host and packed, in stream order, into a pinned staging slot
laid out like a batch of the block's rows (``BatchSpec.pack``: one (columns, rows) matrix per
dtype). On the lane's side stream (``device.CudaLane``) the slot is copied to the device, the
block's row permutation is computed there (``permute``: the same hash order as the host path) and
applied with one gather per dtype. A batch is then a slice of the block's rows (``EpochPlan.pieces``):
views of the block's memory when the batch lies in one block, else a buffer of its own filled by a
strided copy per dtype and block on the consumer's stream. Rows and layout are the host path's,
so the batches are the same bit for bit, in the same order.

Who holds which block is bookkeeping worked out beforehand (``order.block_schedule``): the
producer of a consumer's blocks (read-ahead threads in the process, or a DataLoader worker) makes
them in that order, and the consumer lets each go when the schedule says so; its memory returns
once the last batch viewing it is gone. A DataLoader worker never touches the device: it sends its
blocks packed in host memory (``block_message``), and the consuming process uploads them as they
arrive (``Router``).

A batch that is a view keeps its whole block in device memory while it lives (about 42 MB at the
default shuffle buffer): ``clone()`` a batch to keep it for long. A batch id dealt twice
(``uneven="pad"``) reads its blocks afresh, so it holds the shards' rows even if the first
delivery was changed in place.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np
import torch

from shardsmith.shards import order as od
from shardsmith.shards.loader.blocks import BlockFeed
from shardsmith.shards.loader.device import Staging
from shardsmith.shards.loader.layout import BatchSpec
from shardsmith.shards.loader.permute import hash_permutation_tensor

CAPACITY = 2  # blocks a consumer holds per producer: a batch's pieces are cut one block at a time
BLOCK, BLOCK_ID, WORKER = "__shardsmith_block__", "__block__", "__worker__"


@dataclass
class DeviceBlock:
    """Block ``j`` on the device: ``mats`` are its (columns, rows) matrices, rows permuted, valid
    once ``token`` (the lane's work) has ended; ``buf`` is their memory."""

    j: int
    mats: dict
    token: object
    buf: torch.Tensor


def upload(lane, spec: BatchSpec, plan: od.EpochPlan, j: int, host: torch.Tensor) -> DeviceBlock:
    """Block ``j``, packed unpermuted in ``host`` (``spec.pack``), copied to the lane's device and
    permuted there, on the lane. ``host`` must not change until the returned token has ended."""
    n = plan.block_rows(j)
    out = lane.alloc(host.numel())

    def work():
        if not plan.shuffle:
            out.copy_(host, non_blocking=True)
            return
        permute(spec, plan, j, host.to(lane.device, non_blocking=True), out)

    return DeviceBlock(j, spec.matrices(out, n), lane.submit(work), out)


def permute(spec: BatchSpec, plan: od.EpochPlan, j: int, raw: torch.Tensor, out: torch.Tensor) -> None:
    """Block ``j``'s rows, packed in stream order in ``raw``, into ``out`` in their permuted order:
    the permutation computed on their device, then one gather per dtype."""
    n = plan.block_rows(j)
    perm = hash_permutation_tensor(n, plan.block_seed(j), raw.device)
    src, dst = spec.matrices(raw, n), spec.matrices(out, n)
    for dt, mat in dst.items():
        torch.index_select(src[dt], 1, perm, out=mat)


def read_block(source, plan: od.EpochPlan, j: int, lock: threading.Lock | None = None) -> list[dict]:
    """Block ``j``'s units as NumPy columns (one reader at a time: open files are shared)."""
    if lock is None:
        return [source.read(u) for u in plan.blocks[j]]
    with lock:
        return [source.read(u) for u in plan.blocks[j]]


def staged_upload(staging: Staging, lane, spec: BatchSpec, plan: od.EpochPlan, j: int, fill) -> DeviceBlock:
    """Block ``j`` through a staging slot: ``fill(slot)`` writes it packed (uint8 tensor), then it
    is uploaded; the slot is handed back with the copy's token."""
    nbytes = max(spec.nbytes(plan.block_rows(j)), 1)
    i, slot = staging.acquire(nbytes)
    token = None
    try:
        fill(slot)
        block = upload(lane, spec, plan, j, slot)
        token = block.token
    finally:
        staging.release(i, token)
    return block


def block_message(source, plan: od.EpochPlan, spec: BatchSpec, j: int, worker: int) -> dict:
    """What a DataLoader worker sends for block ``j``: the block packed in one host buffer."""
    n = plan.block_rows(j)
    buf = torch.empty(max(spec.nbytes(n), 1), dtype=torch.uint8)
    spec.pack(read_block(source, plan, j), buf.numpy(), n)
    return {BLOCK: buf, BLOCK_ID: torch.tensor([j]), WORKER: torch.tensor([worker])}


class Router:
    """Blocks from DataLoader workers' messages (``block_message``), uploaded through the staging
    slots as they arrive, and handed out per worker in the order each worker sent them."""

    def __init__(self, messages, staging: Staging, lane, spec: BatchSpec, plan: od.EpochPlan):
        self.it = iter(messages)
        self.staging, self.lane, self.spec, self.plan = staging, lane, spec, plan
        self.queues: dict = collections.defaultdict(collections.deque)

    def next_for(self, worker: int) -> DeviceBlock:
        q = self.queues[worker]
        while not q:
            msg = next(self.it, None)
            if msg is None:
                raise RuntimeError(f"DataLoader worker {worker} sent fewer blocks than its batches need")
            host = msg[BLOCK]
            block = staged_upload(self.staging, self.lane, self.spec, self.plan, int(msg[BLOCK_ID]),
                                  lambda slot, host=host: slot.copy_(host))
            self.queues[int(msg[WORKER])].append(block)
        return q.popleft()


class DeviceBatches:
    """Batches cut on the device from the blocks of one or more producers (``next_block`` callables:
    read-ahead threads, or a DataLoader worker through ``Router``), following each producer's
    ``order.block_schedule``. A batch inside one block is a set of views of that block's permuted
    matrices: no copy, no kernel, a few microseconds of Python, which is what a batch costs here.
    A batch that spans blocks is copied into a buffer of its own (one strided copy per dtype and
    block)."""

    def __init__(self, plan: od.EpochPlan, spec: BatchSpec, lane, producers: int = 1):
        self.plan, self.spec, self.lane = plan, spec, lane
        self.held: list[dict] = [{} for _ in range(producers)]

    def batch(self, steps: list, next_block, producer: int = 0) -> dict:
        """The batch made of ``steps`` (one entry of ``block_schedule``), on the lane's device."""
        if len(steps) == 1:
            _, lo, hi, *_ = steps[0]
            mats = self._block(producer, steps[0], next_block).mats
            return self.spec.unbind({dt: mat[:, lo:hi] for dt, mat in mats.items()})
        n = sum(step[2] - step[1] for step in steps)
        buf = torch.empty(max(self.spec.nbytes(n), 1), dtype=torch.uint8, device=self.lane.device)
        mats = self.spec.matrices(buf, n)
        for step in steps:
            _, lo, hi, at, *_ = step
            src = self._block(producer, step, next_block).mats
            for dt, mat in mats.items():
                mat[:, at: at + hi - lo].copy_(src[dt][:, lo:hi])
        return self.spec.unbind(mats)

    def _block(self, producer: int, step, next_block) -> DeviceBlock:
        j, *_, load, released = step
        held = self.held[producer]
        if released is not None:
            del held[released]  # its memory lives on in the batches that view it, then goes back
        if load:
            block = next_block()
            if block.j != j:
                raise RuntimeError(f"block {block.j} arrived where block {j} was due: the loads and batches disagree")
            self.lane.join(block.token, [block.buf])
            held[j] = block
        return held[j]

    def live(self) -> int:
        """Blocks held on the device now."""
        return sum(len(h) for h in self.held)


def _staging(lane, plan: od.EpochPlan, spec: BatchSpec, slots: int) -> Staging:
    largest = int(np.diff(plan.block_starts).max()) if len(plan.blocks) else 0
    return Staging(lane, slots, spec.nbytes(largest))


def local_batches(plan: od.EpochPlan, spec: BatchSpec, source, lane, ids: np.ndarray, depth: int):
    """The batches ``ids`` by the device path in this process: ``depth`` read-ahead threads decode
    blocks, pack them into pinned slots and start their copies; batches are gathered on the device."""
    staging, lock = _staging(lane, plan, spec, depth + 1), threading.Lock()

    def make(j: int) -> DeviceBlock:
        parts, n = read_block(source, plan, j, lock), plan.block_rows(j)
        return staged_upload(staging, lane, spec, plan, j, lambda slot: spec.pack(parts, slot.numpy(), n))

    yield from scheduled_batches(plan, spec, lane, ids, make, depth)


def scheduled_batches(plan: od.EpochPlan, spec: BatchSpec, lane, ids: np.ndarray, make, depth: int):
    """The batches ``ids`` gathered on the device from blocks that ``make(j)`` brings there,
    ``depth`` blocks ahead; the feed is closed however the caller stops."""
    schedule = od.block_schedule(plan, ids, CAPACITY)
    feed = BlockFeed(od.loads(schedule), make, depth)
    gather = DeviceBatches(plan, spec, lane)
    try:
        for steps in schedule:
            yield gather.batch(steps, feed)
    finally:
        feed.close()


def worker_messages(plan: od.EpochPlan, spec: BatchSpec, source, ids: np.ndarray, worker: int, readahead: bool):
    """A DataLoader worker's side of the device path: its blocks (``block_loads`` of its batches),
    packed in host memory, one message each, the next one read ahead on a thread."""
    loads = od.block_loads(plan, ids, CAPACITY)
    feed = BlockFeed(loads, lambda j: block_message(source, plan, spec, j, worker), 1 if readahead else 0)
    try:
        for _ in loads:
            yield feed()
    finally:
        feed.close()


def worker_batches(plan: od.EpochPlan, spec: BatchSpec, lane, messages, ids: list[np.ndarray]):
    """The consuming process's side: batches gathered on the device from the workers' blocks, in the
    order a DataLoader deals single batches (one per worker in turn, skipping the finished)."""
    router = Router(messages, _staging(lane, plan, spec, 3), lane, spec, plan)
    gather = DeviceBatches(plan, spec, lane, producers=len(ids))
    schedules = [od.block_schedule(plan, x, CAPACITY) for x in ids]
    for i in range(max((len(x) for x in schedules), default=0)):
        for w, schedule in enumerate(schedules):
            if i < len(schedule):
                yield gather.batch(schedule[i], lambda w=w: router.next_for(w), producer=w)
