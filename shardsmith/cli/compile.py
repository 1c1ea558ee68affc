"""``shardsmith compile``: Hydra runs it, so overrides, multirun (-m), sweepers and run
directories all work; a wrong config fails with one line before Hydra makes a run directory."""

from __future__ import annotations

import sys

import hydra

from shardsmith.cli.common import is_override, log
from shardsmith.compiler.config import compose, config_dir, from_omegaconf, register_configs
from shardsmith.errors import ConfigError, ShardsmithError, error_lines
from shardsmith.profiling.sweep import job_config, job_finish
from shardsmith.runtime import compile_dataset


def run(rest: list[str]) -> int:
    """Hydra runs this: overrides, multirun (-m), sweepers and run directories all work."""
    multirun = any(w in ("-m", "--multirun") for w in rest)
    if not multirun:  # fail fast, with one line, before Hydra sets up a run directory
        try:
            compose([w for w in rest if is_override(w) and not w.lstrip("+~").startswith("hydra.")])
        except ConfigError as exc:
            if "HydraConfig was not set" not in str(exc):  # ${hydra:...} resolves only inside the run
                raise
    register_configs()

    @hydra.main(config_path=str(config_dir()), config_name="config", version_base=None)
    def _task(cfg) -> float | None:
        try:
            result = compile_dataset(job_config(from_omegaconf(cfg), log.info), log=log.info)
            # The profile is copied into the run directory; a sweeper minimises cost (or wall time).
            return job_finish(result, log.info)
        except ShardsmithError as exc:
            print("\n".join(error_lines(exc)), file=sys.stderr)
            sys.exit(exc.exit_code)

    saved = sys.argv
    sys.argv = ["shardsmith compile", *rest]
    try:
        _task()
    finally:
        sys.argv = saved
    return 0
