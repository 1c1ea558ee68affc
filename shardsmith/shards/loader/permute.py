"""A block's row permutation computed where the block is (the GPU, for the device path), so that
the host never sorts: ``order.hash_permutation`` (the specification) in torch integer arithmetic.

XXH64 needs unsigned 64-bit arithmetic; torch's int64 has the same bits for ``+``, ``*`` (both wrap
modulo 2**64), ``^``, ``|`` and ``<<``, and a logical right shift is an arithmetic one with the
sign-extended bits masked off. Hashes are then ordered as unsigned numbers by flipping the top bit
and sorting as signed ones. XXH64 of one word is a bijection, so there are no ties and every sort
gives the same order: the permutation is bit for bit the NumPy one.

>>> import numpy as np
>>> from shardsmith.shards.order import hash_permutation
>>> bool((hash_permutation_tensor(1000, 42, torch.device("cpu")).numpy() == hash_permutation(1000, 42)).all())
True
"""

from __future__ import annotations

import torch

from shardsmith.kernels import xxhash64 as xx

_TOP = 1 << 63


def _i64(x) -> int:
    """A 64-bit pattern as the signed integer torch's int64 holds."""
    x = int(x) & ((1 << 64) - 1)
    return x - (1 << 64) if x & _TOP else x


P1, P2, P4 = _i64(xx.P1), _i64(xx.P2), _i64(xx.P4)
P3, P5 = _i64(xx.P3), _i64(xx.P5)


def _shr(x: torch.Tensor, r: int) -> torch.Tensor:
    return (x >> r) & ((1 << (64 - r)) - 1)


def _rotl(x: torch.Tensor, r: int) -> torch.Tensor:
    return (x << r) | _shr(x, 64 - r)


def xxh64_words(words: torch.Tensor, seed: int) -> torch.Tensor:
    """``kernels.xxhash64.xxh64_u64`` of int64 ``words`` (their bit patterns), as int64 bit patterns."""
    h = _i64(int(seed) + int(xx.P5) + 8)
    acc = _rotl(words * P2, 31) * P1
    h = _rotl(acc ^ h, 27) * P1 + P4
    h = h ^ _shr(h, 33)
    h = h * P2
    h = h ^ _shr(h, 29)
    h = h * P3
    return h ^ _shr(h, 32)


def hash_permutation_tensor(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """``order.hash_permutation(n, seed)`` as an int64 tensor computed on ``device``."""
    keys = xxh64_words(torch.arange(n, dtype=torch.int64, device=device), seed) ^ _i64(_TOP)
    return torch.argsort(keys)
