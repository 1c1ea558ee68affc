"""Row-group pruning by Parquet statistics (inputs/predicate.py): it must never skip a row group
that holds a row the engine's evaluator keeps, on random data and random predicates
(tests/exprref.py: the generators the expression tests use too)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.backends.cpu.expr import filter_mask
from shardsmith.errors import ConfigError
from shardsmith.inputs.predicate import prunable, row_groups_passing
from shardsmith.inputs.scan import scan, to_schema
from shardsmith.ir.expr import parse_predicate
from shardsmith.ir.expr_types import check_predicate

_spec = importlib.util.spec_from_file_location("exprref", Path(__file__).parents[1] / "exprref.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.mark.parametrize("seed", range(10))
def test_pruning_keeps_every_row_group_with_a_passing_row(tmp_path, seed):
    rng = np.random.default_rng(seed)
    table = ref.table(rng, 2000)
    table = table.set_column(table.column_names.index("i32"), "i32",  # sorted: statistics prune something
                             pa.array(np.sort(rng.integers(-50, 50, 2000)).astype(np.int32)))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=100)
    files, arrow_schema = scan([str(path)], "parquet", {})
    schema = to_schema(arrow_schema, {})
    decided = pruned = 0
    for _ in range(60):
        text = ref.pred(rng) if rng.random() < 0.6 else f"i32 {rng.choice(['<', '>=', '=='])} {rng.integers(-50, 50)}"
        try:
            node = parse_predicate(text, "t")
            check_predicate(node, schema, "t")
        except ConfigError:
            continue
        kept = row_groups_passing(files, node, schema)
        if kept is None:
            assert prunable(node, schema) is None
            continue
        decided += 1
        groups = set(kept[0])
        pruned += 20 - len(groups)
        needed = {int(r) // 100 for r in np.flatnonzero(filter_mask(table, node))}
        assert needed <= groups, text
    assert decided >= 15 and pruned > 0
