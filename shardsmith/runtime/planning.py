"""The physical plan on this machine, and the check that its engine runs every node: what
``shardsmith plan`` and the driver share, kept apart from the driver so that explaining a plan
imports none of the run's machinery (executors, writers, profiling, object stores)."""

from __future__ import annotations

import os

import psutil

from shardsmith.backends import device_memory_bytes
from shardsmith.compiler.planner import Collect, Plan, physical_plan
from shardsmith.ir import Fused, Graph, Step


def plan_on_this_machine(graph: Graph, engine, backend: str) -> Plan:
    """The physical plan with this machine's facts: the smallest GPU's memory (GPU engine), the
    host memory available now and the cores this process may run on (its CPU affinity)."""
    device = device_memory_bytes() if backend == "gpu" else None
    return physical_plan(graph, engine, backend, device, psutil.virtual_memory().available, usable_cores())


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a Slurm job, a container's cpuset, or
    ``taskset``), not every core of the machine (``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def check_lowerings(plan: Plan, lowerings) -> None:
    """Every node must run on the chosen backend: fail at plan time, naming the op, if not."""
    nodes = list(plan.transform) + [n for p in plan.fit_programs for n in p if not isinstance(n, Collect)]
    for node in nodes:
        if isinstance(node, Fused):
            lowerings.require(node, node.key)
        elif isinstance(node, Step):
            lowerings.require(node.op, node.key)
