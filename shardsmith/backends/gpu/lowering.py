"""GPU lowerings: the same table as backends/cpu/lowering.py, one function per op family.

This module imports without a GPU (so that plans are checked, and `shardsmith plan` explains a GPU
compile, anywhere); the bodies live in impl.py, imported when a lowering first runs on a worker.
An op missing here fails at plan time naming it (executor.check_lowerings): there is no silent CPU
fallback. The one step that runs on the host, casts from or to strings or timestamps, says so
through its note, which `shardsmith plan` prints.
"""

from __future__ import annotations

from shardsmith.backends.base import lowerings_table
from shardsmith.ir import Fused
from shardsmith.ir.expr_types import host_string_functions
from shardsmith.kernels.casts import NUMERIC
from shardsmith.ops.categorical import Categorify, HashBucket, HashedCross
from shardsmith.ops.derive import Derive
from shardsmith.ops.joins import Join
from shardsmith.ops.keyed import GroupbyFeatures, TargetEncode
from shardsmith.ops.lag import Lag
from shardsmith.ops.numeric import Cast
from shardsmith.ops.rows import Drop, Filter, Rename

LOWERINGS = lowerings_table("gpu")


def _impl():
    from shardsmith.backends.gpu import impl  # lazy: it imports cuDF and CuPy; this table must not

    return impl


@LOWERINGS.register(Fused)
def run_fused(be, node, frame, states, ctx):
    """Each column group of the node as one generated CUDA kernel (kernels/codegen.py)."""
    return _impl().fused(be, node, frame, states, ctx.float_mode)


def _host_strings_note(op, schema_in) -> str | None:
    """What part of an expression runs on the host: its string functions (and string-valued
    if_else / coalesce)."""
    used = host_string_functions(op.node if hasattr(op, "node") else op.predicate, schema_in)
    if not used:
        return None
    return (f"runs {', '.join(f'{f}()' for f in used)} on the host (pyarrow), so that the CPU engine's Unicode "
            "rules define them")


@LOWERINGS.register(Filter, note=_host_strings_note)
def run_filter(be, step, frame, state, ctx):
    return _impl().filter_rows(be, step, frame)


@LOWERINGS.register(Derive, note=_host_strings_note)
def run_derive(be, step, frame, state, ctx):
    return _impl().derive(be, step, frame)


@LOWERINGS.register(Join)
def run_join(be, step, frame, state, ctx):
    """Keys matched by a cuDF merge, scattered back so that rows keep their input order."""
    return _impl().join(be, step, frame, state)


@LOWERINGS.register(TargetEncode)
def run_target_encode(be, step, frame, state, ctx):
    return _impl().target_encode(be, step, frame, state, ctx)


@LOWERINGS.register(GroupbyFeatures)
def run_groupby_features(be, step, frame, state, ctx):
    return _impl().groupby_features(be, step, frame, state)


@LOWERINGS.register(Lag)
def run_lag(be, step, frame, state, ctx):
    return _impl().lag(be, step, frame, state)


@LOWERINGS.register(Rename)
def run_rename(be, step, frame, state, ctx):
    return _impl().rename(frame, step.op.mapping)


@LOWERINGS.register(Drop)
def run_drop(be, step, frame, state, ctx):
    return _impl().drop(frame, step.op.cols)


@LOWERINGS.register(Categorify)
def run_categorify(be, step, frame, state, ctx):
    return _impl().categorify(be, step, frame, state)


@LOWERINGS.register(HashBucket)
def run_hash_bucket(be, step, frame, state, ctx):
    return _impl().hash_bucket(be, step, frame)


@LOWERINGS.register(HashedCross)
def run_hashed_cross(be, step, frame, state, ctx):
    return _impl().hashed_cross(be, step, frame)


def _cast_note(op, schema_in) -> str | None:
    """Which columns of a cast run on the host, and why."""
    device = (*NUMERIC, "date")  # a date is int32 days on the GPU: cast as an integer there
    host = [c for c in op.cols if c in schema_in and not (schema_in[c].dtype in device and op.dtype in NUMERIC)]
    if not host:
        return None
    return (f"runs on the host (pyarrow) for {', '.join(host)}: casts from or to strings or timestamps "
            "keep Arrow's exact parsing and formatting")


@LOWERINGS.register(Cast, note=_cast_note)
def run_cast(be, step, frame, state, ctx):
    return _impl().cast(be, step, frame, ctx)
