"""Shard writers. Every file is written under a temporary name and renamed into place once whole
(an object on an object store appears whole when its upload ends), so a reader (or a resumed
compile) never sees half a shard; its sha256 is taken as it is written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith import storage
from shardsmith.errors import OutputError

TAIL = 1 << 20  # bytes of a file's end kept while writing it (a Parquet footer's hash)


class HashingFile:
    """A write-only file that keeps a running sha256, the byte count and the last TAIL bytes of what
    passes through it into ``f`` (a local file, fsynced on close, or an fsspec file)."""

    def __init__(self, f, local: bool = True):
        self._f = f
        self.local = local
        self.sha = hashlib.sha256()
        self.size = 0
        self._tail = bytearray()
        self.closed = False

    def write(self, data) -> int:
        mv = memoryview(data).cast("B")
        self.sha.update(mv)
        self.size += mv.nbytes
        self._tail += mv[-TAIL:]
        if len(self._tail) > 2 * TAIL:  # trimmed now and then: amortised O(1) a byte
            del self._tail[:-TAIL]
        return self._f.write(mv)

    @property
    def tail(self) -> bytes:
        return bytes(self._tail[-TAIL:])

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.closed:
            self._f.flush()
            if self.local:
                os.fsync(self._f.fileno())
            self._f.close()
            self.closed = True

    def discard(self) -> None:
        """Close without keeping: an object store's upload is aborted, not committed."""
        if not self.closed:
            self.closed = True
            discard = getattr(self._f, "discard", None)
            (discard or self._f.close)()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def atomic_write(final: str, write_fn, storage_options: dict | None = None, native: bool = False) -> dict:
    """Run ``write_fn(file)`` on a temporary file beside ``final``, then rename it into place; on
    an object store, write the object itself (it appears whole, at the end, or not at all).
    Returns the bytes, sha256 and the file's last bytes (``tail``); a full disk or a read-only
    location is an OutputError naming ``final``. ``native``: ``write_fn`` is a native writer
    (Arrow's, which encodes and writes outside the GIL) and gets an Arrow output stream for a local
    file, so that no page passes through Python on its way out; the file is then read back once
    for its sha256 and last bytes. An object store always gets the Python file."""
    try:
        if storage.is_url(final):
            return _write_object(final, write_fn, storage_options)
        return (_write_native if native else _write_local)(storage.local(final), write_fn)
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror or exc}", final) from None


def _temporary(final: str) -> str:
    """A temporary name beside ``final`` (its folder made), which runtime/target.py's TMP matches."""
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    return f"{final}.tmp-{uuid.uuid4().hex[:12]}"


def _write_local(final: str, write_fn) -> dict:
    tmp = _temporary(final)
    f = HashingFile(open(tmp, "wb"))
    try:
        write_fn(f)
        f.close()
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"bytes": f.size, "sha256": f.sha.hexdigest(), "tail": f.tail}


def _write_native(final: str, write_fn) -> dict:
    tmp = _temporary(final)
    try:
        with _open_native(tmp) as sink:
            write_fn(sink)
        info = _read_back(tmp)  # fsynced there
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return info


def _open_native(path: str) -> pa.NativeFile:
    return pa.OSFile(path, "wb")


def _read_back(path: str) -> dict:
    """The bytes, sha256 and last TAIL bytes of a file just written (in the page cache), fsynced."""
    sha, size, tail = hashlib.sha256(), 0, b""
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            sha.update(block)
            size += len(block)
            tail = (tail + block)[-TAIL:]
        os.fsync(f.fileno())
    return {"bytes": size, "sha256": sha.hexdigest(), "tail": tail}


def _write_object(final: str, write_fn, storage_options: dict | None) -> dict:
    fs, path = storage.filesystem(final, storage_options)
    f = HashingFile(fs.open(path, "wb"), local=False)
    try:
        write_fn(f)
        f.close()
    except BaseException:
        f.discard()
        raise
    return {"bytes": f.size, "sha256": f.sha.hexdigest(), "tail": f.tail}


def footer_sha256(tail: bytes) -> str | None:
    """sha256 of a Parquet file's footer (its metadata, length and magic) from the file's last
    bytes; None when the footer is longer than what was kept. The loader checks it on every open:
    page checksums do not cover the footer.

    >>> footer = b"meta" + (4).to_bytes(4, "little") + b"PAR1"
    >>> footer_sha256(b"pages" + footer) == hashlib.sha256(footer).hexdigest()
    True
    """
    n = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else len(tail) + 1
    return hashlib.sha256(tail[-n:]).hexdigest() if n <= len(tail) else None


def write_bytes(final: str, data, storage_options: dict | None = None) -> dict:
    """Write a Parquet file whose bytes are already made (cuDF encoded it on the device): its bytes,
    sha256 and footer sha256 (cuDF writes no page checksums; the loader checks size and footer)."""
    info = atomic_write(final, lambda f: f.write(data), storage_options)
    return {"bytes": info["bytes"], "sha256": info["sha256"], "footer_sha256": footer_sha256(info["tail"])}


def write_parquet(table: pa.Table, final: str, sink, schema=None) -> dict:
    """A Parquet shard with page checksums (CRC-32 of every page, checked by the loader) and the
    hash of its footer."""
    compression = None if sink.compression == "none" else sink.compression

    def write(f):
        pq.write_table(table, f, row_group_size=sink.row_group_rows, compression=compression,
                       compression_level=sink.compression_level, write_statistics=True, write_page_checksum=True)

    info = atomic_write(final, write, getattr(sink, "storage_options", None), native=True)
    return {"bytes": info["bytes"], "sha256": info["sha256"], "footer_sha256": footer_sha256(info["tail"])}


WRITERS = {"parquet": (".parquet", write_parquet)}
# What the manifest names as each file's writer ("writer" of a shard entry): Parquet written by
# pyarrow from host memory is "arrow" (the GPU engine writes "cudf" files itself); other formats
# are written by shardsmith's own code.
WRITER_NAMES = {"parquet": "arrow"}


def register_writer(fmt: str, suffix: str, fn) -> None:
    """Add an output format: ``fn(table, final_path, sink, schema=...) -> {"bytes", "sha256"}`` (and
    ``"path"`` when the writer changes the file name, e.g. adds a compression suffix). ``schema`` is the
    output schema (with column roles), or None for quarantine shards."""
    WRITERS[fmt] = (suffix, fn)


def write_shard(table: pa.Table, stem: str, sink, schema, formats=None) -> dict:
    """Write ``table`` in every output format (or those of ``formats``; quarantine shards: Parquet
    only)."""
    formats = formats if formats is not None else sink.formats if schema is not None else ("parquet",)
    out = {}
    for fmt in formats:
        suffix, fn = WRITERS[fmt]
        info = fn(table, stem + suffix, sink, schema=schema)
        out[fmt] = {"path": stem + suffix, "rows": table.num_rows, "writer": WRITER_NAMES.get(fmt, "shardsmith"),
                    **info}
    return out
