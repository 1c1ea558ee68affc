"""``shardsmith warmup [--arch sm_90 ...] [--jobs N] [overrides]``: compile a plan's CUDA kernels
ahead into the kernel cache ($SHARDSMITH_KERNEL_CACHE, default ~/.cache/shardsmith/kernels), in
parallel, so that a GPU compile starts warm. Without a GPU (building a container image, CI), name
the architectures with --arch; with one, the visible GPUs' are the default. The config (and its
inputs' schema) decides the kernels: give the overrides a compile would get (engine.float_mode,
pipeline=...)."""

from __future__ import annotations

from shardsmith.backends import device_memory_bytes
from shardsmith.cli.common import Parser, split_options
from shardsmith.compiler.build import build
from shardsmith.compiler.config import compose
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.planner import physical_plan
from shardsmith.runtime.warmup import check_archs, plan_sources, summary, warm


def run(rest: list[str]) -> int:
    opts, overrides = split_options(rest)
    p = Parser("warmup", "Compile a plan's GPU kernels ahead into the kernel cache, so that a GPU compile starts\n"
                         "warm; without a GPU, name the architectures with --arch. Overrides as for compile.")
    p.add_argument("--arch", action="append", default=[],
                   help="CUDA architectures, e.g. sm_90 or sm_80,sm_90 (repeatable)")
    p.add_argument("--jobs", type=int, default=None, help="compiles at a time (default: one per core)")
    args = p.parse_args(opts)
    cfg = compose(overrides)
    # The GPU engine's plan whatever engine.kind says: the kernels are the GPU engine's.
    plan = physical_plan(optimize(build(cfg)), cfg.engine, "gpu", device_memory_bytes())
    archs = check_archs(args.arch)
    print(f"warmup: {summary(warm(plan_sources(plan), archs, args.jobs))}")
    return 0
