"""WebDataset shards: USTAR tar files that the ``webdataset`` library reads, in two layouts.

**Batched** (``output.webdataset.rows_per_sample: N`` > 1, default 1024): a sample holds N consecutive
rows of the shard (the last sample of a shard fewer). Its key is ``<shard stem>_<first row, 9 digits>``
(no dots), and its members::

    part-00003_000001024.label.npy        int8 [n, 1]    the label column(s), rows x columns
    part-00003_000001024.continuous.npy   float32 [n, 13]
    part-00003_000001024.categorical.npy  int32 [n, 27]
    part-00003_000001024.row.npy          int64 [n]      each row's index in the shard (1024, 1025, ...)
    part-00003_000001024.json             {"key": ..., "row": 1024, "rows": n, "columns": {...}, <text columns>}

**Per row** (``rows_per_sample: 1``, shardsmith 0.1's layout, byte for byte): one sample per row,
key ``<stem>_<row, 9 digits>``; the groups are 1-D (``continuous.npy`` float32 [13]), a single
integer (or bool) label is a ``.cls`` member (decimal text) instead of ``label.npy``, there is no
``row.npy``, and the ``.json`` member holds ``"row"`` and the row's text values.

Numeric columns are grouped by role into one ``<role>.npy`` member each (``label``, ``continuous``,
``categorical``, ``weight``, ``id``, ``other``); a group's dtype is the common NumPy type of its
columns (``np.result_type``: float32 columns give float32, one float64 column makes the group
float64). The ``.json`` member names the columns of every ``.npy`` member (``"columns"``, keyed by
member name as written), so a sample describes itself, and holds the non-numeric columns (strings;
dates and timestamps as ISO text; binary as base64): one value per row, a list in a batched sample.
Float nulls are NaN; integer columns must not hold nulls (fill them in the pipeline), and writing
one fails, naming the column.

Compression (``output.webdataset.compression``): ``gzip`` compresses each shard as a whole
(``part-00000.tar.gz``, gzip header without name or time); ``zstd`` (batched layout only)
compresses every member of a sample on its own (``continuous.npy.zst``, one zstd frame that records
its size), so the tar stays a plain, seekable tar that ``tar`` lists and a reader can enter at any
sample. Every member has mode 0444, uid/gid 0, empty user/group names and mtime 0, so identical rows
give a byte-identical tar (and sha256). Writing is vectorised: per-row member headers are one
template patched per row with NumPy, batched samples are a few NumPy arrays each.

Reading: :class:`TarShard` reads any range of rows of either layout (the loader's units are the
Parquet row groups, so both formats give the same batches); :func:`unzstd` is the ``webdataset``
decode handler for zstd members (docs/loader.md has the recipe).
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import tarfile
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shardsmith.errors import InputError, ShardsmithError
from shardsmith.shards.writers import atomic_write, register_writer

BLOCK = 512
RECORD = 20 * BLOCK  # tar files end padded to a whole record, as tar(1) and tarfile write them
GROUP_ROLES = ("label", "continuous", "categorical", "weight", "id", "other")
KEY_DIGITS = 9
COMPRESSIONS = ("none", "gzip", "zstd")
NUMERIC = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "bool")
ROW_EXT = "row.npy"  # batched samples only: each row's index in the shard
ZSTD = ".zst"
# Levels (bench/loader/wds_layouts.py --levels-only: 131,072 demo rows, 1024 rows per sample): per
# member, zstd 3 wrote 2.6% fewer bytes than zstd 1, and over a whole tar it took twice the time;
# gzip 9 wrote 12% fewer bytes than gzip 1 in 33-35x the time. Per-row shards keep gzip 9, their
# layout of old, byte for byte.
ZSTD_LEVEL = 1
GZIP_LEVEL = {"per_row": 9, "batched": 1}
MAX_MEMBER = 8**11 - 1  # the largest size a USTAR header's 11 octal digits can hold
SAMPLES_PER_CHUNK = 64  # batched samples written (and their headers made) together


@dataclass(frozen=True)
class Member:
    """One member of every sample: its extension and the columns it holds (in order)."""

    ext: str
    columns: tuple[str, ...]
    dtype: str | None  # the NumPy dtype of an .npy member; None for .cls and .json


def sample_layout(columns, batched: bool = False) -> tuple[Member, ...]:
    """The members of a sample for ``columns`` (name, dtype, role) triples, in writing order.
    ``batched``: the layout of samples of several rows (no ``.cls``; a ``row.npy`` member)."""
    numeric = [(n, d, r if r in GROUP_ROLES else "other") for n, d, r in columns if d in NUMERIC]
    text = tuple(n for n, d, _ in columns if d not in NUMERIC)
    _check_case(n for n, _, _ in columns)
    members = []
    for role in GROUP_ROLES:
        group = [(n, d) for n, d, r in numeric if r == role]
        if not group:
            continue
        if role == "label" and len(group) == 1 and not group[0][1].startswith("float") and not batched:
            members.append(Member("cls", (group[0][0],), None))
            continue
        dtype = np.result_type(*[np.dtype(d) for _, d in group]).name
        members.append(Member(f"{role}.npy", tuple(n for n, _ in group), dtype))
    if batched:
        members.append(Member(ROW_EXT, (), "int64"))
    members.append(Member("json", text, None))
    return tuple(members)


def _check_case(names) -> None:
    seen: dict[str, str] = {}
    for name in names:
        low = name.lower()
        if low in seen and seen[low] != name:
            raise ShardsmithError(f"columns '{seen[low]}' and '{name}' differ only in case", "output.format")
        seen[low] = name


# --- writing -----------------------------------------------------------------------------------------
def write_webdataset(table: pa.Table, final: str, sink, schema=None) -> dict:
    """Write ``table`` as a tar shard at ``final`` (``.tar.gz`` with gzip compression)."""
    compression, per_sample = _options(sink)
    batched = per_sample > 1
    roles = {c.name: c.role for c in schema.columns} if schema is not None else {}
    columns = [(f.name, _dtype_name(f.type), roles.get(f.name, "other")) for f in table.schema]
    layout = sample_layout(columns, batched=batched)
    _check_json_names(layout, batched)
    stem = final.rsplit("/", 1)[-1].split(".", 1)[0]
    path = final + ".gz" if compression == "gzip" else final
    if batched:
        chunks = batched_chunks(table, layout, stem, per_sample, compression == "zstd", path)
    else:
        chunks = tar_chunks(table, layout, stem, path)
    level = GZIP_LEVEL["batched" if batched else "per_row"] if compression == "gzip" else None
    info = atomic_write(path, lambda f: _write_chunks(f, chunks, level), getattr(sink, "storage_options", None))
    return {"path": path, "bytes": info["bytes"], "sha256": info["sha256"]}


def _write_chunks(f, chunks, gzip_level: int | None) -> None:
    """Write the chunks to ``f``, through deterministic gzip (no name, mtime 0) when a level is given."""
    out = f if gzip_level is None else gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="",
                                                       compresslevel=gzip_level)
    for chunk in chunks:
        out.write(chunk)
    if out is not f:
        out.close()


def _check_json_names(layout, batched: bool) -> None:
    """Text columns go into the .json member beside its own fields: their names must not clash."""
    own = ("key", "row", "columns", "rows") if batched else ("key", "row", "columns")
    text = next(m for m in layout if m.ext == "json").columns
    for c in text:
        if c in own:
            raise ShardsmithError(f"text column '{c}' has the name of a field of the WebDataset .json member "
                                  f"({', '.join(own)}); rename it", "output.format")


def _options(sink) -> tuple[str, int]:
    """(compression, rows per sample) of a Sink (or of any object with those attributes)."""
    compression = getattr(sink, "webdataset_compression", "none") or "none"
    if compression not in COMPRESSIONS:
        raise ShardsmithError(f"expected one of {', '.join(COMPRESSIONS)}, got {compression!r}",
                              "output.webdataset.compression")
    per_sample = getattr(sink, "webdataset_rows_per_sample", 1)
    if isinstance(per_sample, bool) or not isinstance(per_sample, int) or per_sample < 1:
        raise ShardsmithError(f"expected a positive integer, got {per_sample!r}", "output.webdataset.rows_per_sample")
    if compression == "zstd" and per_sample == 1:
        raise ShardsmithError("zstd compresses the members of batched samples; with rows_per_sample=1 use gzip "
                              "or none", "output.webdataset.compression")
    return compression, per_sample


def _dtype_name(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    try:
        return np.dtype(t.to_pandas_dtype()).name if (pa.types.is_integer(t) or pa.types.is_floating(t)) else str(t)
    except (NotImplementedError, TypeError):
        return str(t)


def tar_chunks(table: pa.Table, layout, stem: str, where: str, rows_per_chunk: int = 65536):
    """The tar's bytes, in chunks of whole samples, then the end-of-archive blocks."""
    written = 0
    for start in range(0, max(table.num_rows, 1), rows_per_chunk):
        part = table.slice(start, rows_per_chunk)
        if part.num_rows == 0:
            break
        chunk = _records(part, layout, stem, start, where)
        written += len(chunk)
        yield chunk
    yield end_of_archive(written)


