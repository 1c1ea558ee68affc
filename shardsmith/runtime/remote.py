"""A compile into an object store (``output.dir=s3://bucket/prefix``, ``gs://...``).

An object store has no directories and no rename: a "directory" is a key prefix, and moving a
prefix is a copy of every object. So the commit keeps the *meaning* of the local one, not its
mechanics:

- workers write the shards under the staging prefix ``<dir>.partial-<key>/``; an object appears
  whole or not at all, so no temporary names are needed;
- the journal and the fitted state stay on the driver's disk (``$SHARDSMITH_CACHE``, else
  ``~/.cache/shardsmith``), under a name made of the output URL and the dataset key: a rerun on
  the same machine resumes (shards are re-hashed against the journal first), a rerun elsewhere
  starts again;
- the commit copies the listed shards (server-side copies) and uploads the state and profile
  under ``<dir>/``, then writes ``manifest.json`` last: the commit point. Readers that go by the
  manifest never see a partial dataset: until the manifest is written they see the previous one
  or none. Replacing a dataset (``output.overwrite``) copies shards over same-named old ones while
  the old manifest is still in place, so a reader that had opened the old manifest may meet a new
  shard: the loader then fails on the shard's footer checksum, naming it, and never returns mixed
  data silently. Objects of the old dataset that the new one does not list, and the staging
  prefix, are deleted after the manifest is written.

One compile at a time per prefix: a lock object with a lease (runtime/lock.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil

from shardsmith import storage
from shardsmith.runtime import target
from shardsmith.runtime.lock import output_lock
from shardsmith.runtime.staging import JOURNAL, Output, os_errors
from shardsmith.shards import manifest as mf

UPLOADED = ("state/", "profile.json")  # the driver's files that belong to the dataset

def output_for(graph, key: str, log=print) -> Output:
    """The staging output of a compile of ``graph``: local, or on an object store."""
    sink = graph.sink
    inputs = [f.path for f in graph.source.files]
    if storage.is_url(sink.dir):
        return RemoteOutput(sink.dir, key, sink.overwrite, inputs, log, getattr(sink, "storage_options", None))
    return Output(sink.dir, key, sink.overwrite, inputs, log)


def cache_root() -> str:
    return storage.local_cache("staging")


class RemoteOutput(Output):
    """Output under an object-store prefix; see the module docstring."""

    def __init__(self, final: str, key: str, overwrite: bool, inputs=(), log=print, storage_options=None):
        super().__init__(final, key, overwrite, inputs, log)
        self.final = final.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._fs, self._root = storage.filesystem(self.final, self.storage_options)
        self.staging = f"{self.final}.partial-{key[:12]}"
        self._staging_root = f"{self._root}.partial-{key[:12]}"
        name = hashlib.sha256(self.final.encode()).hexdigest()[:16]
        self.local = os.path.join(cache_root(), f"{name}-{key[:12]}")

    @contextlib.contextmanager
    def locked(self):
        target.check_location(self.final, self.inputs)
        lock = output_lock(self.final, self.storage_options, self.log)
        lock.acquire()
        try:
            yield self
        finally:
            lock.release()

    def fs(self):
        self._fs.invalidate_cache()  # workers wrote through their own instances
        return self._fs

    def root(self) -> str:
        return self._root

    def dataset_dir(self) -> str:
        return self.final

    def manifest_path(self) -> str:
        return storage.join(self.final, mf.MANIFEST)

    def open(self) -> None:
        resumed = os.path.isdir(self.local)
        if not resumed:
            with os_errors(self.local):
                os.makedirs(self.local)
            self.created = True
        else:
            self._load_journal()
        with os_errors(self.local):
            self._journal = open(os.path.join(self.local, JOURNAL), "a")

    def path(self, *parts) -> str:
        return storage.join(self.staging, *parts)

    def relative(self, path: str) -> str:
        return path[len(self.staging) + 1:]

    def commit(self, manifest: dict) -> None:
        self._close_journal(remove=True)
        self._check_still_replaceable()
        fs, root = self.fs(), self._root
        listed = sorted({s["path"] for _, s in mf.iter_shards(manifest)})
        if listed:
            fs.copy([f"{self._staging_root}/{p}" for p in listed], [f"{root}/{p}" for p in listed])
        uploaded = self._upload_local(fs, root)
        fs.pipe_file(f"{root}/{mf.MANIFEST}", mf.dumps(manifest))  # the commit point
        keep = set(listed) | set(uploaded) | {mf.MANIFEST}
        stale = [f"{root}/{p}" for p in target.list_files(fs, root) if p not in keep]
        if stale:
            fs.rm(stale)
        self._remove_staging(fs)
        shutil.rmtree(self.local, ignore_errors=True)

    def _upload_local(self, fs, root: str) -> list[str]:
        """The driver's files that belong to the dataset (fitted state, profile), uploaded."""
        names = []
        for rel in target.list_files(storage.LocalFiles(), os.path.abspath(self.local)):
            if rel.startswith(UPLOADED) and not target.is_tmp(rel):
                fs.put_file(os.path.join(self.local, rel), f"{root}/{rel}")
                names.append(rel)
        return names

    def _remove_staging(self, fs) -> None:
        with contextlib.suppress(FileNotFoundError):
            if fs.exists(self._staging_root):
                fs.rm(self._staging_root, recursive=True)

    def abandon(self) -> None:
        self._close_journal()
        if self.created:
            self._remove_staging(self.fs())
            shutil.rmtree(self.local, ignore_errors=True)
