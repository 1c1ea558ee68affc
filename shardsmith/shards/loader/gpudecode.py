"""``assemble="cudf"``: blocks decoded on the GPU by cuDF's Parquet reader instead of pyarrow on the
host, then packed, permuted and cut into batches on the device as the device path does (``gather``).
What crosses the bus is the compressed row groups, not the decoded columns; the host only reads
footers. Parquet shards only, in the consuming process (DataLoader workers cannot use the GPU).

This module is the loader's one import of cuDF (an optional dependency: the ``gpu-cu12`` and
``gpu-cu13`` extras). Values are the host path's: the same columns cast to the same dtypes, float
nulls as NaN, integer nulls refused naming the column and shard.
"""

from __future__ import annotations

import numpy as np
import torch

from shardsmith.errors import InputError, ShardsmithError
from shardsmith.shards import order as od
from shardsmith.shards.loader.gather import DeviceBlock, permute, scheduled_batches
from shardsmith.shards.loader.layout import BatchSpec


def cudf_module():
    """cuDF, or a one-line error naming ``assemble``."""
    try:
        import cudf  # lazy: optional GPU dependency, imported only for assemble="cudf"
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install raises more than ImportError
        raise ShardsmithError(f"'cudf' needs cuDF, which cannot be imported here ({type(exc).__name__}: {exc}); "
                              "install shardsmith[gpu-cu13] (or gpu-cu12), or use 'device'", "assemble") from None
    return cudf


def _unit_columns(cudf, source, unit: od.Unit, names: list[str], device: torch.device) -> dict:
    """A unit's columns decoded by cuDF, as tensors on ``device`` (views of cuDF's memory)."""
    where = source.location(unit.shard)
    try:
        data, groups, skip = source.parquet_span(unit)
        frame = cudf.read_parquet(data, columns=names, row_groups=[groups])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - cuDF raises its own errors for unreadable files
        raise InputError(f"cannot read shard: {exc}", where) from None
    frame = frame.iloc[skip: skip + unit.rows]
    return {name: torch.as_tensor(_values(frame[name], name, where), device=device) for name in names}


def _values(series, name: str, where: str):
    """A column as a device array: float nulls as NaN, integer nulls refused (as the host path)."""
    if series.null_count:
        if np.dtype(series.dtype).kind != "f":
            raise InputError(f"column '{name}' has {series.null_count} null(s), which a tensor cannot hold; fill "
                             "them in the pipeline (fill_missing)", where)
        return series.to_cupy(na_value=np.nan)
    return series.to_cupy()


def decoded_block(cudf, source, plan: od.EpochPlan, spec: BatchSpec, lane, j: int) -> DeviceBlock:
    """Block ``j`` decoded by cuDF, packed and permuted on the lane. cuDF runs on its own stream, so
    the lane starts after it has finished, and cuDF's memory is let go only once the lane's work
    that reads it has ended."""
    n = plan.block_rows(j)
    parts = [_unit_columns(cudf, source, u, spec.names, lane.device) for u in plan.blocks[j]]
    lane.settle()
    out = lane.alloc(max(spec.nbytes(n), 1))

    def work():
        raw = lane.alloc(out.numel()) if plan.shuffle else out
        for dt, mat in spec.matrices(raw, n).items():
            names = dict(spec.groups)[dt]
            for i, name in enumerate(names):
                at = 0
                for p in parts:
                    mat[i, at: at + len(p[name])].copy_(p[name])  # the cast the host path makes
                    at += len(p[name])
        if plan.shuffle:
            permute(spec, plan, j, raw, out)

    token = lane.submit(work)
    lane.wait(token)
    return DeviceBlock(j, spec.matrices(out, n), token, out)


def cudf_batches(plan: od.EpochPlan, spec: BatchSpec, source, lane, ids: np.ndarray, readahead: bool):
    """The batches ``ids``, their blocks decoded by cuDF one block ahead on a thread."""
    cudf = cudf_module()
    yield from scheduled_batches(plan, spec, lane, ids, lambda j: decoded_block(cudf, source, plan, spec, lane, j),
                                 1 if readahead else 0)
