"""categorify's vocabulary lookup as a compiled Numba loop, for integer columns: each value's id
in one pass over Arrow's buffers, releasing the GIL.

It means exactly what the NumPy path computes (backends/cpu/lowering.py: a hash index of the
vocabulary; kernels/lookup.py gives the ids): values are matched as integers, a null gets NULL_ID.
The table is open addressing with linear probing, at most half full, each slot a (value,
position) pair of int64 in one array, so that a probe touches one cache line; the slot is the top
bits of the value times 2**64 / golden ratio (Fibonacci hashing: every bit of the value moves the
top bits, so strided values spread). Measured on the demo's 23 integer columns (500,000 rows,
vocabularies up to 21,000 values): 1.9x faster than pandas' hash index. A hash table for the value
counts of the fit measured slower than NumPy's ``unique``, which stays.
Importing this module imports Numba; kernels/cpujit.py does it on a background thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shardsmith.kernels.lookup import FIRST_ID, NULL_ID, OOV_ID

OPTIONS = dict(nogil=True, cache=True, boundscheck=False)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
EMPTY = np.int64(-1)


@njit(**OPTIONS)
def _slot(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> shift)


@njit(**OPTIONS)
def build_index(vocab):
    """The table of a vocabulary (distinct integers as int64): 2 * size int64, slot s holding
    (value, position) at (2s, 2s + 1), position -1 when empty; size a power of two >= 2 * len."""
    bits = 10
    while (1 << bits) < 2 * len(vocab):
        bits += 1
    size = 1 << bits
    shift = np.uint64(64 - bits)
    table = np.full(2 * size, EMPTY, dtype=np.int64)
    for k in range(len(vocab)):
        s = _slot(vocab[k], shift)
        while table[2 * s + 1] != EMPTY:
            s = (s + 1) & (size - 1)
        table[2 * s] = vocab[k]
        table[2 * s + 1] = k
    return table


@njit(**OPTIONS)
def lookup(values, bits, offset, table, shift, out):
    """categorify ids into ``out`` (int32): FIRST_ID + the value's position in the vocabulary,
    OOV_ID when it is not there, NULL_ID for a null (validity ``bits`` from bit ``offset``;
    empty: no nulls). ``shift``: 64 - log2 of the table's slots."""
    size = len(table) // 2
    for i in range(len(values)):
        if len(bits) and not (bits[(offset + i) >> 3] >> ((offset + i) & 7)) & 1:
            out[i] = NULL_ID
            continue
        v = np.int64(values[i])
        s = _slot(v, shift)
        out[i] = OOV_ID
        while table[2 * s + 1] != EMPTY:
            if table[2 * s] == v:
                out[i] = FIRST_ID + table[2 * s + 1]
                break
            s = (s + 1) & (size - 1)
