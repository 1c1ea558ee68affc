"""``ShardDataset``: an IterableDataset of batches over a compiled dataset's split, and its state:
the epoch, the world (ranks and workers), the jobs still to deliver, and how to resume them.
Order, split over ranks and workers, and equal batch counts: see ``shards/order.py``."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from shardsmith.errors import InputError, ShardsmithError, did_you_mean
from shardsmith.shards import order as od
from shardsmith.shards.loader import gather, gpudecode
from shardsmith.shards.loader.blocks import BlockReader
from shardsmith.shards.loader.device import PinnedRing, make_lane
from shardsmith.shards.loader.layout import TENSOR_DTYPES, WIDEN, BatchSpec, assemble, plain_buffer
from shardsmith.shards.readers import ShardSource, load_manifest

STATE_FORMAT = "shardsmith-loader-state"
ASSEMBLE = ("host", "device", "cudf")
READAHEAD_THREADS = 2  # the device path in one process: blocks decoded and packed ahead, two at a time


class ShardDataset(IterableDataset):
    """Batches of a compiled dataset's split, as dicts of tensors; see the module docstring.

    ``manifest``: a path or fsspec URL of manifest.json (or its directory), or a loaded manifest.
    ``columns``: the columns to yield (default: every numeric column). ``format``: which shards to
    read when the split has several ("parquet" first by default). ``shuffle_buffer``: rows per
    shuffle block (rounded to whole units). ``cache_dir``: keep remote shards there.
    ``verify``: check each shard's size and sha256 against the manifest before its first read.
    ``assemble``: where batches are put together: ``"host"`` (decoded, shuffled and cut in host
    memory, each batch copied to ``device``) or ``"device"`` (whole blocks copied to ``device``
    once, shuffled and cut there), or ``"cudf"`` (as ``"device"``, the Parquet shards decoded on
    the GPU by cuDF); the default is ``"device"`` for a CUDA device, else ``"host"``. All give the
    same batches.
    """

    def __init__(self, manifest, split: str = "train", batch_size: int = 1024, columns=None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, device="cpu", *, format: str | None = None,
                 shuffle_buffer: int = 262_144, uneven: str = "pad", rank: int | None = None,
                 world_size: int | None = None, storage_options: dict | None = None,
                 cache_dir: str | None = None, verify: bool = False, readahead: bool = True,
                 assemble: str | None = None):
        super().__init__()
        self.manifest = load_manifest(manifest, storage_options)
        _check_args(batch_size, uneven, seed, shuffle_buffer)
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, bool(shuffle), int(seed)
        self.drop_last, self.uneven, self.readahead = bool(drop_last), uneven, readahead
        self.device = _device(device)
        self._rank, self._world = rank, world_size
        shards, self.format = _split_shards(self.manifest, split, format)
        self.assemble = _assemble(assemble, self.device, self.format)
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
        self._send_blocks = False  # DataLoader workers send blocks for the device path (ShardLoader sets it)
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
        if self._send_blocks:
            yield from gather.worker_messages(self.plan(), BatchSpec(self.columns), self.source,
                                              od.job_ids(jobs[rank][info.id]), info.id, self.readahead)
        elif self._chunk:
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
        if self.assemble == "device" and get_worker_info() is None:
            yield from gather.local_batches(plan, spec, self.source, self.lane(), ids,
                                            READAHEAD_THREADS if self.readahead else 0)
            return
        if self.assemble == "cudf" and get_worker_info() is None:
            yield from gpudecode.cudf_batches(plan, spec, self.source, self.lane(), ids, self.readahead)
            return
        reader = BlockReader(plan, self.source, spec, plan.blocks_in_order(ids), self.readahead)
        alloc = self._host_buffer if get_worker_info() is None and self.device.type == "cuda" else plain_buffer
        try:
            for b in ids.tolist():
                yield assemble(plan, reader, b, spec, alloc)
        finally:
            reader.close()

    def lane(self):
        """Where the device path's copies and shuffles run (``device.make_lane``)."""
        return make_lane(self.device)

    def _host_buffer(self, nbytes: int) -> torch.Tensor:
        if self._ring is None:
            self._ring = PinnedRing(self.device)
        return self._ring.take(nbytes)

    def deliver(self, batch: dict) -> dict:
        """The batch on the target device (CUDA: from pinned memory, one non-blocking copy)."""
        if self.device.type == "cpu" or self.assemble != "host":
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


def _assemble(assemble, device: torch.device, fmt: str) -> str:
    if assemble is None:
        return "device" if device.type == "cuda" else "host"
    if assemble not in ASSEMBLE:
        raise ShardsmithError(f"expected one of {', '.join(map(repr, ASSEMBLE))}, got {assemble!r}", "assemble")
    if assemble == "cudf":
        if fmt != "parquet":
            raise ShardsmithError(f"'cudf' decodes Parquet shards, not {fmt}; use 'device'", "assemble")
        gpudecode.cudf_module()
    return assemble


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
