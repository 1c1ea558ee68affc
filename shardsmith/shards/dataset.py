"""Stream a compiled dataset into PyTorch: ``ShardDataset`` (an IterableDataset of batches) and
``ShardLoader`` (a DataLoader over it that keeps the resume state). The one module that imports torch.

    >>> ds = ShardDataset("shards/criteo_synthetic", split="train", batch_size=1024, seed=7)  # doctest: +SKIP
    >>> loader = ShardLoader(ds, num_workers=2)                                              # doctest: +SKIP
    >>> for epoch in range(start_epoch, epochs):                                            # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for batch in loader:          # {"label": tensor[1024], "I1": tensor[1024], ...}
    ...         step(batch)
    ...         if time_to_checkpoint:
    ...             save({"model": ..., "data": loader.state_dict()})

Each batch is a dict of 1-D tensors, one per column, all views of one buffer (so a batch crosses
from a DataLoader worker in one shared-memory segment and to the GPU in one copy). Rows are read a
unit (Parquet row group) at a time, a block of units at a time, and gathered into batches with
NumPy ``take``: there is no per-sample Python on the way. A background thread reads the next block
while the current one is gathered.

Order, split over ranks and workers, equal batch counts and resuming: see ``shards/order.py``.
What that means in use:

* ranks and world size come from ``torch.distributed`` when it is initialised (or ``rank=`` and
  ``world_size=``); workers from the DataLoader;
* every rank yields ``len(dataset)`` batches per epoch (``uneven="pad"`` or ``"drop"``);
* ``set_epoch(n)`` before each epoch (as with DistributedSampler); once an epoch's last batch is
  delivered the position is the next epoch's start, so iterating again (or restoring a state
  saved then) starts epoch n + 1, unless ``set_epoch`` names another;
* ``state_dict()`` / ``load_state_dict()``: save the state on any rank at a step that all ranks
  reached (the states of all ranks are equal), restore it on every rank of the new job, on any
  number of ranks and workers. It is plain JSON-able data. Counting is done in the process that
  consumes the batches: iterate ``ShardLoader`` (or the dataset itself, without workers); a plain
  DataLoader with workers reads the same batches but cannot count them, and persistent workers
  would miss ``set_epoch`` and ``load_state_dict``, so ShardLoader refuses them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shardsmith.errors import InputError, ShardsmithError
from shardsmith.shards import order as od
from shardsmith.shards.readers import ShardSource, load_manifest

STATE_FORMAT = "shardsmith-loader-state"
ALIGN = 8
# NumPy types a tensor cannot take as they are, and what they become.
WIDEN = {"uint16": "int32", "uint32": "int64", "uint64": "int64"}
TENSOR_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "bool")


class ShardDataset(IterableDataset):
    """Batches of a compiled dataset's split, as dicts of tensors; see the module docstring.

    ``manifest``: a path or fsspec URL of manifest.json (or its directory), or a loaded manifest.
    ``columns``: the columns to yield (default: every numeric column). ``format``: which shards to
    read when the split has several ("parquet" first by default). ``shuffle_buffer``: rows per
    shuffle block (rounded to whole units). ``cache_dir``: keep remote shards there.
    ``verify``: check each shard's size and sha256 against the manifest before its first read.
    """

    def __init__(self, manifest, split: str = "train", batch_size: int = 1024, columns=None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, device="cpu", *, format: str | None = None,
                 shuffle_buffer: int = 262_144, uneven: str = "pad", rank: int | None = None,
                 world_size: int | None = None, storage_options: dict | None = None,
                 cache_dir: str | None = None, verify: bool = False, readahead: bool = True):
        super().__init__()
        self.manifest = load_manifest(manifest, storage_options)
        _check_args(batch_size, uneven, seed, shuffle_buffer)
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, bool(shuffle), int(seed)
        self.drop_last, self.uneven, self.readahead = bool(drop_last), uneven, readahead
        self.device = _device(device)
        self._rank, self._world = rank, world_size
        shards, self.format = _split_shards(self.manifest, split, format)
        self.columns = _columns(self.manifest, columns)
        self.source = ShardSource(self.manifest, shards, [c for c, _ in self.columns],
                                  storage_options=storage_options, cache_dir=cache_dir, verify=verify)
        self.source.check_present()
        # Both formats are cut at the Parquet row groups, so they give the same batches and states.
        unit_rows = _unit_rows(self.manifest)
        self.units = od.make_units([s["rows"] for s in shards], [unit_rows] * len(shards))
        typical = max((u.rows for u in self.units), default=1)
        self.block_units = max(1, round(shuffle_buffer / typical))
        self.fingerprint = _fingerprint(self.manifest, split, shards, self.units, self.block_units)
        self.epoch = 0
        self._jobs = None   # the remaining jobs of the epoch (None: the epoch's start)
        self._start = None  # the jobs when the current iteration began, and batches delivered since
        self._steps = 0
        self._begun = False
        self._resolved = None  # (rank, world size) as the consuming process saw them at the last start
        self._chunk = 0  # batches per message from a DataLoader worker (ShardLoader sets it; 0: plain batches)
        self._plans: dict = {}
        self._ring = None

    # --- the epoch and the world -------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``; a different epoch from the current one starts from its beginning."""
        self._roll_over()
        if int(epoch) != self.epoch:
            self.epoch, self._jobs, self._start, self._steps = int(epoch), None, None, 0

    def world(self) -> tuple[int, int]:
        """(rank, world size): given ones, else torch.distributed's, else (0, 1). DataLoader workers
        use what the consuming process found (the process group is not theirs to ask)."""
        if get_worker_info() is not None and self._resolved is not None:
            return self._resolved
        if self._world is not None:
            return int(self._rank or 0), int(self._world)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def plan(self) -> od.EpochPlan:
        key = self.epoch
        if key not in self._plans:
            self._plans = {key: od.EpochPlan(self.units, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
                                             block_units=self.block_units, batch_size=self.batch_size,
                                             drop_last=self.drop_last)}
        return self._plans[key]

    def _current(self):
        return od.advance(self._start, self._steps) if self._start is not None else self._jobs

    def _jobs_for(self, workers: int):
        ranks = self.world()[1]
        current = self._current()
        if current is None:
            return od.split_jobs([(0, self.plan().batches)], ranks, workers, self.uneven)
        return od.reshape(current, ranks, workers, self.uneven)

    def _roll_over(self) -> None:
        """An epoch whose every batch was delivered is over: the position becomes the next one's start."""
        current = self._current()
        if current is not None and not _any_jobs(current):
            self.epoch, self._jobs, self._start, self._steps = self.epoch + 1, None, None, 0

    def _begin(self, workers: int) -> None:
        """Called in the consuming process when an iteration starts: fix the jobs and count from 0."""
        self._roll_over()
        self._resolved = self.world()
        self._jobs = self._start = self._jobs_for(workers)
        self._steps, self._begun = 0, True

    def __len__(self) -> int:
        """Batches each rank yields in the next iteration: the rest of the current epoch, or all of
        the next one when the current one ran to its end."""
        rank, ranks = self.world()
        self._roll_over()
        jobs = self._current()
        if jobs is None or len(jobs) != ranks:
            jobs = self._jobs_for(1)
        return sum(b - a for lst in jobs[rank] for a, b, _ in lst)

    # --- iteration ---------------------------------------------------------------------------------------
    def __iter__(self):
        info = get_worker_info()
        rank = self.world()[0]
        if info is None:
            if not self._begun:
                self._begin(1)
            self._begun = False
            for batch in self._batches(self._start[rank][0]):
                self._steps += 1
                yield self.deliver(batch)
            return
        jobs = self._start
        if jobs is None or len(jobs) != self.world()[1] or len(jobs[rank]) != info.num_workers:
            jobs = self._jobs_for(info.num_workers)
        if self._chunk:
            yield from self._messages(jobs[rank][info.id], self._chunk)
        else:
            yield from self._batches(jobs[rank][info.id])

    def _messages(self, jobs, k: int):
        """Groups of ``k`` batches in one buffer each (see ShardLoader)."""
        plan, spec, ids = self.plan(), BatchSpec(self.columns), od.job_ids(jobs)
        reader = BlockReader(plan, self.source, spec, plan.blocks_in_order(ids), self.readahead)
        try:
            for i in range(0, len(ids), k):
                group = ids[i: i + k].tolist()
                rows = [plan.batch_rows(b)[1] - plan.batch_rows(b)[0] for b in group]
                sizes = [max(spec.nbytes(n), 1) for n in rows]
                buf = torch.empty(sum(sizes), dtype=torch.uint8)
                offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
                for j, b in enumerate(group):
                    piece = buf[offsets[j]: offsets[j + 1]]
                    assemble(plan, reader, b, spec, lambda _n, piece=piece: piece)
                yield {"__shardsmith_batches__": buf, "__rows__": torch.tensor(rows, dtype=torch.int64)}
        finally:
            reader.close()

    def _batches(self, jobs):
        plan = self.plan()
        ids = od.job_ids(jobs)
        spec = BatchSpec(self.columns)
        reader = BlockReader(plan, self.source, spec, plan.blocks_in_order(ids), self.readahead)
        alloc = self._host_buffer if get_worker_info() is None and self.device.type == "cuda" else _plain_buffer
        try:
            for b in ids.tolist():
                yield assemble(plan, reader, b, spec, alloc)
        finally:
            reader.close()

    def _host_buffer(self, nbytes: int) -> torch.Tensor:
        if self._ring is None:
            self._ring = PinnedRing(self.device)
        return self._ring.take(nbytes)

    def deliver(self, batch: dict) -> dict:
        """The batch on the target device (CUDA: from pinned memory, one non-blocking copy)."""
        if self.device.type == "cpu":
            return batch
        if self._ring is None:
            self._ring = PinnedRing(self.device)
        return self._ring.to_device(batch)

    # --- resuming ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the data stands: JSON-able, equal on every rank at the same step. After an epoch's
        last batch it is the next epoch's start."""
        self._roll_over()
        return {"format": STATE_FORMAT, "version": 1, "dataset": self.fingerprint, "epoch": self.epoch,
                "seed": self.seed, "batch_size": self.batch_size, "shuffle": self.shuffle,
                "drop_last": self.drop_last, "block_units": self.block_units,
                "jobs": _jobs_json(self._current())}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`, possibly of a job with another world size)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ShardsmithError("not a ShardDataset state (no 'format': 'shardsmith-loader-state')", "state")
        if state.get("dataset") != self.fingerprint:
            raise ShardsmithError("the state belongs to another dataset, split or shard format", "state.dataset")
        for key in ("seed", "batch_size", "shuffle", "drop_last", "block_units"):
            if state.get(key) != getattr(self, key):
                raise ShardsmithError(f"the state was saved with {key}={state.get(key)!r}, this dataset has "
                                      f"{getattr(self, key)!r}", f"state.{key}")
        self.epoch = int(state["epoch"])
        self._jobs = None if state["jobs"] is None else [[[(int(a), int(b), bool(p)) for a, b, p in lst]
                                                          for lst in rank_jobs] for rank_jobs in state["jobs"]]
        self._start, self._steps, self._begun = None, 0, False


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardDataset` that counts the batches it hands out, so that
    ``state_dict()`` is exact with any number of workers. Batches arrive in a fixed order.

    Workers send ``batches_per_message`` batches in one buffer (each message a shared-memory
    segment: they cost about a millisecond each here, more than assembling a batch), and the
    loader hands them out in the order the DataLoader would have for single batches: one batch
    per worker in turn."""

    def __init__(self, dataset: ShardDataset, num_workers: int = 0, batches_per_message: int = 8, **kwargs):
        if not isinstance(dataset, ShardDataset):
            raise TypeError("ShardLoader takes a ShardDataset")
        if kwargs.get("persistent_workers"):
            raise ShardsmithError("persistent workers would keep a stale epoch and state; leave them off",
                                  "persistent_workers")
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn"):
            if key in kwargs:
                raise ShardsmithError("ShardDataset makes the batches; set it on the dataset, not the loader", key)
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


# --- reading blocks and assembling batches ------------------------------------------------------------
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


def _plain_buffer(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


class BatchSpec:
    """How a batch lies in memory: the columns of each dtype form one (columns, rows) block of the
    batch buffer, unbound into 1-D views. A block of the stream is kept the same way, its rows
    already in shuffled order, so a batch is a few strided copies (one per dtype), not a gather."""

    def __init__(self, columns):
        self.names = [name for name, _ in columns]
        by_dtype: dict = {}
        for name, dt in columns:
            by_dtype.setdefault(dt, []).append(name)
        self.groups = sorted(by_dtype.items(), key=lambda kv: -kv[0].itemsize)
        self.torch_dtypes = {dt: _torch_dtype(dt) for dt, _ in self.groups}

    def block(self, parts: list[dict], perm) -> dict:
        """A block's columns as one (columns, rows) matrix per dtype, rows in shuffled order (NumPy
        fancy indexing: the one random access pass over the block)."""
        out = {}
        for dt, names in self.groups:
            n = sum(len(p[names[0]]) for p in parts)
            mat = np.empty((len(names), n), dtype=dt)
            for i, name in enumerate(names):
                col = parts[0][name] if len(parts) == 1 else np.concatenate([p[name] for p in parts])
                col = col.astype(dt, copy=False)
                mat[i] = col if perm is None else col[perm]
            out[dt] = mat
        return out

    def _sizes(self, n: int):
        off = 0
        for dt, names in self.groups:
            size = n * dt.itemsize * len(names)
            yield dt, names, off, size
            off += -(-size // ALIGN) * ALIGN

    def nbytes(self, n: int) -> int:
        return sum(-(-size // ALIGN) * ALIGN for _, _, _, size in self._sizes(n))

    def fill(self, raw: np.ndarray, n: int, start: int, block: dict, lo: int, hi: int) -> None:
        """Copy block rows [lo, hi) into batch rows [start, start + hi - lo) of the buffer ``raw``."""
        for dt, names, off, size in self._sizes(n):
            dest = raw[off: off + size].view(dt).reshape(len(names), n)
            dest[:, start: start + hi - lo] = block[dt][:, lo:hi]

    def views(self, buf: torch.Tensor, n: int) -> dict:
        """The batch's columns as 1-D tensor views of ``buf``, in the requested column order."""
        out = {}
        for dt, names, off, size in self._sizes(n):
            t = buf[off: off + size].view(self.torch_dtypes[dt]).view(len(names), n)
            out.update(zip(names, t.unbind(0)))
        return {name: out[name] for name in self.names}


