"""A plan's CUDA kernels compiled ahead into the kernel cache (kernels/gpu.py ``cache_dir``), in
parallel: NVRTC needs no GPU, so ``shardsmith warmup --arch sm_90`` fills the cache anywhere (when
a container image is built, say), and a GPU compile runs the same while its cluster starts, so
that no worker waits for a compile on its first partition.

A kernel's source depends on its chain of ops and dtypes and on the float mode, not on the fitted
values (they travel as arrays: kernels/codegen.py), so a plan's sources are known before any data
is read: they are rendered here with the fitted state of no data, which has the same parameter
layout as any other.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from shardsmith.backends.gpu.compat import device_archs
from shardsmith.compiler.passes.plan_fit import fit_passes
from shardsmith.compiler.planner import Collect, Plan, fit_program
from shardsmith.errors import ShardsmithError
from shardsmith.ir import Fused
from shardsmith.kernels import codegen, gpu, nvrtc
from shardsmith.kernels.sources import KernelSource
from shardsmith.runtime.fitting import fit_step
from shardsmith.runtime.planning import usable_cores

ARCH = re.compile(r"^sm_\d{2,3}[a-z]?$")


def plan_sources(plan: Plan) -> list[KernelSource]:
    """Every kernel source a GPU compile of ``plan`` launches: the hash kernels (the split, hashing
    ops), the lookups (categorify), and the fused chains of its fit passes and transform.

    The fit programs come from the graph, not from ``plan.fit_programs``: a compile that reuses a
    fit (the fit cache, ``fit.from``) has none, and its transform still needs every state's layout."""
    fits = [fit_program(plan.graph, s)[0] for s in range(fit_passes(plan.graph))]
    states = {item.step.key: fit_step(item, [stat.merge([]) for stat in item.stats])
              for program in fits for item in program if isinstance(item, Collect)}
    out = {s.sha256: s for s in (gpu.hash_source(), gpu.lookup_source())}
    for program in (*plan.fit_programs, plan.transform):
        for node in program:
            if isinstance(node, Fused):
                for group in node.groups:
                    src = codegen.group_source(node, group, states, plan.float_mode)[0]
                    out.setdefault(src.sha256, src)
    return list(out.values())


def check_archs(archs: list[str]) -> list[str]:
    """The architectures to compile for: those given (checked; ``sm_80,sm_90`` counts as two),
    else the visible GPUs'."""
    archs = [a.strip() for given in archs for a in given.split(",") if a.strip()]
    for arch in archs:
        if not ARCH.match(arch):
            raise ShardsmithError(f"expected an architecture like sm_90, got {arch!r}", "--arch")
    archs = list(dict.fromkeys(archs)) or device_archs()
    if not archs:
        raise ShardsmithError("no GPU is visible here: name the architectures to compile for, e.g. --arch sm_90",
                              "--arch")
    return archs


def warm(sources: list[KernelSource], archs: list[str], jobs: int | None = None) -> dict:
    """Compile every source for every architecture into the cache, ``jobs`` at a time (NVRTC runs
    outside the GIL); what was compiled, found cached, and the seconds it took."""
    reason = nvrtc.unavailable_reason()
    if reason:
        raise ShardsmithError(f"cannot compile kernels: {reason}", "warmup")
    work = [(src, arch) for src in sources for arch in archs]
    t0 = time.perf_counter()
    jobs = max(1, jobs or min(len(work), usable_cores()))
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="shardsmith-nvrtc") as pool:
        fresh = list(pool.map(lambda job: _compile(*job), work))
    return {"kernels": len(sources), "archs": archs, "compiled": sum(fresh), "cached": len(fresh) - sum(fresh),
            "seconds": time.perf_counter() - t0, "jobs": jobs, "cache": str(gpu.cache_dir())}


def _compile(src: KernelSource, arch: str) -> bool:
    try:
        return gpu.ensure_cubin(src, arch)[1]
    except nvrtc.CudaCompileError as exc:
        raise ShardsmithError(f"NVRTC cannot compile {src.name} for {arch}: {str(exc).splitlines()[0]}",
                              "--arch") from None


def summary(done: dict) -> str:
    return (f"{done['kernels']} kernel source(s) x {len(done['archs'])} architecture(s) ({', '.join(done['archs'])}) "
            f"in {done['cache']}: {done['compiled']} compiled, {done['cached']} already cached, "
            f"{done['seconds']:.1f} s ({done['jobs']} at a time)")


class Ahead:
    """The plan's kernels compiled in a background thread while the cluster starts (a GPU compile
    on a local cluster, whose workers share this machine's kernel cache). It never fails the
    compile: a kernel it could not make is compiled by the worker that needs it, as without it."""

    def __init__(self, plan: Plan, log):
        self.log, self.result, self.error = log, None, None
        self._thread = threading.Thread(target=self._run, args=(plan,), name="shardsmith-kernels-ahead", daemon=True)
        self._thread.start()

    def _run(self, plan: Plan) -> None:
        try:
            self.result = warm(plan_sources(plan), check_archs([]))
        except Exception as exc:  # noqa: BLE001 - an optimisation only: the workers compile what is missing
            self.error = exc

    def wait(self) -> dict | None:
        """Wait for the compiles (started before the cluster, so mostly done by now) and say so."""
        self._thread.join()
        if self.error is not None:
            self.log(f"kernels were not compiled ahead ({self.error}); workers compile them on first use")
        elif self.result is not None:
            self.log(f"kernels compiled ahead while the cluster started: {summary(self.result)}")
        return self.result
