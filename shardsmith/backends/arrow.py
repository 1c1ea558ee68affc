"""Host Arrow helpers that both backends use as they are (a GPU cast from or to strings runs on
the host, exactly as the CPU engine's)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def cast_each(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Value-by-value conversion for a column whose bulk cast failed: the error path only."""
    out, ok = [], np.ones(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(pc.cast(pa.array([v], type=col.type), target, safe=True)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
            ok[i] = False
    return pa.array(out, type=target), ok
