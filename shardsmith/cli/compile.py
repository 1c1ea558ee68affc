"""``shardsmith compile``: Hydra runs it, so overrides, multirun (-m), sweepers and run
directories all work; a wrong config fails with one line before Hydra makes a run directory."""

from __future__ import annotations

import copy
import sys

import hydra
from hydra import version
from hydra._internal.callbacks import Callbacks
from hydra._internal.utils import get_args_parser, run_and_report
from hydra.core.utils import run_job
from hydra.types import HydraContext, RunMode
from omegaconf import open_dict, read_write

from shardsmith.cli.common import log, startup_over
from shardsmith.cli.config_help import config_help
from shardsmith.compiler.composition import config_dir_arg, hydra_for_run, normalize_overrides, sweep_variants
from shardsmith.compiler.config import compose, config_dir, from_omegaconf, register_configs
from shardsmith.errors import ConfigError, ShardsmithError, error_lines
from shardsmith.inputs.read import end_read_ahead
from shardsmith.profiling.sweep import job_config, job_finish
from shardsmith.runtime import compile_dataset
from shardsmith.runtime.driver import Prepared, prepare, read_ahead, warm_kernels
from shardsmith.runtime.target import check_output

USAGE = "shardsmith compile [key=value ...] [-m] [--config-dir DIR] [--config-name NAME] [--cfg job]"
DESCRIPTION = """Compile the configured graph into shards. Hydra runs it: every key below can be overridden
(key=value), added (+key=value) or deleted (~key); -m sweeps comma-separated values; each run gets a
run directory (outputs/<date>/<time>/) with its resolved config and log."""
FLAGS = """options:
  -h, --help            this help (the keys' values as composed with the overrides given)
  -m, --multirun        run once per combination of comma-separated values: engine.n_workers=1,2
  -cd, --config-dir DIR add DIR to the config search path: DIR/pipeline/NAME.yaml is then
                        pipeline=NAME, DIR/NAME.yaml a primary config for --config-name
  -cn, --config-name NAME
                        the primary config (default: config, the package's configs/config.yaml)
  hydra.searchpath=[file:///DIR]
                        add DIR to the search path from the command line or a config file
  -c, --cfg job         print the composed config and stop
  --hydra-help          Hydra's own options (launchers, sweepers, logging)"""

TASK_NAME = "compile"  # Hydra's job name (hydra.main names it after this file): the run directory's compile.log
START_UP_ONLY = True  # until its job starts: the garbage collector is off while Hydra composes (cli/__init__.py)


def run(rest: list[str]) -> int:
    """Hydra runs this: overrides, multirun (-m), sweepers and run directories all work."""
    rest = normalize_overrides(rest)
    args = _parser().parse_args(rest)
    if args.config_path is not None:
        raise ConfigError("give the directory with --config-dir (it is added to the search path, after the "
                          "package's configs), and the primary config with --config-name", "--config-path")
    name = args.config_name or "config"
    if args.help:
        print(f"usage: {USAGE}\n\n{DESCRIPTION}\n\n{FLAGS}\n\n"
              f"{config_help(args.overrides, name, args.config_dir)}")
        return 0
    if args.config_dir is not None:
        config_dir_arg(args.config_dir)
    if _single_run(args) and _run_once(args.overrides, name, args.config_dir):
        return 0
    if not (args.hydra_help or args.shell_completion):
        for overrides in sweep_variants(args.overrides) if args.multirun else [args.overrides]:
            _check_early(overrides, name, args.config_dir)
    register_configs()
    saved = sys.argv
    sys.argv = ["shardsmith compile", *rest]
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", version_base=None)(_task)()
    finally:
        sys.argv = saved
    return 0


def _task(cfg) -> float | None:
    """The job Hydra runs: the compile of ``cfg``; its one-line errors exit with their code."""
    startup_over()
    try:
        result = compile_dataset(job_config(from_omegaconf(cfg), log.info), log=log.info)
        # The profile is copied into the run directory; a sweeper minimises cost (or wall time).
        return job_finish(result, log.info)
    except ShardsmithError as exc:
        print("\n".join(error_lines(exc)), file=sys.stderr)
        sys.exit(exc.exit_code)


def _single_run(args) -> bool:
    """One compile and nothing else of Hydra's: no sweep, no printed config or info, no rerun."""
    return not (args.multirun or args.cfg or args.info or args.hydra_help or args.shell_completion
                or args.resolve or args.package or args.experimental_rerun)


def _run_once(overrides: list[str], name: str, extra_dir: str | None) -> bool:
    """One compile as ``hydra.main`` runs it (run directory, saved config and overrides, log file,
    callbacks), on the config composed once, for the early check and for the run: ``hydra.main``
    would compose it twice more (for its mode, then for its run: 0.3-0.6 s of a 2,000,000-row
    compile's start-up on the 2-vCPU machine). Meanwhile the first partitions are read ahead.
    False, having done nothing, when the config resolves only inside a run (``${hydra:...}``)."""
    version.setbase(None)  # as hydra.main(version_base=None) does
    register_configs()
    with hydra_for_run(str(config_dir()), overrides, name, extra_dir, task_name=TASK_NAME) as (hy, full):
        job = copy.deepcopy(full)
        with open_dict(job):
            del job["hydra"]
        if full.hydra.mode not in (None, RunMode.RUN):  # the config asks for a sweep: hydra.main runs it
            return False
        try:
            prep = _checked(from_omegaconf(job))
        except ConfigError as exc:
            if "HydraConfig was not set" not in str(exc):  # ${hydra:...} resolves only inside the run
                raise
            return False
        warm_kernels(prep)  # the first pass's compiled kernels build meanwhile, on their own thread
        read_ahead(prep)  # Hydra's run directory and the run's imports take a core; decoding the other
        try:
            run_and_report(lambda: _hydra_run(hy, full, name))
        finally:
            end_read_ahead()  # the run failed before its compile began: what was read is dropped
    return True


def _hydra_run(hy, cfg, name: str) -> None:
    """What Hydra's ``run`` does once it has composed ``cfg`` (hydra/_internal/hydra.py, 1.3)."""
    if cfg.hydra.mode is None:  # Hydra then composes once more with this override, which only sets it
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=name)
    ret = run_job(hydra_context=HydraContext(config_loader=hy.config_loader, callbacks=callbacks),
                  task_function=_task, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None)
    callbacks.on_run_end(config=cfg, config_name=name, job_return=ret)
    _ = ret.return_value  # raises what the job raised


def _parser():
    """Hydra's own argument parser (the flags it will read), its usage errors as one line."""
    parser = get_args_parser()

    def error(message: str):
        raise ShardsmithError(f"{message} (see 'shardsmith compile --help')", "shardsmith compile")

    parser.error = error
    return parser


def _check_early(overrides: list[str], name: str, extra_dir: str | None) -> None:
    """Compose the config as Hydra will (deletions and hydra.searchpath included) and plan it (the
    inputs' metadata, every op's parameters and columns, the engine), so that a wrong key, value,
    op, input or output location fails with one line before Hydra sets up a run directory."""
    try:
        cfg = compose(overrides, name, extra_dir)
    except ConfigError as exc:
        if "HydraConfig was not set" not in str(exc):  # ${hydra:...} resolves only inside the run
            raise
        return
    _checked(cfg)


def _checked(cfg) -> Prepared:
    """``cfg`` prepared (built, optimised, planned), its output location checked."""
    prep = prepare(cfg)
    check_output(prep.graph.sink.dir, [f.path for f in prep.graph.source.files])
    return prep