def assemble(plan: od.EpochPlan, reader: BlockReader, b: int, spec: BatchSpec, alloc) -> dict:
    """Batch ``b``: its rows gathered from their block(s) into one buffer, as a dict of tensor views."""
    start, stop = plan.batch_rows(b)
    n = stop - start
    buf = alloc(max(spec.nbytes(n), 1))
    raw = buf.numpy()
    pos = start
    while pos < stop:
        j = plan.block_of(pos)
        first, end = int(plan.block_starts[j]), int(plan.block_starts[j + 1])
        take = min(stop, end) - pos
        spec.fill(raw, n, pos - start, reader.get(j), pos - first, pos - first + take)
        pos += take
    return spec.views(buf, n)


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dt)).dtype


# --- CUDA: pinned host buffers, one non-blocking copy per batch ----------------------------------------
class PinnedRing:
    """A few reusable pinned host buffers; a buffer is reused only after its copy to the device ended."""

    def __init__(self, device: torch.device, slots: int = 4):
        self.device = device
        self.slots: list = [None] * slots
        self.events: list = [None] * slots
        self.i = 0
        self.last = None

    def _slot_of(self, host: torch.Tensor) -> int | None:
        ptr = host.untyped_storage().data_ptr()
        return next((i for i, t in enumerate(self.slots) if t is not None and t.untyped_storage().data_ptr() == ptr),
                    None)

    def take(self, nbytes: int) -> torch.Tensor:
        i = self.i
        self.i = (i + 1) % len(self.slots)
        if self.events[i] is not None:
            self.events[i].synchronize()
            self.events[i] = None
        if self.slots[i] is None or self.slots[i].numel() < nbytes:
            self.slots[i] = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        self.last = i
        return self.slots[i][:nbytes]

    def to_device(self, batch: dict) -> dict:
        host, views = _shared_buffer(batch)
        slot = self._slot_of(host)
        if slot is None and not host.is_pinned():
            pinned = self.take(host.numel())
            pinned.copy_(host)
            host, slot = pinned, self.last
        dev = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        if slot is not None:  # the slot is reused only once this copy has finished
            self.events[slot] = event
        return {name: dev[off: off + size].view(dtype) for name, (off, size, dtype) in views.items()}


