"""The fit passes: partial statistics per partition, merged in a tree as they arrive, finalized,
and turned into each fitted step's state; saved (JSON + Parquet) so that a resumed run skips them."""

from __future__ import annotations

import time

from shardsmith.compiler.planner import Collect
from shardsmith.inputs.tables import check_size, read_table, unique_by
from shardsmith.ops.joins import KEY
from shardsmith.profiling.spans import PROFILE_KEY
from shardsmith.runtime import fitsource, tasks
from shardsmith.runtime.context import RunContext
from shardsmith.runtime.threads import Threads
from shardsmith.shards.state import load_states, save_states


def fit(run: RunContext) -> dict:
    """The fitted states by step key: saved by an interrupted run of this compile, reused (another
    dataset's, or the fit cache's), or fitted by every fit pass of the plan, in order."""
    saved = load_states(run.out.local_path("state"))
    if saved is not None:
        run.log(f"resuming: fitted state found in {run.out.local_path('state')}")
        return saved
    # Side tables are inputs, not fitted state: read afresh whatever the fitted state's source.
    with run.prof.stage("side tables"):
        side = side_states(run.plan)
    with run.prof.stage("reuse state"):
        reused = _reused(run)
    if reused is not None:
        states = {**reused, **side}
        # A cache entry's files are the states as this function wrote them: copied, not encoded again.
        saved = {k: run.fit.path for k in reused} if run.fit.kind == "cache" else None
        with run.prof.stage("save state"):
            save_states(run.out.local_path("state"), states, saved)
        return states
    states = _fit_passes(run, dict(side))
    with run.prof.stage("cache state"):
        fitsource.store(run.fit, {k: v for k, v in states.items() if k not in side}, run.log,
                        saved_in=run.out.local_path("state"))
    return states


def _reused(run: RunContext) -> dict | None:
    source = run.fit
    if source.kind == "parent":
        run.log(source.describe())
        return fitsource.parent_states(source)
    if source.kind == "cache":
        run.log(source.describe())
        return fitsource.cached_states(source)
    return None


def _fit_passes(run: RunContext, states: dict) -> dict:
    for stage, program in enumerate(run.plan.fit_programs):
        t0 = time.perf_counter()
        merged = _pass(run, stage, program, states)
        with run.prof.stage(f"fit{stage} merge"):
            for item in program:
                if isinstance(item, Collect):
                    states[item.step.key] = fit_step(item, merged[item.step.key])
        run.timings[f"fit_pass_{stage}"] = time.perf_counter() - t0
        run.log(f"fit pass {stage}: {len(run.plan.partitions)} partition(s), "
                f"fitted {', '.join(i.step.key for i in program if isinstance(i, Collect))} "
                f"in {time.perf_counter() - t0:.2f} s")
    with run.prof.stage("save state"):
        save_states(run.out.local_path("state"), states)
    run.record({"event": "fit"})
    return states


def _pass(run: RunContext, stage: int, program, states: dict) -> dict:
    """One pass over the partitions: the merged partials of every Collect, by step key.

    A binary-counter tree of merges as the partials arrive: O(log partitions) partials alive at a
    time, merged on the workers; every merge is exact, so the shape of the tree cannot change the
    result. On threads in this process, one tree per thread, each merging its share of the
    statistics (:func:`merge_groups`): the merges left when the last partition's partials arrive
    then run side by side instead of one after another."""
    states_h = run.ex.scatter(states)
    stats = {item.step.key: item.stats for item in program if isinstance(item, Collect)}
    progress = run.prof.progress(f"fit pass {stage}", run.plan.partitions)
    n = merge_groups(run.ex, stats)
    stacks: list[list] = [[] for _ in range(n)]
    for p in run.plan.partitions:
        leaf = progress.watch(run.ex.submit(tasks.fit_task, run.backend, run.plan_h, p, stage, states_h,
                                            run.prof.task_opts, run.kept_read(p)), p)
        for g, stack in enumerate(stacks):
            node, level = leaf, 0
            while stack and stack[-1][1] == level:
                node, level = _merge(run, stats, stack.pop()[0], node, stage, (g, n)), level + 1
            stack.append((node, level))
    for g, stack in enumerate(stacks):
        while len(stack) > 1:
            top = stack.pop()[0]
            stack[-1] = (_merge(run, stats, stack[-1][0], top, stage, (g, n)), stack[-1][1])
    merged = _combine(stats, [stack[0][0] for stack in stacks])
    progress.close()
    for spans in merged.pop(PROFILE_KEY, None) or []:
        run.prof.add(spans)
    return merged


def merge_groups(ex, stats: dict) -> int:
    """How many merge trees share a pass's statistics: the task threads of an in-process pool
    (at most one per statistic); one elsewhere (a cluster's merges move partials between workers)."""
    if not isinstance(ex, Threads):
        return 1
    return max(1, min(ex.threads, max((len(v) for v in stats.values()), default=1)))


def _combine(stats: dict, roots: list) -> dict:
    """One partial per statistic from the trees' roots: tree ``g`` holds the statistics at
    positions ``i % len(roots) == g``. With one partition every root is its task's whole result."""
    results = [r.result() for r in roots]
    n = len(roots)
    out = {key: [results[i % n][key][i] for i in range(len(v))] for key, v in stats.items()}
    spans = [s for r in dict.fromkeys(roots) for s in results[roots.index(r)].get(PROFILE_KEY, [])]
    if spans:
        out[PROFILE_KEY] = spans
    return out


def _merge(run: RunContext, stats, a, b, stage: int, group: tuple[int, int] = (0, 1)):
    return run.ex.submit(tasks.merge_partials, stats, a, b, run.backend, stage, run.prof.task_opts, group)


def fit_step(item: Collect, merged: list) -> dict:
    """Finalize one step's merged partials and let the op fit its state from them."""
    return item.step.op.fit({stat: stat.finalize(m) for stat, m in zip(item.stats, merged)})


def side_states(plan) -> dict:
    """The side tables of the steps that read one whole (``join``), read on the driver, checked
    (size, one row per key) and made into each step's state: sent to the workers with the fitted
    state, saved with it (Parquet) for a resumed run."""
    out = {}
    for step in plan.graph.flat_steps():
        side = step.op.side_table()
        if side is None:
            continue
        table = read_table(side, step.op.side_columns())
        check_size(side, table, step.key)
        keys = [f"{KEY}{i}" for i in range(len(step.op.right_keys()))]
        state = step.op.side_state(table)
        state["table"] = unique_by(state["table"], keys, step.op.on_duplicate == "first", side, step.key,
                                   shown=dict(zip(keys, step.op.right_keys())))
        out[step.key] = state
    return out
