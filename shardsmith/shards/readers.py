"""Reading a split's shards for the loader: local paths or fsspec URLs, an optional local cache for
remote shards, and units of rows decoded straight into NumPy columns.

Corruption is detected by default, at a cost measured in bench/loader/checksums.py: a Parquet
shard's size and footer hash are checked when it is opened and every page's CRC-32 as it is read
(the writer stores both); a WebDataset tar shard against its sha256, once, when it is first opened.
``verify=True`` adds the full sha256 of every Parquet shard before its first read. Errors name the
shard (its path or URL): a missing shard, a corrupt one, a checksum mismatch, a shard whose row
count disagrees with the manifest.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import json
import os
import posixpath
import uuid

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith import storage
from shardsmith.errors import InputError
from shardsmith.shards import manifest as mf
from shardsmith.shards.order import Unit
from shardsmith.shards.webdataset import TarShard

is_url = storage.is_url
# The default checks (size, footer hash, page CRCs, a tar's sha256). Off only to measure their cost
# (bench/loader/checksums.py): nothing a user sets.
CHECKSUMS = True


def load_manifest(source, storage_options: dict | None = None) -> dict:
    """A manifest from a local path or fsspec URL (a file, or a directory holding manifest.json),
    or an already loaded manifest dict. The result's ``_dir`` is where shard paths are relative to."""
    if isinstance(source, dict):
        if "_dir" not in source:
            raise InputError("a manifest dict must come from read_manifest (it has no '_dir')", "manifest")
        return source
    source = str(source)
    if not is_url(source):
        return mf.read_manifest(source.removeprefix("file://"))
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if not path.endswith(".json"):
        path = posixpath.join(path, mf.MANIFEST)
    url = storage.unstrip(fs, path)
    try:
        with fs.open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        raise InputError("no such manifest", url) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable manifest: {exc}", url) from None
    mf.check_manifest(doc, url)
    doc["_dir"] = storage.unstrip(fs, posixpath.dirname(path))
    return doc