def _shared_buffer(batch: dict):
    """The one uint8 buffer under a batch's tensors, and each tensor's (byte offset, bytes, dtype)."""
    first = next(iter(batch.values()))
    storage = first.untyped_storage()
    if any(t.untyped_storage().data_ptr() != storage.data_ptr() for t in batch.values()):
        parts = {k: t.contiguous().view(torch.uint8) for k, t in batch.items()}
        host = torch.cat(list(parts.values())) if parts else torch.empty(0, dtype=torch.uint8)
        offs = np.cumsum([0] + [p.numel() for p in parts.values()])
        return host, {k: (int(offs[i]), p.numel(), batch[k].dtype) for i, (k, p) in enumerate(parts.items())}
    host = torch.empty(0, dtype=torch.uint8).set_(storage)
    spans = {k: (t.storage_offset() * t.element_size(), t.numel() * t.element_size(), t.dtype)
             for k, t in batch.items()}
    lo = min(off for off, _, _ in spans.values())
    hi = max(off + size for off, size, _ in spans.values())
    return host[lo:hi], {k: (off - lo, size, dt) for k, (off, size, dt) in spans.items()}


# --- checking the arguments -----------------------------------------------------------------------------------
def _check_args(batch_size, uneven, seed, shuffle_buffer) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ShardsmithError(f"expected a positive integer, got {batch_size!r}", "batch_size")
    if uneven not in ("pad", "drop"):
        raise ShardsmithError(f"expected 'pad' or 'drop', got {uneven!r}", "uneven")
    if not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ShardsmithError(f"expected an integer in [0, 2**64), got {seed!r}", "seed")
    if not isinstance(shuffle_buffer, int) or shuffle_buffer <= 0:
        raise ShardsmithError(f"expected a positive row count, got {shuffle_buffer!r}", "shuffle_buffer")


