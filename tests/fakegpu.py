"""An emulated GPU for machines without one: stand-ins for CuPy, pylibcudf and cuDF on host memory,
with every CUDA kernel run by its host build (shardsmith/kernels/hostcc.py).

It exists to run the GPU backend's own code (backends/gpu: buffer views, kernel arguments, the
lowerings, pinned staging, the executor's GPU path) in CI, where a mistake in that glue would
otherwise wait for a GPU machine. It models the parts of the libraries that code relies on: Arrow
layout columns (data, 32-bit validity words, an offset into both, strings as offsets + bytes,
booleans as one byte), cuDF's null propagation, and pointer-based views. It says nothing about the
real libraries' speed or their own bugs; the ``gpu`` tests on a real device do.

Enabled by ``SHARDSMITH_FAKE_GPU=1`` (tests/conftest.py installs it before anything imports CuPy).
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# ---------------------------------------------------------------------------------------------------
# CuPy: host arrays that answer .data.ptr, and the cuda namespace the backend uses.


class MemoryPointer:
    def __init__(self, mem, offset: int = 0, ptr: int | None = None):
        self.mem = mem
        self.ptr = (mem.ptr + offset) if ptr is None else ptr

    def __add__(self, k: int) -> MemoryPointer:
        return MemoryPointer(self.mem, 0, self.ptr + int(k))

    def copy_from_host_async(self, src, size: int, stream=None) -> None:
        ctypes.memmove(self.ptr, int(src), int(size))

    def copy_from_device_async(self, src, size: int, stream=None) -> None:
        ctypes.memmove(self.ptr, src.ptr, int(size))


class UnownedMemory:
    def __init__(self, ptr: int, size: int, owner, device_id: int = -1):
        self.ptr, self.size, self.owner = int(ptr), int(size), owner


class DevArray(np.ndarray):
    """A host array standing for a device array: ``.data.ptr`` is its address."""

    def __new__(cls, shape, dtype=float, memptr=None):
        if memptr is None:
            return np.empty(shape, dtype=dtype).view(cls)
        count = int(np.prod(shape))
        raw = (ctypes.c_ubyte * (count * np.dtype(dtype).itemsize)).from_address(memptr.ptr)
        arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).view(cls)
        arr._owner = memptr  # the memory's owner lives as long as any view of it
        return arr

    @property
    def data(self):
        return MemoryPointer(None, 0, self.ctypes.data)

    def get(self):
        return np.array(self)


def _wrap(x):
    if isinstance(x, np.ndarray) and not isinstance(x, DevArray):
        return x.view(DevArray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


def _host(x):
    return np.asarray(x) if isinstance(x, np.ndarray) else x


class _Stream:
    def synchronize(self):
        pass


class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Device:
    compute_capability = "90"

    def __init__(self, index: int = 0):
        pass

    def synchronize(self):
        pass


def _alloc_pinned_memory(n: int):
    base = ctypes.c_ubyte * n
    cls = type("PinnedMemory", (base,), {"ptr": property(lambda self: ctypes.addressof(self))})
    return cls()


def _make_cupy():
    cp = types.ModuleType("cupy")
    cp.__version__ = "emulated"
    cp.ndarray = DevArray
    cuda = types.SimpleNamespace(
        UnownedMemory=UnownedMemory, MemoryPointer=MemoryPointer, Event=_Event, Device=_Device,
        get_current_stream=lambda: _Stream(), alloc_pinned_memory=_alloc_pinned_memory,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {
            "name": b"emulated GPU (host memory)", "totalGlobalMem": 8 * 2**30}),
        get_elapsed_time=lambda a, b: 1.0)
    cp.cuda = cuda
    cp.asnumpy = lambda x: np.array(x)

    def __getattr__(name):
        target = getattr(np, name)
        if callable(target) and not isinstance(target, type):
            def fn(*args, **kwargs):
                args = tuple(_host(a) for a in args)
                kwargs = {k: _host(v) for k, v in kwargs.items()}
                return _wrap(target(*args, **kwargs))
            return fn
        return target

    cp.__getattr__ = __getattr__
    return cp


# ---------------------------------------------------------------------------------------------------
# pylibcudf: Arrow-layout columns over host buffers.

class TypeId(enum.IntEnum):
    EMPTY = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT32 = 9
    FLOAT64 = 10
    BOOL8 = 11
    TIMESTAMP_DAYS = 12
    TIMESTAMP_SECONDS = 13
    TIMESTAMP_MILLISECONDS = 14
    TIMESTAMP_MICROSECONDS = 15
    TIMESTAMP_NANOSECONDS = 16
    STRING = 23


_ARROW = {TypeId.INT8: pa.int8(), TypeId.INT16: pa.int16(), TypeId.INT32: pa.int32(), TypeId.INT64: pa.int64(),
          TypeId.UINT8: pa.uint8(), TypeId.UINT16: pa.uint16(), TypeId.UINT32: pa.uint32(),
          TypeId.UINT64: pa.uint64(), TypeId.FLOAT32: pa.float32(), TypeId.FLOAT64: pa.float64(),
          TypeId.BOOL8: pa.bool_(), TypeId.TIMESTAMP_SECONDS: pa.timestamp("s"),
          TypeId.TIMESTAMP_MILLISECONDS: pa.timestamp("ms"), TypeId.TIMESTAMP_MICROSECONDS: pa.timestamp("us"),
          TypeId.TIMESTAMP_NANOSECONDS: pa.timestamp("ns"), TypeId.STRING: pa.string(),
          TypeId.TIMESTAMP_DAYS: pa.date32()}
_WIDTH = {TypeId.INT8: 1, TypeId.INT16: 2, TypeId.INT32: 4, TypeId.INT64: 8, TypeId.UINT8: 1, TypeId.UINT16: 2,
          TypeId.UINT32: 4, TypeId.UINT64: 8, TypeId.FLOAT32: 4, TypeId.FLOAT64: 8, TypeId.BOOL8: 1,
          TypeId.TIMESTAMP_SECONDS: 8, TypeId.TIMESTAMP_MILLISECONDS: 8, TypeId.TIMESTAMP_MICROSECONDS: 8,
          TypeId.TIMESTAMP_NANOSECONDS: 8, TypeId.TIMESTAMP_DAYS: 4}


class DataType:
    def __init__(self, type_id, scale: int = 0):
        self._id = TypeId(type_id)

    def id(self):
        return self._id

    def to_arrow(self):
        return _ARROW[self._id]

    def __eq__(self, other):
        return isinstance(other, DataType) and other._id == self._id


class gpumemoryview:  # noqa: N801 - the real name
    def __init__(self, obj):
        self.obj = obj
        if isinstance(obj, np.ndarray):
            self.ptr, self.size = obj.ctypes.data, obj.nbytes
        else:  # a host buffer standing for device memory (an Arrow buffer)
            self.ptr, self.size = obj.address, obj.size


class Column:
    def __init__(self, data_type, size, data, mask, null_count, offset, children, validate=True):
        self._type, self._size, self._data, self._mask = data_type, int(size), data, mask
        self._null_count, self._offset, self._children = int(null_count), int(offset), list(children)

    def type(self):
        return self._type

    def size(self):
        return self._size

    def offset(self):
        return self._offset

    def null_count(self):
        return self._null_count

    def data(self):
        return self._data

    def null_mask(self):
        return self._mask

    def child(self, i):
        return self._children[i]

    def children(self):
        return list(self._children)

    def num_children(self):
        return len(self._children)


def _make_pylibcudf():
    plc = types.ModuleType("pylibcudf")
    plc.TypeId, plc.DataType, plc.Column, plc.gpumemoryview = TypeId, DataType, Column, gpumemoryview
    return plc


# ---------------------------------------------------------------------------------------------------
# cuDF: Series and DataFrames over those columns, converted through Arrow for everything else.

_TYPE_OF = {v: k for k, v in _ARROW.items()}


def _buffer(data: np.ndarray):
    return gpumemoryview(np.ascontiguousarray(data))


def column_from_arrow(arr) -> Column:
    """An Arrow array as a column with cuDF's layout (booleans one byte each; offset 0)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.large_binary()).cast(pa.binary()).view(pa.string()) if not pa.types.is_large_string(
            arr.type) else arr.cast(pa.string())
    if pa.types.is_date32(arr.type):
        arr = arr.cast(pa.timestamp("s"))
    n = len(arr)
    valid = np.asarray(arr.is_valid())
    words = np.zeros(max(16, -(-((n + 31) // 32) // 16) * 16), dtype=np.uint32)
    packed = np.packbits(valid.astype(np.uint8), bitorder="little")
    words.view(np.uint8)[: len(packed)] = packed
    nulls = arr.null_count
    mask = _buffer(words) if nulls else None
    if pa.types.is_string(arr.type):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].copy() if n \
            else np.zeros(1, np.int32)
        chars = np.frombuffer(arr.buffers()[2], dtype=np.uint8).copy() if arr.buffers()[2] is not None else \
            np.zeros(1, np.uint8)
        child = Column(DataType(TypeId.INT32), n + 1, _buffer(offsets), None, 0, 0, [])
        return Column(DataType(TypeId.STRING), n, _buffer(chars if len(chars) else np.zeros(1, np.uint8)), mask,
                      nulls, 0, [child])
    tid = _TYPE_OF[arr.type]
    if tid == TypeId.BOOL8:
        data = np.asarray(arr.fill_null(False), dtype=np.uint8)
    else:
        data = np.asarray(arr.cast(arr.type).fill_null(0).to_numpy(zero_copy_only=False))
        if pa.types.is_timestamp(arr.type):
            data = data.view(np.int64)
    return Column(DataType(tid), n, _buffer(data), mask, nulls, 0, [])


def column_to_arrow(col: Column) -> pa.Array:
    """The Arrow array a column stands for (a copy of its rows)."""
    n, off, tid = col.size(), col.offset(), col.type().id()
    valid = None
    if col.null_mask() is not None and col.null_count():
        bits = np.arange(off, off + n)
        words = _read(col.null_mask(), np.uint32, (off + n + 31) // 32 + 1)
        valid = ((words[bits >> 5] >> (bits & 31).astype(np.uint32)) & 1).astype(bool)
    mask = None if valid is None else ~valid
    if tid == TypeId.STRING:
        if col.num_children() == 0:
            return pa.array([None if mask is not None and mask[i] else "" for i in range(n)], pa.string())
        oc = col.child(0)
        odt = np.int32 if oc.type().id() == TypeId.INT32 else np.int64
        offsets = _read(oc.data(), odt, oc.offset() + off + n + 1)[oc.offset() + off:]
        chars = _read(col.data(), np.uint8, int(offsets[-1])) if n else np.zeros(0, np.uint8)
        base = int(offsets[0]) if n else 0
        arr = pa.StringArray.from_buffers(n, pa.py_buffer((offsets - base).astype(np.int32).tobytes()),
                                          pa.py_buffer(chars[base:].tobytes()))
        return pa.array(arr.to_pylist(), pa.string(), mask=mask) if mask is not None else arr
    data = _read(col.data(), np.dtype(_DTYPE[tid]), off + n)[off:] if n else np.zeros(0, _DTYPE[tid])
    if tid == TypeId.BOOL8:
        return pa.array(data != 0, pa.bool_(), mask=mask)
    if pa.types.is_timestamp(_ARROW[tid]):
        return pa.array(data.view(np.int64), pa.int64(), mask=mask).cast(_ARROW[tid])
    return pa.array(data.copy(), _ARROW[tid], mask=mask)


_DTYPE = {TypeId.INT8: np.int8, TypeId.INT16: np.int16, TypeId.INT32: np.int32, TypeId.INT64: np.int64,
          TypeId.UINT8: np.uint8, TypeId.UINT16: np.uint16, TypeId.UINT32: np.uint32, TypeId.UINT64: np.uint64,
          TypeId.FLOAT32: np.float32, TypeId.FLOAT64: np.float64, TypeId.BOOL8: np.uint8,
          TypeId.TIMESTAMP_SECONDS: np.int64, TypeId.TIMESTAMP_MILLISECONDS: np.int64,
          TypeId.TIMESTAMP_MICROSECONDS: np.int64, TypeId.TIMESTAMP_NANOSECONDS: np.int64,
          TypeId.TIMESTAMP_DAYS: np.int32}


def _read(span, dtype, count: int) -> np.ndarray:
    if span is None or count == 0:
        return np.zeros(max(count, 0), dtype=dtype)
    count = min(count, span.size // np.dtype(dtype).itemsize)
    raw = (ctypes.c_ubyte * (count * np.dtype(dtype).itemsize)).from_address(span.ptr)
    return np.frombuffer(raw, dtype=dtype, count=count).copy()


class CategoricalDtype:
    pass


class _ILoc:
    def __init__(self, obj):
        self.obj = obj

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.obj._slice(key)
        return self.obj._scalar(int(key))


class Series:
    def __init__(self, col: Column, name=None):
        self._col, self.name = col, name

    @classmethod
    def from_pylibcudf(cls, col, metadata=None):
        if col.type().id() == TypeId.TIMESTAMP_DAYS:  # cuDF has no day timestamps: it makes them seconds
            col = column_from_arrow(column_to_arrow(col))  # (date32 -> timestamp[s], as cuDF does; seen on an H200)
        return cls(col)

    @classmethod
    def from_arrow(cls, arr, name=None):
        return cls(column_from_arrow(arr), name)

    def to_pylibcudf(self):
        return self._col, {"name": self.name}

    def to_arrow(self):
        return column_to_arrow(self._col)

    def to_numpy(self):
        return self.to_arrow().to_numpy(zero_copy_only=False)

    def to_cupy(self, na_value=None):
        arr = self.to_arrow()
        if arr.null_count and na_value is not None:
            arr = pc.fill_null(arr, pa.scalar(na_value, arr.type))
        return _wrap(np.array(arr.to_numpy(zero_copy_only=False)))  # a device array of its own, writable

    def __len__(self):
        return self._col.size()

    @property
    def null_count(self):
        return self._col.null_count()

    @property
    def dtype(self):
        t = self._col.type().to_arrow()
        return np.dtype(object) if pa.types.is_string(t) else np.dtype(t.to_pandas_dtype())

    @property
    def iloc(self):
        return _ILoc(self)

    def _slice(self, key: slice):
        start, stop, _ = key.indices(len(self))
        c = self._col
        return Series(Column(c.type(), max(0, stop - start), c.data(), c.null_mask(),
                             _count_nulls(c, start, stop), c.offset() + start, c.children()), self.name)

    def _scalar(self, i: int):
        v = self.to_arrow()[i].as_py()
        t = self._col.type().id()
        return np.dtype(_DTYPE[t]).type(v) if t in _DTYPE and t != TypeId.BOOL8 and v is not None else v

    def astype(self, dtype):
        target = pa.bool_() if np.dtype(dtype) == np.bool_ else pa.from_numpy_dtype(np.dtype(dtype))
        return Series.from_arrow(pc.cast(self.to_arrow(), target, safe=False), self.name)

    def fillna(self, value):
        return Series.from_arrow(pc.fill_null(self.to_arrow(), value), self.name)

    def take(self, indices):
        return Series.from_arrow(self.to_arrow().take(pa.array(np.asarray(indices))), self.name)

    def reset_index(self, drop=False):
        return self

    def mask(self, cond):
        """Null where ``cond`` is true (cuDF's Series.mask with no ``other``)."""
        c = cond.to_arrow() if isinstance(cond, Series) else pa.array(np.asarray(cond, dtype=bool))
        arr = self.to_arrow()
        return Series.from_arrow(pc.if_else(c, pa.nulls(len(arr), arr.type), arr), self.name)

    def isin(self, values):
        return Series.from_arrow(pc.is_in(self.to_arrow(), value_set=pa.array(list(values))).fill_null(False))

    def _cmp(self, other, fn):
        right = other.to_arrow() if isinstance(other, Series) else pa.scalar(other)
        return Series.from_arrow(fn(self.to_arrow(), right))

    def __eq__(self, other):
        return self._cmp(other, pc.equal)

    def __ne__(self, other):
        return self._cmp(other, pc.not_equal)

    def __lt__(self, other):
        return self._cmp(other, pc.less)

    def __le__(self, other):
        return self._cmp(other, pc.less_equal)

    def __gt__(self, other):
        return self._cmp(other, pc.greater)

    def __ge__(self, other):
        return self._cmp(other, pc.greater_equal)

    __hash__ = None


def _count_nulls(c: Column, start: int, stop: int) -> int:
    if c.null_mask() is None or not c.null_count():
        return 0
    sub = Column(c.type(), stop - start, c.data(), c.null_mask(), 1, c.offset() + start, c.children())
    return column_to_arrow(sub).null_count


class _GroupBy:
    def __init__(self, series):
        self.series = series

    def size(self):
        vc = pc.value_counts(self.series.to_arrow().drop_null())
        out = Series.from_arrow(vc.field("counts"))
        out.index = types.SimpleNamespace(to_arrow=lambda: vc.field("values"))
        return out


class _FrameGroupBy:
    """groupby(keys).agg({column: sum | min | max}).reset_index(): the key columns, then the
    aggregates, in an order of the groups' own (Arrow's, reversed), as cuDF gives no order either."""

    def __init__(self, frame, keys):
        self.frame, self.keys = frame, keys

    def agg(self, aggs: dict):
        table = self.frame.to_arrow()
        out = table.group_by(self.keys, use_threads=False).aggregate([(c, fn) for c, fn in aggs.items()])
        out = out.rename_columns([{f"{c}_{fn}": c for c, fn in aggs.items()}.get(n, n) for n in out.column_names])
        out = out.select([*self.keys, *aggs])
        return DataFrame.from_arrow(out.take(pa.array(np.arange(out.num_rows)[::-1].copy())))


class DataFrame:
    def __init__(self, data=None):
        self._cols: dict = {}
        for name, s in (data or {}).items():
            self[name] = s

    @classmethod
    def from_arrow(cls, table: pa.Table):
        return cls({name: Series.from_arrow(table[name], name) for name in table.column_names})

    @property
    def columns(self):
        return list(self._cols)

    def __len__(self):
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def __getitem__(self, key):
        if isinstance(key, str):
            s = self._cols[key]
            return Series(s._col, key)
        if isinstance(key, list):
            return DataFrame({k: self._cols[k] for k in key})
        mask = key.to_arrow() if isinstance(key, Series) else pa.array(np.asarray(key, dtype=bool))
        assert len(mask) == len(self), "a boolean mask of another length"
        return DataFrame({k: Series.from_arrow(s.to_arrow().filter(mask), k) for k, s in self._cols.items()})

    def __setitem__(self, name, series):
        if self._cols:
            assert len(series) == len(self), f"column {name}: {len(series)} rows, frame {len(self)}"
        self._cols[name] = Series(series._col, name)

    def reset_index(self, drop=False):
        return self

    @property
    def iloc(self):
        return _ILoc(self)

    def _slice(self, key):
        return DataFrame({k: s._slice(key) for k, s in self._cols.items()})

    def astype(self, dtypes: dict):
        out = DataFrame(dict(self._cols))
        for k, d in dtypes.items():
            out[k] = self._cols[k].astype(d)
        return out

    def rename(self, columns: dict):
        return DataFrame({columns.get(k, k): s for k, s in self._cols.items()})

    def drop(self, columns):
        return DataFrame({k: s for k, s in self._cols.items() if k not in set(columns)})

    def to_arrow(self, preserve_index=None):
        return pa.table({k: s.to_arrow() for k, s in self._cols.items()})

    def merge(self, right, on, how="inner"):
        """A join on ``on``; its rows come out in an order of their own (reversed here), as cuDF's
        do: callers must not rely on the input order."""
        joined = self.to_arrow().join(right.to_arrow(), keys=list(on),
                                      join_type={"inner": "inner", "left": "left outer"}[how], use_threads=False)
        joined = joined.take(pa.array(np.arange(joined.num_rows)[::-1].copy()))
        return DataFrame.from_arrow(joined)

    def groupby(self, key, dropna=True, sort=False):
        if isinstance(key, (list, tuple)):
            return _FrameGroupBy(self, list(key))
        return _GroupBy(self._cols[key])

    def to_parquet(self, path, compression="snappy", index=None, statistics="ROWGROUP", row_group_size_rows=None,
                   output_as_binary=None, force_nullable_schema=False, **kwargs):
        """cuDF's Parquet writer, emulated through pyarrow, but with encoding choices of its own (data
        pages v2, no Arrow schema in the footer, its default row group size) so that, as with the real
        one, the file's bytes differ from the arrow writer's while the values do not. As the real one
        (seen on an H200), a column without nulls is written ``not null`` unless
        ``force_nullable_schema``."""
        unknown = set(kwargs) - set(TO_PARQUET_PARAMETERS)
        if unknown:
            raise TypeError(f"to_parquet() got unexpected keyword arguments {sorted(unknown)}")
        codec = None if compression is None else str(compression).lower()
        if codec not in (None, "snappy", "zstd", "lz4"):
            raise ValueError(f"unsupported compression {compression!r}")
        table = self.to_arrow()
        for name in output_as_binary or ():
            table = table.set_column(table.column_names.index(name), name, table[name].cast(pa.binary()))
        if not force_nullable_schema:
            table = table.cast(pa.schema([f.with_nullable(table[f.name].null_count > 0) for f in table.schema]))
        pq.write_table(table, path, compression=codec or "none", row_group_size=row_group_size_rows or 1_000_000,
                       write_statistics=statistics != "NONE", data_page_version="2.0", store_schema=False)


# cuDF 26.08's DataFrame.to_parquet parameters (the emulation refuses any other).
TO_PARQUET_PARAMETERS = (
    "engine", "compression", "index", "partition_cols", "partition_file_name", "partition_offsets", "statistics",
    "metadata_file_path", "int96_timestamps", "row_group_size_bytes", "row_group_size_rows", "max_page_size_bytes",
    "max_page_size_rows", "storage_options", "return_metadata", "use_dictionary", "header_version",
    "skip_compression", "column_encoding", "column_type_length", "output_as_binary", "force_nullable_schema")


def concat(frames, ignore_index=False):
    tables = [f.to_arrow() for f in frames]
    return DataFrame.from_arrow(pa.concat_tables(tables))


def read_parquet(path, columns=None, row_groups=None, use_pandas_metadata=True):
    table = pq.ParquetFile(path).read_row_groups(row_groups[0], columns=columns)
    return DataFrame.from_arrow(table)


def _make_cudf():
    cudf = types.ModuleType("cudf")
    cudf.__version__ = "emulated"
    cudf.Series, cudf.DataFrame, cudf.CategoricalDtype = Series, DataFrame, CategoricalDtype
    cudf.concat, cudf.read_parquet = concat, read_parquet
    return cudf


# ---------------------------------------------------------------------------------------------------
# Kernels: each launch runs the source's host build.

class HostKernel:
    def __init__(self, src, entry):
        from shardsmith.kernels import hostcc

        self.fn = getattr(hostcc.build(src), entry)
        self.fused = entry.startswith("ss_fused_")

    def __call__(self, grid, block, args):
        converted = []
        for a in args:
            if isinstance(a, np.ndarray):
                converted.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.uint64):
                converted.append(ctypes.c_ulonglong(int(a)))
            elif isinstance(a, np.int64):
                converted.append(ctypes.c_longlong(int(a)))
            else:
                raise TypeError(f"kernel argument of type {type(a).__name__}")
        if self.fused:  # the host build loops over the group's columns itself (the GPU: grid y)
            converted.append(ctypes.c_int(grid[1]))
        self.fn(*converted)


# dask-cuda: LocalCUDACluster as a LocalCluster of threads (the emulation lives in this process),
# refusing any parameter that dask-cuda 26.10's LocalCUDACluster does not take.
CUDA_CLUSTER_PARAMETERS = (
    "CUDA_VISIBLE_DEVICES", "n_workers", "threads_per_worker", "memory_limit", "device_memory_limit",
    "enable_cudf_spill", "cudf_spill_stats", "local_directory", "protocol", "enable_tcp_over_ucx",
    "enable_infiniband", "enable_nvlink", "enable_rdmacm", "rmm_pool_size", "rmm_maximum_pool_size",
    "rmm_managed_memory", "rmm_async", "rmm_allocator_external_lib_list", "rmm_release_threshold",
    "rmm_log_directory", "rmm_track_allocations", "log_spilling", "pre_import",
    "dashboard_address", "silence_logs", "scheduler_kwargs", "host")  # the last four go through to LocalCluster
# (host is not passed on: the emulation's workers are threads, which talk in memory, not over a socket)


def LocalCUDACluster(**kwargs):  # noqa: N802 - the real name
    unknown = set(kwargs) - set(CUDA_CLUSTER_PARAMETERS)
    if unknown:
        raise TypeError(f"LocalCUDACluster() got unexpected keyword arguments {sorted(unknown)}")
    from distributed import LocalCluster

    return LocalCluster(n_workers=kwargs.get("n_workers") or 1, threads_per_worker=kwargs.get("threads_per_worker", 1),
                        processes=False, memory_limit=kwargs.get("memory_limit", "auto"),
                        dashboard_address=kwargs.get("dashboard_address"), silence_logs=kwargs.get("silence_logs"))


def install() -> None:
    """Put the emulated modules in sys.modules and route kernel launches to the host builds."""
    sys.modules["cupy"] = _make_cupy()
    sys.modules["pylibcudf"] = _make_pylibcudf()
    sys.modules["cudf"] = _make_cudf()
    dask_cuda = types.ModuleType("dask_cuda")
    dask_cuda.LocalCUDACluster, dask_cuda.__version__ = LocalCUDACluster, "emulated"
    sys.modules["dask_cuda"] = dask_cuda
    from shardsmith.kernels import gpu

    gpu.function = lambda src, entry: HostKernel(src, entry)
