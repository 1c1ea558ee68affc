"""categorify's lookup for fixed-width columns, written once for NumPy and CuPy (``xp``).

Values are matched as exact keys: integers as themselves, floats by their bit patterns (the way
Arrow's ``value_counts`` and ``index_in`` tell values apart on the CPU: -0.0 is not 0.0, and NaNs
with different payloads differ). String columns use the kernel in ``cuda/lookup.cu``.
"""

from __future__ import annotations

import numpy as np

# categorify's ids (ops/categorical.py gives their meaning): 0 padding, 1 out of vocabulary, 2 null,
# 3.. the vocabulary. The CUDA lookup (cuda/lookup.cu) includes them as generated #defines.
PAD_ID, OOV_ID, NULL_ID, FIRST_ID = 0, 1, 2, 3
_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def ids_header() -> str:
    """The ids as C #defines: the generated ``categorify_ids.cuh``."""
    return "".join(f"#define SS_{name} {value}\n" for name, value in
                   (("OOV_ID", OOV_ID), ("NULL_ID", NULL_ID), ("FIRST_ID", FIRST_ID)))


def exact_keys(values):
    """Keys whose equality is Arrow's value equality: float bit patterns, other values as they are."""
    if values.dtype.kind == "f":
        return values.view(_BITS[values.dtype.itemsize])
    if values.dtype.kind == "b":
        return values.view(np.uint8)
    return values


def sorted_vocabulary(vocab_keys, xp=np):
    """(the vocabulary's keys sorted, and each sorted key's position in the vocabulary)."""
    order = xp.argsort(vocab_keys).astype(np.int32)
    return vocab_keys[order], order


def categorify_ids(keys, valid, sorted_keys, order, xp=np):
    """int32 ids: FIRST_ID + vocabulary position, OOV_ID when absent, NULL_ID where not ``valid``
    (None: no nulls). ``sorted_keys`` / ``order`` come from :func:`sorted_vocabulary`."""
    n = len(keys)
    if len(sorted_keys) == 0:
        ids = xp.full(n, OOV_ID, dtype=np.int32)
    else:
        pos = xp.minimum(xp.searchsorted(sorted_keys, keys, side="left"), len(sorted_keys) - 1)
        found = sorted_keys[pos] == keys
        ids = xp.where(found, order[pos] + FIRST_ID, OOV_ID).astype(np.int32)
    if valid is not None:
        ids = xp.where(valid, ids, np.int32(NULL_ID)).astype(np.int32)
    return ids