def _device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ShardsmithError(f"'{device}' was asked for, but torch sees no CUDA device", "device")
    if dev.type not in ("cpu", "cuda"):
        raise ShardsmithError(f"expected 'cpu' or 'cuda', got {device!r}", "device")
    return dev


def _split_shards(manifest: dict, split: str, fmt: str | None):
    splits = manifest["splits"]
    if split not in splits:
        from shardsmith.errors import did_you_mean

        hint = did_you_mean(split, splits)
        raise InputError(f"no split '{split}' in the manifest (it has {', '.join(splits)}){hint}", "split")
    shards = splits[split]["shards"]
    have = sorted({s["format"] for s in shards})
    if fmt is None:
        fmt = "parquet" if "parquet" in have or not have else have[0]
    if fmt not in ("parquet", "webdataset"):
        raise ShardsmithError(f"expected 'parquet' or 'webdataset', got {fmt!r}", "format")
    chosen = [s for s in shards if s["format"] == fmt]
    if shards and not chosen:
        raise InputError(f"split '{split}' has no {fmt} shards (it has {', '.join(have)})", "format")
    return chosen, fmt


def _columns(manifest: dict, columns) -> list[tuple[str, np.dtype]]:
    schema = {c["name"]: c for c in manifest["schema"]}
    if columns is None:
        columns = [c["name"] for c in manifest["schema"] if c["dtype"] in TENSOR_DTYPES]
    out = []
    for name in columns:
        if name not in schema:
            from shardsmith.errors import did_you_mean

            raise ShardsmithError(f"no column '{name}' in the dataset{did_you_mean(name, schema)}", "columns")
        dtype = schema[name]["dtype"]
        if dtype not in TENSOR_DTYPES:
            raise ShardsmithError(f"column '{name}' is {dtype}, which has no tensor type", "columns")
        out.append((name, np.dtype(WIDEN.get(dtype, dtype))))
    if not out:
        raise ShardsmithError("no columns to yield (the dataset has no numeric column, or none was named)", "columns")
    return out


