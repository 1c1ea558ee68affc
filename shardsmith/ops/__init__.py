"""The operator library: one module per family, every op registered by name.

>>> sorted(registered_ops())[:3]
['bucketize', 'cast', 'categorify']
"""

from shardsmith.ops import categorical, derive, joins, keyed, lag, numeric, rows  # noqa: F401  (registers ops)
from shardsmith.ops.base import ColumnwiseOp, ElementwiseOp, Op, get_op, register_op, registered_ops

__all__ = ["Op", "ColumnwiseOp", "ElementwiseOp", "register_op", "registered_ops", "get_op"]