class ShardSource:
    """The shards of one split in one format, and how to read units of them."""

    def __init__(self, manifest: dict, shards: list[dict], columns: list[str], *, storage_options=None,
                 cache_dir: str | None = None, verify: bool = False):
        self.root = manifest["_dir"]
        self.shards = shards
        self.columns = columns
        self.storage_options = storage_options or {}
        self.cache_dir = cache_dir
        self.verify = verify
        self.schema = [(c["name"], c["dtype"], c["role"]) for c in manifest["schema"]]
        self._checked: set[int] = set()
        self._files: collections.OrderedDict = collections.OrderedDict()
        self._tars: collections.OrderedDict = collections.OrderedDict()  # shard -> (TarShard, open file)
        self._fs = None

    def __getstate__(self):  # DataLoader workers get a fresh copy without open files
        state = dict(self.__dict__)
        state.update(_files=collections.OrderedDict(), _tars=collections.OrderedDict(), _fs=None)
        return state

    def check_present(self) -> None:
        """Fail now, naming the file, if a local shard is missing (remote ones fail on first read)."""
        if is_url(self.root):
            return
        for i in range(len(self.shards)):
            if not os.path.exists(self.location(i)):
                raise InputError("shard listed in the manifest is missing", self.location(i))

    # --- locating --------------------------------------------------------------------------------------
    def location(self, i: int) -> str:
        return posixpath.join(self.root, self.shards[i]["path"]) if is_url(self.root) else \
            os.path.join(self.root, self.shards[i]["path"])

    def fs(self):
        if self._fs is None:
            self._fs = fsspec.core.url_to_fs(self.root, **self.storage_options)[0]
        return self._fs

    def local_path(self, i: int) -> str | None:
        """A local file holding shard ``i`` (downloaded to the cache if remote and cached), else None."""
        where = self.location(i)
        if not is_url(where):
            if not os.path.exists(where):
                raise InputError("shard listed in the manifest is missing", where)
            return where
        if self.cache_dir is None:
            return None
        shard = self.shards[i]
        name = hashlib.sha256(where.encode()).hexdigest()[:16] + "-" + posixpath.basename(shard["path"])
        path = os.path.join(self.cache_dir, name)
        if not os.path.exists(path) or os.path.getsize(path) != shard["bytes"]:
            self._download(where, path)
        return path

    def _download(self, url: str, path: str) -> None:
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.fs().get_file(url, tmp)
            os.replace(tmp, path)
        except FileNotFoundError:
            raise InputError("shard listed in the manifest is missing", url) from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def check(self, i: int, always: bool = False) -> None:
        """With ``verify`` (or ``always``): the shard's size and sha256 match the manifest (once per shard)."""
        if not (self.verify or always) or i in self._checked:
            return
        shard, where = self.shards[i], self.location(i)
        h = hashlib.sha256()
        size = 0
        with self._open(i) as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
                size += len(block)
        if size != shard["bytes"] or h.hexdigest() != shard["sha256"]:
            raise InputError(f"checksum mismatch: {size} bytes, sha256 {h.hexdigest()[:16]}...; the manifest says "
                             f"{shard['bytes']} bytes, sha256 {shard['sha256'][:16]}...", where)
        self._checked.add(i)

    def _open(self, i: int):
        local = self.local_path(i)
        if local is not None:
            return open(local, "rb")
        try:
            return self.fs().open(self.location(i), "rb")
        except FileNotFoundError:
            raise InputError("shard listed in the manifest is missing", self.location(i)) from None

    # --- reading ---------------------------------------------------------------------------------------
    def read(self, unit: Unit) -> dict[str, np.ndarray]:
        """The unit's rows as one NumPy array per column."""
        self.check(unit.shard)
        where = self.location(unit.shard)
        try:
            if self.shards[unit.shard]["format"] == "webdataset":
                return self._read_tar(unit, where)
            return self._read_parquet(unit, where)
        except InputError:
            raise
        except (OSError, pa.ArrowException, ValueError, EOFError) as exc:
            raise InputError(f"corrupt or unreadable shard: {_first_line(exc)}", where) from None

    def _parquet(self, i: int):
        if i in self._files:
            self._files.move_to_end(i)
            return self._files[i]
        local = self.local_path(i)
        source = local if local is not None else self._open(i)
        if CHECKSUMS:
            self._check_footer(i, source)
        pf = pq.ParquetFile(source, page_checksum_verification=CHECKSUMS)
        expected = self.shards[i]["rows"]
        if pf.metadata.num_rows != expected:
            raise InputError(f"{pf.metadata.num_rows} rows, the manifest says {expected}", self.location(i))
        bounds = np.concatenate([[0], np.cumsum([pf.metadata.row_group(g).num_rows
                                                 for g in range(pf.metadata.num_row_groups)])])
        self._files[i] = (pf, bounds)
        while len(self._files) > 8:
            _, (old, _) = self._files.popitem(last=False)
            old.close()
        return self._files[i]

    def _check_footer(self, i: int, source) -> None:
        """The shard's size and its footer's sha256 against the manifest: page checksums do not
        cover the footer (a flipped byte there could change what is read without a CRC error)."""
        shard, where = self.shards[i], self.location(i)
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(source, "rb")) if isinstance(source, str) else source
            size = f.seek(0, os.SEEK_END)
            if size != shard["bytes"]:
                raise InputError(f"corrupt shard: {size} bytes, the manifest says {shard['bytes']}", where)
            if shard.get("footer_sha256"):
                f.seek(max(0, size - 8))
                n = int.from_bytes(f.read(8)[:4], "little") + 8
                f.seek(max(0, size - n))
                if hashlib.sha256(f.read(n)).hexdigest() != shard["footer_sha256"]:
                    raise InputError("corrupt shard: its footer does not match the manifest's footer_sha256", where)
            f.seek(0)

    def _row_groups(self, unit: Unit):
        """(the ParquetFile, the row groups holding the unit, rows to skip in the first of them)."""
        pf, bounds = self._parquet(unit.shard)
        first = int(np.searchsorted(bounds, unit.start, side="right") - 1)
        last = int(np.searchsorted(bounds, unit.stop - 1, side="right") - 1)
        return pf, list(range(first, last + 1)), unit.start - int(bounds[first])

    def _read_parquet(self, unit: Unit, where: str) -> dict[str, np.ndarray]:
        pf, groups, skip = self._row_groups(unit)
        table = pf.read_row_groups(groups, columns=self.columns, use_threads=True).slice(skip, unit.rows)
        return {c: column_numpy(table.column(c), c, where) for c in self.columns}

    def parquet_span(self, unit: Unit):
        """Where a GPU reader finds a unit of a Parquet shard: (a local path or an open file, the row
        groups holding it, rows to skip in the first of them)."""
        self.check(unit.shard)
        _, groups, skip = self._row_groups(unit)
        local = self.local_path(unit.shard)
        return (local if local is not None else self._open(unit.shard)), groups, skip

    def _read_tar(self, unit: Unit, where: str) -> dict[str, np.ndarray]:
        return self._tar_shard(unit.shard, where).read(unit.start, unit.stop, self.columns)

    def _tar_shard(self, i: int, where: str) -> TarShard:
        """Shard ``i`` as a TarShard over its open file, or over its bytes when the whole file is
        gzip-compressed (it cannot be entered mid-way). A few are kept open; of those that hold
        their data in memory (decompressed or decoded whole), the two used last."""
        if i in self._tars:
            self._tars.move_to_end(i)
            return self._tars[i][0]
        # A tar shard is read a range of samples at a time, with no checksum of its own: its sha256
        # is checked once, when it is first opened.
        self.check(i, always=CHECKSUMS)
        f = self._open(i)
        try:
            read_at, size, in_memory = _tar_bytes(f, where)
            shard = TarShard(read_at, size, self.schema, self.shards[i]["rows"], where, in_memory=in_memory)
        except BaseException:
            f.close()
            raise
        if in_memory:
            f.close()
        self._tars[i] = (shard, None if in_memory else f)
        heavy = [j for j, (t, _) in self._tars.items() if t.holds_data]
        for j in heavy[:-2] + list(self._tars)[:-8]:
            self._drop_tar(j)
        return shard

    def _drop_tar(self, i: int) -> None:
        _, f = self._tars.pop(i, (None, None))
        if f is not None:
            f.close()