def _unit_rows(manifest: dict) -> int:
    """The Parquet row-group size the compiler wrote (units follow row groups)."""
    try:
        return int(manifest["config"]["resolved"]["output"]["row_group_rows"])
    except (KeyError, TypeError, ValueError):
        return 65536


def _fingerprint(manifest: dict, split, shards, units, block_units) -> str:
    """What a state is tied to: the rows and their order, not the files. The rows are named by the
    inputs' content and the settings that make rows (not the output format or layout, nor the
    engine), so a state moves between a compile's Parquet and WebDataset shards, and between
    compiles of one pipeline into other WebDataset layouts. A manifest without them: the shards' sha256."""
    made = _rows_identity(manifest) or [s["sha256"] for s in shards]
    doc = {"split": split, "shards": [s["rows"] for s in shards], "units": [(u.shard, u.start, u.stop) for u in units],
           "block_units": block_units, "rows": made}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _rows_identity(manifest: dict):
    resolved = (manifest.get("config") or {}).get("resolved")
    inputs = manifest.get("inputs")
    if not isinstance(resolved, dict) or not isinstance(inputs, list):
        return None
    source = {k: v for k, v in (resolved.get("source") or {}).items() if k != "paths"}
    made_by = {k: resolved.get(k) for k in ("graph", "roles", "split", "stats", "plugins")}
    return {"source": source, **made_by, "inputs": [i.get("fingerprint") for i in inputs]}


def _any_jobs(jobs) -> bool:
    return any(lst for rank_jobs in jobs for lst in rank_jobs)


def _jobs_json(jobs):
    return None if jobs is None else [[[[a, b, p] for a, b, p in lst] for lst in rank_jobs] for rank_jobs in jobs]


__all__ = ["ShardDataset", "ShardLoader"]
