"""Two datasets compared by content (``shardsmith diff``): the manifests' content digests first
(kernels/digest.py), then the values of only the shards whose digests differ, to name the first
split, shard, column and row that differ.

Two datasets are *the same* when they have the same splits in the same order, the same schema
(column names, dtypes and order), the same shard boundaries, and equal shard digests, whatever
engine or writer made their files. Floats may be compared with a tolerance ``(rtol, atol)``: a
float column whose digests differ is then read back, and it counts as the same when every value
agrees as ``|a - b| <= atol + rtol * |b|`` (``b`` is B's value), nulls and NaNs in the same rows
and infinities equal. Every other column (integers, ids, hashes, strings, booleans, dates) must be
bit for bit the same. The tolerance is none between two datasets of one engine in exact mode,
:data:`ENGINE_TOLERANCE` between the CPU and GPU engines (CUDA's and NumPy's ``log1p`` may differ
in the last bit: docs/gpu.md), and codegen's ``FAST_TOLERANCE`` when either was made with
``engine.float_mode: fast``.

Only Parquet shard files are read to locate a row; a dataset written only as WebDataset is
compared by its digests alone.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardsmith.errors import InputError
from shardsmith.ir.dtypes import is_float
from shardsmith.kernels.codegen import FAST_TOLERANCE

ENGINE_TOLERANCE = (1e-6, 1e-7)  # GPU (exact mode) against CPU: floats within 1e-6 relative
EXACT = (0.0, 0.0)


@dataclass
class Difference:
    """The first difference found in the rows: where, and the two values."""

    split: str
    shard: int
    path: str  # A's shard file, relative to A's directory
    column: str
    row: int  # in the shard
    split_row: int  # in the split
    a: object
    b: object

    def line(self) -> str:
        return (f"different: split {self.split}, shard {self.shard} ({self.path}), column {self.column}, row "
                f"{self.row} (row {self.split_row:,} of the split): A {self.a!r}, B {self.b!r}")


@dataclass
class Report:
    same: bool = True
    lines: list[str] = field(default_factory=list)  # what differs, first difference first
    first: Difference | None = None
    shards: int = 0  # shards compared by digest
    differing: int = 0  # shards whose digests differ (tolerated floats included)
    tolerated: list[str] = field(default_factory=list)  # "split shard i column c": floats within tolerance
    notes: list[str] = field(default_factory=list)

    def differ(self, line: str) -> None:
        self.same = False
        self.lines.append(line)


def default_tolerance(a: dict, b: dict) -> tuple[float, float]:
    """The documented tolerance for the floats of two datasets, by how they were made."""
    modes = {m.get("engine", {}).get("float_mode", "exact") for m in (a, b)}
    if "fast" in modes:
        return FAST_TOLERANCE
    if a.get("engine", {}).get("kind") != b.get("engine", {}).get("kind"):
        return ENGINE_TOLERANCE
    return EXACT


def compare(a: dict, b: dict, tolerance: tuple[float, float] | None = None) -> Report:
    """Compare two manifests (read_manifest's, so that they know their directories)."""
    for m in (a, b):
        if "content" not in m:
            raise InputError("the manifest has no content digests (written by a shardsmith before them): "
                             "compile it again", os.path.join(m["_dir"], "manifest.json"))
    tol = default_tolerance(a, b) if tolerance is None else tolerance
    report = Report()
    _structure(a, b, report)
    if report.same:
        for name in a["splits"]:
            _split(a, b, name, tol, report)
    _conclude(a, b, tol, report)
    return report


def _structure(a: dict, b: dict, report: Report) -> None:
    """Splits and schema: what must agree before shards can be compared."""
    sa, sb = list(a["splits"]), list(b["splits"])
    if sa != sb:
        report.differ(f"different: splits: A has {', '.join(sa) or 'none'}; B has {', '.join(sb) or 'none'}")
    ca = [(c["name"], c["dtype"]) for c in a["schema"]]
    cb = [(c["name"], c["dtype"]) for c in b["schema"]]
    if ca != cb:
        report.differ(f"different: schema: {schema_difference(ca, cb)}")


def schema_difference(ca: list[tuple[str, str]], cb: list[tuple[str, str]]) -> str:
    """What differs between two schemas, in words."""
    da, db = dict(ca), dict(cb)
    parts = [f"column {n} only in A" for n, _ in ca if n not in db]
    parts += [f"column {n} only in B" for n, _ in cb if n not in da]
    parts += [f"column {n} is {da[n]} in A, {db[n]} in B" for n, _ in ca if n in db and da[n] != db[n]]
    if not parts:
        parts = [f"the columns are in another order (A: {', '.join(n for n, _ in ca)}; B: "
                 f"{', '.join(n for n, _ in cb)})"]
    return "; ".join(parts)


def shards_of(split: dict) -> list[dict]:
    """A split's shards in order, each with its rows, content and files by format."""
    out: dict[str, dict] = {}
    for entry in split["shards"]:
        head, tail = posixpath.split(entry["path"])
        shard = out.setdefault(posixpath.join(head, tail.split(".", 1)[0]),
                               {"rows": entry["rows"], "content": entry["content"], "files": {}})
        shard["files"][entry["format"]] = entry
    return list(out.values())


def _split(a: dict, b: dict, name: str, tol, report: Report) -> None:
    xa, xb = shards_of(a["splits"][name]), shards_of(b["splits"][name])
    rows_a, rows_b = [s["rows"] for s in xa], [s["rows"] for s in xb]
    if rows_a != rows_b:
        i = next((k for k, (p, q) in enumerate(zip(rows_a, rows_b)) if p != q), min(len(rows_a), len(rows_b)))
        report.differ(f"different: split {name}: shard boundaries differ from shard {i}: A has {sum(rows_a):,} rows "
                      f"in {len(xa)} shards, B {sum(rows_b):,} rows in {len(xb)}")
        return
    offset = 0
    for i, (sa, sb) in enumerate(zip(xa, xb)):
        report.shards += 1
        if sa["content"]["digest"] != sb["content"]["digest"]:
            report.differing += 1
            if report.first is None:
                _shard(a, b, name, i, offset, sa, sb, tol, report)
        offset += sa["rows"]


def _shard(a, b, name: str, index: int, offset: int, sa: dict, sb: dict, tol, report: Report) -> None:
    """Read the columns whose digests differ (only those, only here) to find the first row."""
    ca, cb = sa["content"]["columns"], sb["content"]["columns"]
    dtypes = {c["name"]: c["dtype"] for c in a["schema"]}
    cols = [c for c in ca if ca[c] != cb.get(c)]
    pa_, pb = sa["files"].get("parquet"), sb["files"].get("parquet")
    if pa_ is None or pb is None:
        report.differ(f"different: split {name}, shard {index}: columns {', '.join(cols)} differ (no Parquet file "
                      "to locate the row)")
        return
    for col in cols:
        fa, fb = (_read_column(m, f, col) for m, f in ((a, pa_), (b, pb)))
        floats = is_float(dtypes[col]) and tol != EXACT
        row = first_difference(fa, fb, dtypes[col], tol if floats else EXACT)
        if row is None and floats:
            report.tolerated.append(f"{name} shard {index} column {col}")
            continue
        if row is None:  # digests differ, values agree: a file does not hold what its manifest says
            report.differ(f"different: split {name}, shard {index}, column {col}: the digests differ but the files "
                          "read back alike; check both with 'shardsmith verify'")
            return
        report.first = Difference(name, index, pa_["path"], col, row, offset + row, _value(fa, row), _value(fb, row))
        report.differ(report.first.line())
        return


def _read_column(manifest: dict, entry: dict, col: str) -> pa.Array:
    path = os.path.join(manifest["_dir"], entry["path"])
    try:
        return pq.read_table(path, columns=[col])[col].combine_chunks()
    except FileNotFoundError:
        raise InputError("shard file missing", path) from None
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise InputError(f"not a readable shard ({type(exc).__name__}: {str(exc).splitlines()[0]})", path) from None


def _value(arr: pa.Array, row: int):
    return arr[row].as_py() if row < len(arr) else "<no row>"


def first_difference(a: pa.Array, b: pa.Array, dtype: str, tol=EXACT) -> int | None:
    """The first row where two columns differ (floats: beyond ``tol``; exactly: by their bits,
    every NaN alike); None when they agree."""
    n = min(len(a), len(b))
    va = np.asarray(a.is_valid()) if a.null_count else np.ones(len(a), bool)
    vb = np.asarray(b.is_valid()) if b.null_count else np.ones(len(b), bool)
    diff = va[:n] != vb[:n]
    both = va[:n] & vb[:n]
    if is_float(dtype):
        x = a.slice(0, n).to_numpy(zero_copy_only=False).astype(np.float64)
        y = b.slice(0, n).to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(invalid="ignore"):
            if tol == EXACT:
                same = ((x == y) & (np.signbit(x) == np.signbit(y))) | (np.isnan(x) & np.isnan(y))
            else:
                same = np.isclose(x, y, rtol=tol[0], atol=tol[1], equal_nan=True)
        diff |= both & ~same
    else:
        ne = pc.not_equal(a.slice(0, n), b.slice(0, n)).fill_null(False)
        diff |= both & np.asarray(ne)
    idx = np.flatnonzero(diff)
    if len(idx):
        return int(idx[0])
    return n if len(a) != len(b) else None


def _conclude(a: dict, b: dict, tol, report: Report) -> None:
    """The summary lines: how many shards differ, the tolerance used, who made each dataset."""
    if report.first is not None and report.differing > 1:
        report.lines.append(f"  {report.differing - 1} more of {report.shards} shard(s) have other content digests "
                            "(not read)")
    if report.tolerated:
        report.notes.append(f"floats: {len(report.tolerated)} column(s) of shards differ in bits but agree within "
                            f"rtol={tol[0]:g}, atol={tol[1]:g} (first: {report.tolerated[0]})")
    if report.same:
        exact = "identical content" if not report.tolerated else "the same content (floats within tolerance)"
        report.lines.append(f"same: {exact}, {report.shards} shard(s) in {len(a['splits'])} split(s); dataset digest "
                            f"A {a['content']['digest']}, B {b['content']['digest']}")
    report.notes.append(f"A: {made_by(a)}; B: {made_by(b)}")


def made_by(m: dict) -> str:
    """The engine, float mode and Parquet writer(s) that made a dataset."""
    engine = m.get("engine", {})
    writers = sorted({e.get("writer", "arrow") for s in m["splits"].values() for e in s["shards"]
                      if e["format"] == "parquet"})
    mode = engine.get("float_mode", "exact")
    return (f"{engine.get('kind', '?')} engine" + (f", float_mode {mode}" if mode != "exact" else "")
            + (f", written by {'/'.join(writers)}" if writers else ""))
