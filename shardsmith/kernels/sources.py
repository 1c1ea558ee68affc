"""CUDA sources as self-contained texts: the ``.cu`` / ``.cuh`` files beside this module with their
``#include "..."`` lines inlined, so that NVRTC (on a GPU, through CuPy, or in CI through
cuda-bindings) and the host C++ build of the tests compile exactly the same text, and a source's
hash names everything that went into it."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from shardsmith.kernels.lookup import ids_header

CUDA_DIR = Path(__file__).with_name("cuda")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)

# Flags of every compile: exact IEEE arithmetic (no fused multiply-add contraction, no fast math),
# since the results must equal the NumPy references.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
# Headers generated from Python constants, so that a value is written down once.
GENERATED = {"categorify_ids.cuh": ids_header}


@dataclass(frozen=True)
class KernelSource:
    """A self-contained CUDA source and the entry points it defines."""

    name: str  # a file name for logs and golden files
    text: str
    entries: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def inline(name: str, seen: set[str] | None = None) -> str:
    """The text of ``cuda/<name>`` (or a generated header) with its quoted includes inlined once each."""
    seen = set() if seen is None else seen
    if name in seen:
        return ""
    seen.add(name)
    text = GENERATED[name]() if name in GENERATED else (CUDA_DIR / name).read_text()
    text = re.sub(r"^\s*#\s*pragma\s+once\s*$", "", text, flags=re.MULTILINE)
    return _INCLUDE.sub(lambda m: f"// ---- {m.group(1)}\n{inline(m.group(1), seen)}// ---- end {m.group(1)}", text)


@functools.cache
def static_source(name: str) -> KernelSource:
    """A hand-written kernel file (e.g. ``xxhash64.cu``) and its entry points: the ``SS_KERNEL``
    functions, and those that the ``SS_HASH_*`` macros stamp out."""
    text = inline(name)
    entries = tuple(re.findall(r"^SS_KERNEL\s+(\w+)\s*\(", text, flags=re.MULTILINE))
    entries += tuple(f"ss_hash_{s}" for s in re.findall(r"^SS_HASH_(?:FIXED|STRINGS)\((\w+),", text, re.MULTILINE))
    entries += tuple(f"ss_categorify_{s}" for s in re.findall(r"^SS_CATEGORIFY_STRINGS\((\w+),", text, re.MULTILINE))
    return KernelSource(name, text, entries)


def static_sources() -> tuple[KernelSource, ...]:
    """Every hand-written kernel file (headers are checked through the files that include them)."""
    return tuple(static_source(p.name) for p in sorted(CUDA_DIR.glob("*.cu")))
