"""The graph IR: dtypes (one table), schemas, expression trees and graph nodes. The bottom floor
of the package: it imports nothing of shardsmith but its errors.

>>> Schema((Column("I1", "float32"),)).names
('I1',)
"""

from shardsmith.ir.dtypes import (
    DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    NUMERIC_DTYPES,
    float_result,
    is_float,
    is_numeric,
)
from shardsmith.ir.graph import (
    Chain,
    ColumnGroup,
    FileInfo,
    Fused,
    Graph,
    OpSpec,
    SideTable,
    Sink,
    Source,
    Split,
    Step,
)
from shardsmith.ir.schema import FILE_COL, HIDDEN, ROLES, ROW_COL, SPLIT_COL, Column, Schema

__all__ = ["DTYPES", "FLOAT_DTYPES", "INT_DTYPES", "NUMERIC_DTYPES", "float_result", "is_float", "is_numeric",
           "Chain", "ColumnGroup", "FileInfo", "Fused", "Graph", "OpSpec", "SideTable", "Sink", "Source", "Split",
           "Step",
           "FILE_COL", "HIDDEN", "ROLES", "ROW_COL", "SPLIT_COL", "Column", "Schema"]