def end_of_archive(written: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, as tar(1) ends an archive of ``written`` bytes."""
    end = 2 * BLOCK
    return bytes(end + (-(written + end)) % RECORD)


def _records(table: pa.Table, layout, stem: str, first_row: int, where: str) -> bytes:
    n = table.num_rows
    keys = _keys(stem, first_row, n)
    parts = []
    for m in layout:
        payload = _payload(table, m, layout, keys, first_row, where)
        names = np.char.add(keys, ("." + m.ext).encode())
        parts.append(_members(names, payload))
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts, axis=1).tobytes()
    rows = [p if isinstance(p, list) else [bytes(r) for r in p] for p in parts]
    return b"".join(b"".join(sample) for sample in zip(*rows))


def _keys(stem: str, first_row: int, n: int) -> np.ndarray:
    rows = np.char.zfill(np.arange(first_row, first_row + n).astype(f"S{KEY_DIGITS}"), KEY_DIGITS)
    return np.char.add(f"{stem}_".encode(), rows)


def _payload(table: pa.Table, m: Member, layout, keys, first_row: int, where: str):
    """The member's data: an (n, size) uint8 array when every row's is the same size, else a list."""
    if m.ext == "json":
        return _json_payload(table, m, layout, keys, first_row)
    if m.ext == "cls":
        return [b"%d" % v for v in _numeric(table.column(m.columns[0]), m.columns[0], where).astype(np.int64).tolist()]
    block = group_matrix(table, m, where)
    header = npy_header(np.dtype(m.dtype), len(m.columns))
    out = np.empty((table.num_rows, len(header) + block.shape[1] * block.itemsize), dtype=np.uint8)
    out[:, : len(header)] = np.frombuffer(header, dtype=np.uint8)
    out[:, len(header):] = block.view(np.uint8).reshape(table.num_rows, -1)
    return out


def group_matrix(table: pa.Table, m: Member, where: str) -> np.ndarray:
    """The columns of an .npy member as one (rows, columns) matrix of the member's dtype."""
    block = np.empty((table.num_rows, len(m.columns)), dtype=m.dtype)
    for i, c in enumerate(m.columns):
        block[:, i] = _numeric(table.column(c), c, where)
    return block


def _numeric(col: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    if col.null_count and not pa.types.is_floating(col.type):
        raise ShardsmithError(f"column '{name}' has {col.null_count} null(s) and WebDataset .npy/.cls members cannot "
                              "hold them; fill them in the pipeline (fill_missing) or cast to float", where)
    return col.to_numpy(zero_copy_only=False)


def _json_payload(table: pa.Table, m: Member, layout, keys, first_row: int) -> list[bytes]:
    described = {mm.ext: list(mm.columns) for mm in layout if mm.ext != "json"}
    head = json.dumps({"columns": described}, separators=(",", ":"))[1:-1]
    values = {c: _text_values(table.column(c)) for c in m.columns}
    out = []
    for i, key in enumerate(keys.tolist()):
        extra = "".join(f",{json.dumps(c)}:{json.dumps(v[i])}" for c, v in values.items())
        out.append(f'{{"key":"{key.decode()}","row":{first_row + i},{head}{extra}}}'.encode())
    return out


def _text_values(col: pa.ChunkedArray) -> list:
    t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return [None if v is None else base64.b64encode(v).decode() for v in col.to_pylist()]
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        col = col.cast(pa.string())
    return col.to_pylist()


@functools.lru_cache(maxsize=64)  # every full sample of a shard has the same headers
def npy_header(dtype: np.dtype, *shape: int) -> bytes:
    """The .npy (format 1.0) header of a C-ordered array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _template() -> np.ndarray:
    info = tarfile.TarInfo("x")
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0, 0o444, 0, 0, "", ""
    return np.frombuffer(info.tobuf(format=tarfile.USTAR_FORMAT), dtype=np.uint8).copy()


TEMPLATE = _template()


def _members(names: np.ndarray, payload):
    """Header + data, padded to whole blocks, for every row: an (n, k) uint8 array, or a list of bytes
    when the members' padded sizes differ from row to row."""
    n = len(names)
    if isinstance(payload, np.ndarray):
        sizes = np.full(n, payload.shape[1], dtype=np.int64)
    else:
        sizes = np.fromiter((len(p) for p in payload), dtype=np.int64, count=n)
    headers = ustar_headers(names, sizes)
    padded = -(-sizes // BLOCK) * BLOCK
    if isinstance(payload, np.ndarray) or (padded == padded[0]).all():
        width = int(padded[0]) if n else 0
        out = np.zeros((n, BLOCK + width), dtype=np.uint8)
        out[:, :BLOCK] = headers
        if isinstance(payload, np.ndarray):
            out[:, BLOCK: BLOCK + payload.shape[1]] = payload
        else:
            for i, p in enumerate(payload):
                out[i, BLOCK: BLOCK + len(p)] = np.frombuffer(p, dtype=np.uint8)
        return out
    return [headers[i].tobytes() + p + bytes(int(padded[i]) - len(p)) for i, p in enumerate(payload)]


def ustar_headers(names: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(n, 512) USTAR headers: the template with each row's name, size and checksum."""
    n = len(names)
    if n and max(len(x) for x in names.tolist()) > 100:
        raise ShardsmithError("a sample member name is longer than 100 bytes", names[0].decode())
    h = np.tile(TEMPLATE, (n, 1))
    name_bytes = np.frombuffer(names.astype("S100").tobytes(), dtype=np.uint8).reshape(n, 100)
    h[:, :100] = name_bytes
    h[:, 124:136] = _octal(sizes, 11)
    h[:, 148:156] = ord(" ")
    chk = h.sum(axis=1, dtype=np.int64)
    h[:, 148:155] = _octal(chk, 6)
    h[:, 155] = ord(" ")
    return h


def _octal(values: np.ndarray, digits: int) -> np.ndarray:
    """Each value as ``digits`` zero-padded octal ASCII digits followed by NUL: (n, digits + 1) uint8."""
    out = np.zeros((len(values), digits + 1), dtype=np.uint8)
    v = values.astype(np.int64).copy()
    for i in range(digits - 1, -1, -1):
        out[:, i] = ord("0") + (v & 7)
        v >>= 3
    return out


# --- writing batched samples ---------------------------------------------------------------------------
def batched_chunks(table: pa.Table, layout, stem: str, per_sample: int, zstd: bool, where: str):
    """The tar's bytes, a chunk of samples of ``per_sample`` consecutive rows at a time, then the
    end blocks. Samples are assembled from column slices (a sample's block fits in cache, so this
    is several times faster than one whole-shard matrix) and their headers made in one NumPy pass."""
    columns = {m.ext: [_numeric(table.column(c), c, where) for c in m.columns] for m in layout
               if m.ext not in ("json", ROW_EXT)}
    text = next(m for m in layout if m.ext == "json").columns
    values = {c: _text_values(table.column(c)) for c in text}
    described = {member_name(m.ext, zstd): list(m.columns) for m in layout if m.ext in columns}
    firsts = range(0, table.num_rows, per_sample)
    written = 0
    for i in range(0, len(firsts), SAMPLES_PER_CHUNK):
        members = []
        for first in firsts[i: i + SAMPLES_PER_CHUNK]:
            stop = min(first + per_sample, table.num_rows)
            key = f"{stem}_{first:0{KEY_DIGITS}d}"
            head = {"key": key, "row": first, "rows": stop - first, "columns": described}
            members += [(f"{key}.{member_name(m.ext, zstd)}", _sample_payload(m, columns, values, head, first, stop))
                        for m in layout]
        chunk = _members_bytes(members, zstd)
        written += len(chunk)
        yield chunk
    yield end_of_archive(written)


def member_name(ext: str, zstd: bool) -> str:
    return ext + ZSTD if zstd else ext


def _sample_payload(m: Member, columns: dict, values: dict, head: dict, first: int, stop: int) -> bytes:
    if m.ext == ROW_EXT:
        return npy_bytes(np.arange(first, stop, dtype=np.int64))
    if m.ext in columns:
        block = np.empty((stop - first, len(m.columns)), dtype=m.dtype)
        for i, col in enumerate(columns[m.ext]):
            block[:, i] = col[first:stop]
        return npy_bytes(block)
    doc = {**head, **{c: v[first:stop] for c, v in values.items()}}
    return json.dumps(doc, separators=(",", ":")).encode()


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as an .npy file, as ``np.save`` writes it."""
    return npy_header(a.dtype, *a.shape) + np.ascontiguousarray(a).tobytes()


def _members_bytes(members: list[tuple[str, bytes]], zstd: bool) -> bytes:
    """Tar members (header, data, padding) for (name, data) pairs, the data zstd-compressed if asked."""
    payloads = [zstd_compress(p) if zstd else p for _, p in members]
    names = np.array([name.encode() for name, _ in members])
    sizes = np.array([len(p) for p in payloads], dtype=np.int64)
    if sizes.max() > MAX_MEMBER:
        raise ShardsmithError(f"a sample member of {sizes.max():,} bytes is more than a tar header can hold "
                              f"({MAX_MEMBER:,}); use fewer rows per sample", "output.webdataset.rows_per_sample")
    parts = []
    for header, payload in zip(ustar_headers(names, sizes), payloads):
        parts += [header.tobytes(), payload, bytes(-len(payload) % BLOCK)]
    return b"".join(parts)


def zstd_compress(data: bytes) -> bytes:
    """One zstd frame (with its content size in the frame header), at ``ZSTD_LEVEL``."""
    return pa.Codec("zstd", compression_level=ZSTD_LEVEL).compress(data, asbytes=True)


register_writer("webdataset", ".tar", write_webdataset)


# --- reading (for the loader) ----------------------------------------------------------------------------
class TarShard:
    """The rows of one shard written by :func:`write_webdataset`, either layout, a range at a time.

    ``read_at(offset, size)`` returns bytes of the (decompressed) tar, ``size`` bytes long. Batched
    shards are indexed once by walking their member headers (a few per thousand rows); a range of
    rows is then one read of the samples that hold it. Per-row shards whose samples all have one
    byte length (no text of varying length) are read by arithmetic; others are decoded whole, once,
    as are per-row shards held in memory (``in_memory``: a decompressed .tar.gz), whose bytes would
    be ~25x their columns."""

    def __init__(self, read_at, size: int, columns, rows: int, where: str, in_memory: bool = False):
        self.read_at, self.size, self.rows, self.where = read_at, size, rows, where
        first = list(_walk(read_at, size, where, first_sample_only=True))
        self.batched = any(name.split(".", 1)[1] in (ROW_EXT, ROW_EXT + ZSTD) for _, name, _, _ in first)
        self.layout = sample_layout(columns, batched=self.batched)
        self.numeric = {c for m in self.layout if m.ext != "json" for c in m.columns}
        self.decoded = None
        self.in_memory = in_memory
        if self.batched:
            self.index = SampleIndex.walk(read_at, size, rows, where)
        else:
            self.stride = first[-1][2] + -(-first[-1][3] // BLOCK) * BLOCK if first else 0
            self.stem = first[0][1].split(".", 1)[0].rsplit("_", 1)[0] if first else ""
            if in_memory:
                self._decode_whole()

    @property
    def holds_data(self) -> bool:
        """Whether this holds the shard's data in memory (bytes or decoded columns), not just an index."""
        return self.in_memory or self.decoded is not None

    def read(self, start: int, stop: int, names) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of the columns ``names``, as NumPy arrays."""
        missing = [c for c in names if c not in self.numeric]
        if missing:
            raise InputError(f"column(s) {', '.join(missing)} are not in the WebDataset samples", self.where)
        if self.batched:
            return self._read_samples(start, stop, names)
        if self.decoded is None:
            cols = self._read_rows(start, stop, names)
            if cols is not None:
                return cols
            self._decode_whole()
        return {c: self.decoded[c][start:stop] for c in names}

    def _decode_whole(self) -> None:
        data = self.read_at(0, self.size)
        self.decoded = read_tar_columns(data, self.layout, self.rows, self.where)
        self.read_at = None  # the columns are all that is needed from now on

    def _read_rows(self, start: int, stop: int, names):
        """Per-row samples of one byte length: rows [start, stop) are one byte range. None when the
        samples in that range turn out not to be of equal length (then the shard is decoded whole)."""
        lo, hi = start * self.stride, stop * self.stride
        if hi + 2 * BLOCK > self.size:
            return None
        buf = np.frombuffer(self.read_at(lo, hi - lo), dtype=np.uint8)
        offsets = _fixed_offsets(buf, len(self.layout), stop - start)
        if offsets is None or not self._keys_are(buf, start, stop):
            return None
        wanted = [m for m in self.layout if set(m.columns) & set(names)]
        return _columns_at(buf, self.layout, offsets, wanted, self.where)

    def _keys_are(self, buf: np.ndarray, start: int, stop: int) -> bool:
        """The first and last samples of a range read by arithmetic are the rows expected there."""
        ends = ((0, start), ((stop - start - 1) * self.stride, stop - 1))
        return all(bytes(buf[p: p + 100]).startswith(f"{self.stem}_{r:0{KEY_DIGITS}d}.".encode()) for p, r in ends)

    def _read_samples(self, start: int, stop: int, names) -> dict[str, np.ndarray]:
        idx = self.index
        j0, j1 = idx.sample_of(start), idx.sample_of(stop - 1)
        lo = int(idx.starts[j0])
        buf = self.read_at(lo, int(idx.stops[j1]) - lo)
        wanted = [m for m in self.layout if set(m.columns) & set(names) or m.ext == ROW_EXT]
        parts = [self._sample(buf, lo, j, wanted) for j in range(j0, j1 + 1)]
        a, b = start - int(idx.firsts[j0]), stop - int(idx.firsts[j0])
        out = {}
        for m in (m for m in wanted if m.columns):  # row.npy has none: its ids were checked by _sample
            # one transposing copy per member, so that each column comes out contiguous
            rows_by_col = np.ascontiguousarray(np.concatenate([p[m.ext] for p in parts])[a:b].T)
            out.update(zip(m.columns, rows_by_col))
        return {c: out[c] for c in names}

    def _sample(self, buf: bytes, lo: int, j: int, wanted) -> dict[str, np.ndarray]:
        """Sample ``j``'s (n, columns) array of each wanted member (its row ids checked against its place)."""
        first, n = int(self.index.firsts[j]), self.index.rows_in(j, self.rows)
        out = {}
        for m in wanted:
            name, (off, size) = self.index.member(j, m.ext, self.where)
            raw = buf[off - lo: off - lo + size]
            raw = zstd_decompress(raw, f"{self.where}: {name}") if name.endswith(ZSTD) else raw
            out[m.ext] = _npy_array(raw, m, n, f"{self.where}: {name}")
            if m.ext == ROW_EXT and not np.array_equal(out[m.ext], np.arange(first, first + n)):
                raise InputError(f"'{name}' does not hold rows {first}..{first + n - 1}", self.where)
        return out


@dataclass(frozen=True)
class SampleIndex:
    """Where the samples of a batched shard lie: first row, byte span and members of each."""

    keys: tuple[str, ...]
    firsts: np.ndarray  # first row of each sample
    starts: np.ndarray  # byte offset of each sample's first member header
    stops: np.ndarray  # byte offset just after each sample's last member
    members: tuple[dict, ...]  # per sample: member extension -> (data offset, data size)

    @classmethod
    def walk(cls, read_at, size: int, rows: int, where: str) -> SampleIndex:
        keys, starts, stops, members = [], [], [], []
        for pos, name, data, n in _walk(read_at, size, where):
            key, ext = name.split(".", 1)
            if not keys or keys[-1] != key:
                keys.append(key)
                starts.append(pos)
                members.append({})
                stops.append(0)
            members[-1][ext] = (data, n)
            stops[-1] = data + -(-n // BLOCK) * BLOCK
        firsts = np.array([_key_row(k, where) for k in keys], dtype=np.int64)
        ordered = len(firsts) > 0 and firsts[0] == 0 and (np.diff(firsts) > 0).all() and firsts[-1] < rows
        if not (ordered if rows else len(firsts) == 0):
            raise InputError(f"sample keys do not cover rows 0..{rows - 1} in order", where)
        return cls(tuple(keys), firsts, np.array(starts, np.int64), np.array(stops, np.int64), tuple(members))

    def sample_of(self, row: int) -> int:
        return int(np.searchsorted(self.firsts, row, side="right") - 1)

    def rows_in(self, j: int, rows: int) -> int:
        return int((self.firsts[j + 1] if j + 1 < len(self.firsts) else rows) - self.firsts[j])

    def member(self, j: int, ext: str, where: str) -> tuple[str, tuple[int, int]]:
        """(member name, (data offset, size)) of sample ``j``'s ``ext`` member, compressed or not."""
        for e in (ext, ext + ZSTD):
            if e in self.members[j]:
                return f"{self.keys[j]}.{e}", self.members[j][e]
        raise InputError(f"sample '{self.keys[j]}' has no '{ext}' member", where)


def _key_row(key: str, where: str) -> int:
    digits = key.rsplit("_", 1)[-1]
    if len(digits) != KEY_DIGITS or not digits.isdigit():
        raise InputError(f"not a shardsmith WebDataset sample key: '{key}'", where)
    return int(digits)


def _walk(read_at, size: int, where: str, first_sample_only: bool = False):
    """(header offset, name, data offset, data size) of each member, up to the end-of-archive blocks."""
    pos, key = 0, None
    while pos + BLOCK <= size:
        head = read_at(pos, BLOCK)
        if not any(head):
            return
        n = _header_size(head)
        if n is None:
            raise InputError(f"not a shardsmith WebDataset shard: no member header at byte {pos}", where)
        name = bytes(head[:100]).rstrip(b"\0").decode(errors="replace")
        if "." not in name or (first_sample_only and key is not None and name.split(".", 1)[0] != key):
            return
        key = name.split(".", 1)[0]
        yield pos, name, pos + BLOCK, n
        pos += BLOCK + -(-n // BLOCK) * BLOCK


def _npy_array(raw: bytes, m: Member, n: int, where: str) -> np.ndarray:
    """A batched sample's .npy member as an (n, columns) array (``row.npy``: 1-D, no columns)."""
    dtype = np.dtype(m.dtype)
    shape = (n,) if m.ext == ROW_EXT else (n, len(m.columns))
    header = npy_header(dtype, *shape)
    if len(raw) != len(header) + int(np.prod(shape)) * dtype.itemsize or bytes(raw[: len(header)]) != header:
        raise InputError(f"expected a {dtype.name} array of shape {shape}", where)
    return np.frombuffer(raw, dtype=dtype, offset=len(header)).reshape(shape)


def zstd_decompress(data, where: str = "zstd member") -> bytes:
    """Decompress one zstd frame that records its content size (as :func:`zstd_compress` writes)."""
    size = zstd_content_size(bytes(data[:18]))
    if size is None:
        raise InputError("not a zstd frame with its content size", where)
    return pa.decompress(data, decompressed_size=size, codec="zstd", asbytes=True)


def zstd_content_size(head: bytes) -> int | None:
    """The Frame_Content_Size field of a zstd frame header (RFC 8878, 3.1.1.1), or None."""
    if len(head) < 6 or head[:4] != b"\x28\xb5\x2f\xfd":
        return None
    fhd = head[4]
    flag, single = fhd >> 6, (fhd >> 5) & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]  # after the window and dictionary id fields
    width = (1 if single else 0, 2, 4, 8)[flag]
    if width == 0 or len(head) < pos + width:
        return None
    value = int.from_bytes(head[pos: pos + width], "little")
    return value + 256 if width == 2 else value


def unzstd(key: str, data: bytes):
    """A ``webdataset`` decode handler for the ``.zst`` members of ``compression: zstd`` shards:
    ``wds.WebDataset(urls).decode(unzstd)`` decompresses them, then decodes the member within
    (``.npy``, ``.json``) as usual. The sample keeps the member's name (``continuous.npy.zst``)."""
    if not key.endswith(ZSTD):
        return None
    from webdataset.autodecode import Continue

    return Continue(key[: -len(ZSTD)], zstd_decompress(data, key))


def read_tar_columns(data: bytes, layout, rows: int, where: str) -> dict[str, np.ndarray]:
    """Column arrays (one per .npy/.cls column) of a per-row shard written by :func:`write_webdataset`.

    ``data`` is the whole (decompressed) file. Samples of one shard have members of equal sizes
    unless text columns vary, so the fast path reads every member with one strided NumPy view;
    otherwise each header is walked in turn."""
    buf = np.frombuffer(data, dtype=np.uint8)
    offsets = _fixed_offsets(buf, len(layout), rows)
    if offsets is None:
        offsets = _walk_offsets(buf, len(layout), rows, where)
    return _columns_at(buf, layout, offsets, [m for m in layout if m.ext != "json"], where)


def _columns_at(buf: np.ndarray, layout, offsets, wanted, where: str) -> dict[str, np.ndarray]:
    """The columns of the ``wanted`` members, given every member's (data starts, sizes)."""
    out: dict[str, np.ndarray] = {}
    for m in wanted:
        starts, sizes = offsets[layout.index(m)]
        _check_member(buf, starts, m, where)
        if m.ext == "cls":
            out[m.columns[0]] = _parse_cls(buf, starts, sizes, where)
            continue
        out.update(_parse_npy(buf, starts, sizes, m, where))
    return out


def _fixed_offsets(buf: np.ndarray, per_sample: int, rows: int):
    """(data starts, data sizes) per member when every sample has the same byte length, else None."""
    if rows == 0:
        return [(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in range(per_sample)]
    pos, first = 0, []
    for _ in range(per_sample):
        if pos + BLOCK > len(buf):
            return None
        size = _header_size(buf[pos: pos + BLOCK])
        if size is None:
            return None
        first.append((pos + BLOCK, size))
        pos += BLOCK + -(-size // BLOCK) * BLOCK
    stride = pos
    if rows * stride > len(buf):
        return None
    base = np.arange(rows, dtype=np.int64) * stride
    out = []
    for start, size in first:
        sizes = _size_fields(buf, base + start - BLOCK)
        # Sizes may differ (the .json of row 9 is a byte shorter than that of row 10), blocks may not.
        if sizes is None or (-(-sizes // BLOCK) != -(-size // BLOCK)).any():
            return None
        out.append((base + start, sizes))
    return out


def _size_fields(buf: np.ndarray, headers: np.ndarray) -> np.ndarray | None:
    """The size fields (11 octal digits and a NUL, as we write them) of the headers at ``headers``;
    None if one is written otherwise."""
    fields = buf[headers[:, None] + np.arange(124, 136)[None, :]].astype(np.int64)
    digits = fields[:, :11] - ord("0")
    if ((digits < 0) | (digits > 7)).any() or (fields[:, 11] != 0).any():
        return None
    return digits @ (8 ** np.arange(10, -1, -1, dtype=np.int64))


def _walk_offsets(buf: np.ndarray, per_sample: int, rows: int, where: str):
    starts = [[] for _ in range(per_sample)]
    sizes = [[] for _ in range(per_sample)]
    pos = 0
    for _ in range(rows):
        for j in range(per_sample):
            size = _header_size(buf[pos: pos + BLOCK]) if pos + BLOCK <= len(buf) else None
            if size is None:
                raise InputError(f"not a shardsmith WebDataset shard: no member header at byte {pos}", where)
            starts[j].append(pos + BLOCK)
            sizes[j].append(size)
            pos += BLOCK + -(-size // BLOCK) * BLOCK
    return [(np.asarray(s, dtype=np.int64), np.asarray(z, dtype=np.int64)) for s, z in zip(starts, sizes)]


def _header_size(h: np.ndarray) -> int | None:
    raw = bytes(h)
    if raw[257:262] != b"ustar" or raw[156:157] not in (b"0", b"\0"):
        return None
    try:
        return int(raw[124:136].rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        return None


def _check_member(buf, starts, m: Member, where: str) -> None:
    """The member names end in the expected extension (checked on the first and last samples)."""
    suffix = ("." + m.ext).encode()
    for s in (starts[:1].tolist() + starts[-1:].tolist()):
        name = bytes(buf[s - BLOCK: s - BLOCK + 100]).rstrip(b"\0")
        if not name.endswith(suffix):
            raise InputError(f"expected a '{m.ext}' member, found '{name.decode(errors='replace')}'", where)


def _parse_cls(buf, starts, sizes, where: str) -> np.ndarray:
    width = int(sizes.max()) if len(sizes) else 1
    digits = buf[starts[:, None] + np.arange(width)[None, :]]
    digits = np.where(np.arange(width)[None, :] < sizes[:, None], digits, 0)
    try:
        return np.array(digits.view(f"S{width}").ravel().astype(np.int64))
    except ValueError:
        raise InputError("a .cls member is not a decimal integer", where) from None


def _parse_npy(buf, starts, sizes, m: Member, where: str) -> dict[str, np.ndarray]:
    dtype = np.dtype(m.dtype)
    header = npy_header(dtype, len(m.columns))
    body = len(m.columns) * dtype.itemsize
    if len(sizes) and not (sizes == len(header) + body).all():
        raise InputError(f"'{m.ext}' members are not {len(m.columns)} x {dtype.name} arrays", where)
    if len(starts) and bytes(buf[starts[0]: starts[0] + len(header)]) != header:
        raise InputError(f"unexpected .npy header in the '{m.ext}' members", where)
    idx = (starts + len(header))[:, None] + np.arange(body)[None, :]
    values = buf[idx].view(dtype).reshape(len(starts), len(m.columns))
    return {c: np.ascontiguousarray(values[:, i]) for i, c in enumerate(m.columns)}
