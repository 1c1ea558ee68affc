"""``shardsmith plan``: build, optimise and plan a config on the engine it names, without reading
data and without needing that engine on this machine (a GPU compile is explained anywhere)."""

from __future__ import annotations

from shardsmith.backends import engine_choice, lowerings_for
from shardsmith.compiler.build import build
from shardsmith.compiler.config import ShardsmithConfig
from shardsmith.compiler.explain import explain_lines
from shardsmith.compiler.passes import optimize
from shardsmith.runtime import fitsource
from shardsmith.runtime.planning import check_lowerings, plan_on_this_machine


def explain(cfg: ShardsmithConfig, passes: bool = False) -> str:
    built = build(cfg)
    trace: list = []
    final = optimize(built, trace=trace)
    backend, why = engine_choice(cfg.engine.kind)
    lowerings = lowerings_for(backend)
    plan = plan_on_this_machine(final, cfg.engine, backend)
    check_lowerings(plan, lowerings)  # an op the engine cannot run fails here, as it would when compiling
    plan, fit = fitsource.resolve(cfg, plan)  # a reused fit (fit.from, the fit cache) runs no fit pass
    lines = explain_lines(built, trace, plan, lowerings, passes)
    at = lines.index("== physical plan") + 1
    return "\n".join([f"engine: {backend} ({why})", "", *lines[:at], fit.describe(), *lines[at:]])