def _tar_bytes(f, where: str):
    """(read_at(offset, size) -> bytes, size, in memory) over a tar file, decompressed first if gzip."""
    head = f.read(2)
    if head == b"\x1f\x8b":
        data = gzip.decompress(head + f.read())
        return (lambda off, n: data[off: off + n]), len(data), True
    size = f.seek(0, os.SEEK_END)

    def read_at(off: int, n: int) -> bytes:
        f.seek(off)
        out = f.read(n)
        if len(out) != n:
            raise InputError(f"truncated: {n} bytes expected at byte {off}, {len(out)} there", where)
        return out

    return read_at, size, False


def column_numpy(col: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    """A column as NumPy, zero-copy where Arrow allows. Float nulls become NaN; integer or bool
    nulls have no tensor value, so they fail, naming the column."""
    if col.null_count:
        if not pa.types.is_floating(col.type):
            raise InputError(f"column '{name}' has {col.null_count} null(s), which a tensor cannot hold; fill them "
                             "in the pipeline (fill_missing)", where)
        return col.to_numpy(zero_copy_only=False)
    chunks = [_chunk_numpy(c) for c in col.chunks]
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=col.type.to_pandas_dtype())


def _chunk_numpy(arr: pa.Array) -> np.ndarray:
    """A null-free chunk as a NumPy view of its data buffer (pyarrow's to_numpy may import pandas
    for some types, seconds in every fresh worker); bit-packed bools are unpacked."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        dtype = np.dtype(t.to_pandas_dtype())
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    return arr.to_numpy(zero_copy_only=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
