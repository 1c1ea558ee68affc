"""The staging directory of a compile: where it writes, its resume journal, and the commit.

A compile writes into ``<dir>.partial-<key>`` beside the final directory; the journal
(``journal.jsonl``) records finished partitions and shards, so a rerun after a crash resumes; the
commit writes the manifest last and swaps the staging directory into place.

Before anything is written the output location is checked (runtime/target.py: never the current
directory, an input's directory or a directory of someone else's files) and locked
(runtime/lock.py: one compile at a time). A resumed run re-hashes the shards its journal lists and
writes again any that do not match; files that a killed run left half-written (``*.tmp-*``) are
removed, and the commit takes nothing into the dataset that its manifest does not list.

On an object store (``output.dir`` a URL) the same steps hold, with two differences (see
:class:`RemoteOutput`): the journal and fitted state stay on the driver's disk, and the commit copies
the shards from the staging prefix, since an object store cannot rename a prefix.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import uuid

from shardsmith import storage
from shardsmith.errors import ConfigError, OutputError
from shardsmith.runtime import target
from shardsmith.runtime.lock import output_lock
from shardsmith.shards import manifest as mf

JOURNAL = "journal.jsonl"
KEEP = (JOURNAL, "state/", "profile.json")  # what a staging directory holds besides shards


class Output:
    """The staging directory of a compile, its journal, and the final atomic swap."""

    storage_options: dict | None = None  # of a remote output (RemoteOutput)

    def __init__(self, final: str, key: str, overwrite: bool, inputs=(), log=print):
        self.final = os.path.normpath(storage.local(final))
        self.key = key
        self.overwrite = overwrite
        self.inputs = tuple(inputs)
        self.log = log
        self.staging = f"{self.final}.partial-{key[:12]}"
        self.local = self.staging  # where the driver's own files go (journal, state, profile)
        self.created = False
        self.done_shards: dict[tuple[str, int], dict] = {}
        self.metas: dict[int, dict] = {}
        self._journal = None
        self._made: str | None = None  # the topmost parent directory this run created

    # --- before writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Check the location, make its parent, and hold the output's lock while the body runs."""
        target.check_location(self.final, self.inputs)
        self._make_parent()
        lock = output_lock(self.final, log=self.log)
        with os_errors(self.final):
            lock.acquire()
        try:
            yield self
        finally:
            lock.release()
            self._remove_made_parent()

    def _make_parent(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.final))
        top = parent
        while not os.path.exists(os.path.dirname(top)):
            top = os.path.dirname(top)
        with os_errors(parent):
            if not os.path.exists(parent):
                os.makedirs(parent)
                self._made = top

    def _remove_made_parent(self) -> None:
        """Parents this run created and left empty (a run that failed) go again; no others."""
        d = os.path.dirname(os.path.abspath(self.final))
        while self._made is not None:
            try:
                os.rmdir(d)
            except OSError:
                return
            if d == self._made:
                return
            d = os.path.dirname(d)

    def fs(self):
        return storage.LocalFiles()

    def root(self) -> str:
        return os.path.abspath(self.final)

    def existing_manifest(self) -> dict | None:
        """The finished dataset when it is up to date (same key, no overwrite); None when the
        compile may go ahead; refuses what it may not replace."""
        old = target.existing_dataset(self.fs(), self.root(), self.final)
        if old is None:
            return None
        if old.get("dataset_key") == self.key and not self.overwrite:
            return {**old, "_dir": self.dataset_dir()}
        if not self.overwrite:
            raise ConfigError(f"'{self.final}' holds a dataset built from another config or input; "
                              "set output.overwrite=true to replace it, or choose another output.dir", "output.dir")
        target.check_replaceable(self.fs(), self.root(), self.final, old)
        return None

    # --- staging and the journal -------------------------------------------------------------------
    def open(self) -> None:
        resumed = os.path.isdir(self.local)
        with os_errors(self.local):
            if resumed:
                self._remove_tmp()
            else:
                os.makedirs(self.local)
                self.created = True
        if resumed:
            self._load_journal()
        with os_errors(self.local):
            self._journal = open(os.path.join(self.local, JOURNAL), "a")

    def _remove_tmp(self) -> None:
        """A killed run's half-written files (``part-*.tmp-*``, ``*.json.tmp``): ours, and useless."""
        for rel in target.list_files(self.fs(), os.path.abspath(self.staging)):
            if target.is_tmp(rel):
                os.remove(os.path.join(self.staging, rel))

    def _load_journal(self) -> None:
        path = os.path.join(self.local, JOURNAL)
        if not os.path.exists(path):
            return
        shards = {}
        with open(path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    break  # a line cut short by a crash: everything after it is redone
                if event["event"] == "partition":
                    self.metas[event["meta"]["partition"]] = event["meta"]
                elif event["event"] == "shard":
                    shards[(event["stream"], event["index"])] = event["info"]
        self.done_shards = self._intact(shards)

    def _intact(self, shards: dict) -> dict:
        """The journaled shards whose files still have the size and sha256 the journal recorded;
        the others are written again (several hashed at once: hashlib releases the GIL)."""
        files = [(k, v) for k, info in shards.items() for v in info["files"].values()]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            problems = list(pool.map(lambda kv: self._problem(kv[1]), files))
        bad = {k for (k, _), problem in zip(files, problems) if problem}
        for (_, v), problem in zip(files, problems):
            if problem:
                self.log(f"resuming: {self.path(v['path'])} {problem}; it is written again")
        return {k: info for k, info in shards.items() if k not in bad}

    def _problem(self, entry: dict) -> str | None:
        """Why a journaled file cannot be reused (None: it can)."""
        try:
            with storage.open_read(self.path(entry["path"]), self.storage_options) as f:
                size, digest = storage.file_sha256(f)
        except (OSError, ValueError) as exc:
            return f"cannot be read ({exc})"
        if size != entry["bytes"]:
            return f"has {size} bytes, the journal says {entry['bytes']}"
        if digest != entry["sha256"]:
            return "does not match the sha256 in the journal"
        return None

    def record(self, event: dict) -> None:
        with os_errors(self.local):
            self._journal.write(json.dumps(event, default=str) + "\n")
            self._journal.flush()

    def dataset_dir(self) -> str:
        """Where the finished dataset is (a manifest's ``_dir``)."""
        return os.path.abspath(self.final)

    def manifest_path(self) -> str:
        return os.path.join(self.final, mf.MANIFEST)

    def path(self, *parts) -> str:
        """Where shards go (workers write there)."""
        return os.path.join(self.staging, *parts)

    def local_path(self, *parts) -> str:
        """Where the driver keeps its own files (fitted state, profile)."""
        return os.path.join(self.local, *parts)

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.staging).replace(os.sep, "/")

    # --- the end -----------------------------------------------------------------------------------
    def commit(self, manifest: dict) -> None:
        self._close_journal(remove=True)
        with os_errors(self.staging):
            self._remove_unlisted(manifest)
            mf.write_manifest(self.staging, manifest)
        self._check_still_replaceable()
        trash = None
        with os_errors(self.final):
            if os.path.exists(self.final):
                trash = f"{self.final}.old-{uuid.uuid4().hex[:8]}"
                os.replace(self.final, trash)
            os.replace(self.staging, self.final)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def _remove_unlisted(self, manifest: dict) -> None:
        """Nothing goes into the dataset that its manifest does not list: stray temporary files,
        shards of a killed run beyond the last one kept (all ours: the staging directory is)."""
        listed = {s["path"] for _, s in mf.iter_shards(manifest)}
        for rel in target.list_files(self.fs(), os.path.abspath(self.staging)):
            if rel not in listed and not rel.startswith(KEEP):
                os.remove(os.path.join(self.staging, rel))

    def _check_still_replaceable(self) -> None:
        """Files may have appeared in the final directory while we ran: check again before the swap."""
        old = target.existing_dataset(self.fs(), self.root(), self.final)
        if old is not None:
            target.check_replaceable(self.fs(), self.root(), self.final, old)

    def _close_journal(self, remove: bool = False) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.local, JOURNAL))

    def abandon(self) -> None:
        """An error (not a crash): remove what this run created; a resumed run keeps its staging."""
        self._close_journal()
        if self.created:
            shutil.rmtree(self.staging, ignore_errors=True)


@contextlib.contextmanager
def os_errors(where: str):
    """An OSError (read-only, full, not a directory) as one line naming the file."""
    try:
        yield
    except OSError as exc:
        raise output_error(exc, where) from None


def output_error(exc: OSError, where: str) -> OutputError:
    name = exc.filename if isinstance(exc.filename, str) else where
    return OutputError(f"cannot write: {exc.strerror or exc}", name)
