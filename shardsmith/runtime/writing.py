"""The transform pass and the shard writer: partitions run through the graph in a bounded window,
each split's rows are numbered in input order and cut every ``shard_rows`` into shards, and every
shard is written (on a worker) as soon as its rows exist.

Shard boundaries depend only on the data, so the shards are the same whatever the partition size or
worker count: the same content (digests) on any engine and writer, the same bytes for one engine
and writer. A resumed run skips the partitions whose rows only feed shards it already
wrote (the journal knows them).
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field

from shardsmith.profiling.spans import PROFILE_KEY
from shardsmith.runtime import tasks
from shardsmith.runtime.context import RunContext
from shardsmith.runtime.quality import QUALITY_DIR, buckets_for

QUARANTINE = "quarantine"


@dataclass
class Stream:
    """One split (or the quarantine) being cut into shards in input order."""

    name: str
    pieces: list = field(default_factory=list)
    pending_rows: int = 0
    planned_rows: int = 0
    next_index: int = 0
    infos: list = field(default_factory=list)


class ShardWriter:
    def __init__(self, run: RunContext):
        self.run = run
        self.plan = run.plan
        # Partitions in flight: two per worker, or one more than an in-process executor's threads.
        self.window = max(2, 2 * getattr(run.ex, "n_workers", 1), getattr(run.ex, "threads", 1) + 1)
        self.shard_futures: list = []
        # Where checks that need exact distinct values write them (runtime/quality.py).
        self.spill = {"dir": run.out.local_path(QUALITY_DIR), "buckets": buckets_for(self.plan)}

    def run_all(self, states: dict) -> dict[str, Stream]:
        """Transform every partition and write every shard; the streams with their shard infos."""
        run, t0 = self.run, time.perf_counter()
        streams = {name: Stream(name) for name in (*self.plan.graph.split.names, QUARANTINE)}
        states_h = run.ex.scatter(states)
        queue: collections.deque = collections.deque()
        parts = list(self.plan.partitions)
        self.skip = self._resumable(streams)
        self.progress = run.prof.progress("transform", parts)
        nxt = 0
        while nxt < len(parts) or queue:
            while nxt < len(parts) and len(queue) < self.window:
                queue.append(self._start(parts[nxt], states_h))
                nxt += 1
            part, fut, meta = queue.popleft()
            if meta is None:
                meta = run.ex.submit(tasks.result_meta, fut).result()  # only the meta reaches the driver
                run.prof.add(meta.pop("profile", None))
                run.out.metas[part.index] = meta
                run.record({"event": "partition", "meta": meta})
            self._assign(fut, meta, streams)
            self._drain(block=False)
        for s in streams.values():
            self._flush(s, final=True)
        self._drain(block=True)
        self.progress.close()
        run.timings["transform_write"] = time.perf_counter() - t0
        return streams

    def _start(self, part, states_h):
        """Submit a partition unless a resumed run knows its rows only feed written shards."""
        run = self.run
        kept = run.kept.pop(part.index, None)  # the transform is a kept read's last use
        if part.index in self.skip:
            self.progress.advance(part)
            return part, None, run.out.metas[part.index]
        fut = run.ex.submit(tasks.transform_task, run.backend, run.plan_h, part, states_h, run.prof.task_opts,
                            self.spill, kept)
        return part, self.progress.watch(fut, part), None

    def _resumable(self, streams) -> set[int]:
        """Partitions whose row counts the journal knows (in an unbroken prefix, so their offsets
        are known too) and whose rows fall only into shards already written."""
        out = self.run.out
        skip, offsets = set(), {name: 0 for name in streams}
        for part in self.plan.partitions:
            meta = out.metas.get(part.index)
            if meta is None:
                break
            done = True
            for name in streams:
                n = stream_rows(meta, name)
                if n:
                    first, last = offsets[name] // self.plan.shard_rows, (offsets[name] + n - 1) // self.plan.shard_rows
                    done &= all((name, i) in out.done_shards for i in range(first, last + 1))
                offsets[name] += n
            if done:
                skip.add(part.index)
        return skip

    def _assign(self, fut, meta, streams) -> None:
        for name, s in streams.items():
            n = stream_rows(meta, name)
            # Each stream keeps only its own rows alive: a small split of the 5% test split must
            # not pin whole partitions in memory until its shard fills.
            src = self.run.ex.submit(tasks.pick_stream, fut, name) if n and fut is not None else None
            offset = 0
            s.planned_rows += n
            while offset < n:
                take = min(self.plan.shard_rows - s.pending_rows, n - offset)
                s.pieces.append((src, offset, offset + take))
                s.pending_rows += take
                offset += take
                if s.pending_rows == self.plan.shard_rows:
                    self._flush(s)

    def _flush(self, s: Stream, final: bool = False) -> None:
        if s.pending_rows == 0 or (final is False and s.pending_rows < self.plan.shard_rows):
            return
        run, index = self.run, s.next_index
        s.next_index += 1
        stem = os.path.join(s.name, f"part-{index:05d}")
        done = run.out.done_shards.get((s.name, index))
        if done is not None:
            s.infos.append((index, done))
        else:
            fut = run.ex.submit(tasks.write_shard_task, run.backend, list(s.pieces), s.name, run.out.path(stem),
                                self.plan.graph.sink, self.plan.output_schema, run.prof.task_opts, self.plan.writer)
            self.shard_futures.append((s, index, fut))
        s.pieces, s.pending_rows = [], 0

    def _drain(self, block: bool) -> None:
        run, pending = self.run, []
        for s, index, fut in self.shard_futures:
            if block or fut.done():
                res = dict(fut.result())
                run.prof.add(res.pop(PROFILE_KEY, None))
                files = {fmt: {**v, "path": run.out.relative(v["path"])}
                         for fmt, v in res["files"].items()}
                info = {"files": files, "summary": res["summary"], "content": res["content"]}
                s.infos.append((index, info))
                run.out.done_shards[(s.name, index)] = info
                run.record({"event": "shard", "stream": s.name, "index": index, "info": info})
            else:
                pending.append((s, index, fut))
        self.shard_futures = pending


def stream_rows(meta: dict, name: str) -> int:
    return meta["quarantined"] if name == QUARANTINE else meta["split_rows"][name]
