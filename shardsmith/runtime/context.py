"""What the parts of a running compile share: the plan, the backend's name, the executor, the
staging output, the log, the profiler, and the timings they add to."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from shardsmith.compiler.planner import Plan
from shardsmith.profiling.profile import Profiler
from shardsmith.runtime import tasks
from shardsmith.runtime.fitsource import FitSource
from shardsmith.runtime.staging import Output


@dataclass
class RunContext:
    plan: Plan
    backend: str
    ex: object  # runtime/cluster.py: InProcess or DaskExecutor
    out: Output
    log: object = print
    prof: Profiler = field(default_factory=Profiler.disabled)
    timings: dict = field(default_factory=lambda: collections.defaultdict(float))
    fit: FitSource = field(default_factory=lambda: FitSource("fit"))  # where the fitted state comes from
    # When the plan reads the input once: each partition's read (a handle on the worker that holds
    # it), made by the first fit pass and released by the partition's transform.
    kept: dict = field(default_factory=dict)

    def __post_init__(self):
        self.plan_h = self.ex.scatter(self.plan)  # the plan travels to the workers once

    def kept_read(self, part):
        """The handle of ``part``'s kept read, submitted on first use (None: the plan reads per pass)."""
        if not self.plan.read_once:
            return None
        if part.index not in self.kept:
            self.kept[part.index] = self.ex.submit(tasks.read_task, self.backend, self.plan_h, part,
                                                   self.prof.task_opts)
        return self.kept[part.index]

    def record(self, event: dict) -> None:
        """Append to the resume journal (a write and flush per event: visible in the profile)."""
        with self.prof.stage("journal"):
            self.out.record(event)
