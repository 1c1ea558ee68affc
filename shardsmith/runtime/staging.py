"""The staging directory of a compile: where it writes, its resume journal, and the commit.

A compile writes into ``<dir>.partial-<key>`` beside the final directory; the journal
(``journal.jsonl``) records finished partitions and shards, so a rerun after a crash resumes; the
commit writes the manifest last and swaps the staging directory into place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

from shardsmith.errors import ConfigError
from shardsmith.shards import manifest as mf

JOURNAL = "journal.jsonl"


class Output:
    """The staging directory of a compile, its journal, and the final atomic swap."""

    def __init__(self, final: str, key: str, overwrite: bool):
        self.final = os.path.normpath(final)
        self.key = key
        self.overwrite = overwrite
        self.staging = f"{self.final}.partial-{key[:12]}"
        self.created = False
        self.done_shards: dict[tuple[str, int], dict] = {}
        self.metas: dict[int, dict] = {}

    def existing_manifest(self) -> dict | None:
        path = os.path.join(self.final, mf.MANIFEST)
        if not os.path.exists(path):
            if os.path.exists(self.final) and os.listdir(self.final) and not self.overwrite:
                raise ConfigError(f"'{self.final}' exists and is not a shardsmith dataset; choose another "
                                  "directory or set output.overwrite=true", "output.dir")
            return None
        old = mf.read_manifest(path)
        if old.get("dataset_key") == self.key and not self.overwrite:
            return old
        if not self.overwrite:
            raise ConfigError(f"'{self.final}' holds a dataset built from another config or input; "
                              "set output.overwrite=true to replace it, or choose another output.dir", "output.dir")
        return None

    def open(self) -> None:
        if os.path.isdir(self.staging):
            self._load_journal()
        else:
            os.makedirs(self.staging)
            self.created = True
        self._journal = open(os.path.join(self.staging, JOURNAL), "a")

    def _load_journal(self) -> None:
        path = os.path.join(self.staging, JOURNAL)
        if not os.path.exists(path):
            return
        with open(path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    break  # a line cut short by a crash: everything after it is redone
                if event["event"] == "partition":
                    self.metas[event["meta"]["partition"]] = event["meta"]
                elif event["event"] == "shard":
                    info = event["info"]
                    if all(os.path.exists(os.path.join(self.staging, v["path"])) for v in info["files"].values()):
                        self.done_shards[(event["stream"], event["index"])] = info

    def record(self, event: dict) -> None:
        self._journal.write(json.dumps(event, default=str) + "\n")
        self._journal.flush()

    def path(self, *parts) -> str:
        return os.path.join(self.staging, *parts)

    def commit(self, manifest: dict) -> None:
        self._journal.close()
        os.remove(os.path.join(self.staging, JOURNAL))
        mf.write_manifest(self.staging, manifest)
        trash = None
        if os.path.exists(self.final):
            trash = f"{self.final}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, trash)
        os.replace(self.staging, self.final)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def abandon(self) -> None:
        """An error (not a crash): remove what this run created; a resumed run keeps its staging."""
        if getattr(self, "_journal", None):
            self._journal.close()
        if self.created:
            shutil.rmtree(self.staging, ignore_errors=True)
