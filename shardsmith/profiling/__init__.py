"""Profiling: timers, cost model and reports of a compile."""
