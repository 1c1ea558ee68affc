"""Compiles run as Hydra jobs (``shardsmith compile``, ``-m`` sweeps): where each job writes, the
copy of its profile in the job's run directory, and the value it returns to a sweeper.

In a multirun a relative ``output.dir`` is taken relative to the job's own directory
(``${hydra:runtime.output_dir}``), so that the jobs of a sweep over engine settings each compile
and measure their own dataset instead of finding the first job's dataset up to date. An absolute
``output.dir`` is kept as given: interpolate the job number into it (``/scratch/sweep/${hydra:job.num}``)
or set ``output.overwrite=true`` so that every job rebuilds it.

The value a job returns (what Hydra's Optuna sweeper minimises) is the run's cost when
``profiling.cost_per_hour`` is set, else its wall time in seconds; NaN when the job measured nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf.errors import MissingMandatoryValue

from shardsmith.profiling.document import PROFILE, read_profile, write_json


def hydra_job():
    """The running job's Hydra config, or None outside a Hydra job."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def is_multirun(hc) -> bool:
    return hc is not None and hc.mode == RunMode.MULTIRUN


def job_config(cfg, log=print):
    """The config a Hydra job compiles: in a multirun, a relative output.dir moves into the job's directory."""
    hc = hydra_job()
    if not is_multirun(hc) or os.path.isabs(cfg.output.dir):
        return cfg
    out = os.path.join(hc.runtime.output_dir, cfg.output.dir)
    log(f"multirun job {hc.job.num}: the dataset goes to {out}")
    return dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir=out))


def job_finish(result, log=print) -> float:
    """Copy the profile into the job's run directory (with the job's overrides); the objective."""
    hc = hydra_job()
    if result.up_to_date:
        if is_multirun(hc):
            log(f"multirun job {hc.job.num}: {os.path.dirname(result.path)} was already up to date, so this job "
                "measured nothing (use a per-job output.dir, or output.overwrite=true)")
        return math.nan
    dataset_dir = os.path.dirname(result.path)
    if hc is None or not os.path.isfile(os.path.join(dataset_dir, PROFILE)):
        return objective(None, result)
    doc = read_profile(os.path.join(dataset_dir, PROFILE))
    doc.pop("_path", None)
    doc["hydra"] = {"mode": str(hc.mode.name).lower(), "job_num": _job_num(hc),
                    "overrides": list(hc.overrides.task), "run_dir": hc.runtime.output_dir}
    write_json(os.path.join(hc.runtime.output_dir, PROFILE), doc)
    return objective(doc, result)


def _job_num(hc):
    try:
        return hc.job.num
    except MissingMandatoryValue:  # a single run has no job number
        return None


def objective(doc: dict | None, result) -> float:
    cost = (doc or {}).get("cost", {}).get("run")
    if cost is not None:
        return float(cost)
    return float(doc["wall_s"] if doc else result.timings.get("wall", math.nan))
