"""What the parts of a running compile share: the plan, the backend's name, the executor, the
staging output, the log, the profiler, and the timings they add to."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from shardsmith.compiler.planner import Plan
from shardsmith.profiling.profile import Profiler
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

    def __post_init__(self):
        self.plan_h = self.ex.scatter(self.plan)  # the plan travels to the workers once

    def record(self, event: dict) -> None:
        """Append to the resume journal (a write and flush per event: visible in the profile)."""
        with self.prof.stage("journal"):
            self.out.record(event)
