"""CPU compile benchmark: shardsmith's default pipeline against a pandas and a polars peer.

One run: makes the demo data if absent (``shardsmith demo-data``), then runs shardsmith on its
default local Dask cluster, shardsmith with ``engine=inprocess``, the pandas peer and the polars
peer (bench/compile/peers.py), alternating, ``--reps`` times each, every run its own process.
Per run it records the wall time (process start to exit), the CPU time (user + system of the
process and its reaped children, from ``wait4``), the peak RSS of the whole process tree (the sum
over the process and all its descendants, sampled every ``--sample`` seconds with psutil: Dask's
nanny and worker processes count) and ``ru_maxrss`` (the largest single process, exact). Then it
checks that the four outputs agree and fails (exit 1) if they do not: rows and shard sizes per
split, output schema, vocabulary sizes per column, sha256 of the label, of every categorified
column and of the hashed cross, and the continuous columns within ``--tol``.

Usage (from the repository root)::

    python bench/compile/run.py                 # 2,000,000 rows, 5 repetitions each
    python bench/compile/run.py --rows 200000 --reps 1
    python bench/compile/run.py --profile-only  # cProfile of shardsmith engine=inprocess
    python bench/compile/run.py --rows 20000000 --cores 1   # the 20M demo on one core (scaling)

``--cores N`` pins every run to the first N cores (CPU affinity) and caps the thread pools of
Arrow (OMP_NUM_THREADS), polars (POLARS_MAX_THREADS) and Numba (NUMBA_NUM_THREADS) at N, so
that rows/s per core can be compared between core counts on one machine.

Results: ``bench/results/compile/results.json`` and ``summary.md`` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import peers  # noqa: E402  (the peers' constants: columns, split names, id layout)

IMPLS = ("shardsmith", "shardsmith-inprocess", "pandas", "polars")
SPLITS = peers.SPLITS


# --- input and plan -----------------------------------------------------------------------------
def ensure_data(data: str, rows: int) -> list[str]:
    """The demo Parquet files of ``rows`` rows under ``data``, generated when absent or different."""
    files = sorted(glob.glob(os.path.join(data, "*.parquet")))
    if files and sum(pq.ParquetFile(f).metadata.num_rows for f in files) == rows:
        return files
    shutil.rmtree(data, ignore_errors=True)
    print(f"generating {rows:,} demo rows in {data}", flush=True)
    subprocess.run([sys.executable, "-m", "shardsmith", "demo-data", "--rows", str(rows), "--out", data], check=True)
    return sorted(glob.glob(os.path.join(data, "*.parquet")))


def shardsmith_overrides(data: str, out: str) -> list[str]:
    # fit.cache=off: every run fits, as the peers do (the cache would skip the fit from the second run on).
    return [f"source.paths=[{os.path.join(data, '*.parquet')}]", f"output.dir={out}", "fit.cache=off"]


def plan_shard_rows(data: str) -> int:
    """Rows per shard in shardsmith's plan of the default pipeline (the peers cut shards alike)."""
    return planned_shard_rows(shardsmith_overrides(data, "unused"))


def planned_shard_rows(overrides: list[str]) -> int:
    """Rows per shard in shardsmith's plan of the config these overrides compose."""
    from shardsmith.compiler.build import build
    from shardsmith.compiler.config import compose
    from shardsmith.compiler.passes import optimize
    from shardsmith.compiler.planner import physical_plan

    cfg = compose(overrides)
    return physical_plan(optimize(build(cfg)), cfg.engine).shard_rows


def shardsmith_command(impl: str, overrides: list[str]) -> list[str]:
    """``shardsmith compile`` on its default engine, or in process for ``shardsmith-inprocess``."""
    extra = ["engine=inprocess"] if impl == "shardsmith-inprocess" else []
    return [sys.executable, "-m", "shardsmith", "compile", *overrides, *extra]


def command(impl: str, data: str, out: str, shard_rows: int) -> list[str]:
    if impl.startswith("shardsmith"):
        return shardsmith_command(impl, shardsmith_overrides(data, out))
    return [sys.executable, os.path.join(HERE, "peers.py"), impl, "--data", data, "--out", out,
            "--shard-rows", str(shard_rows)]


# --- measuring one process ------------------------------------------------------------------------
class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.peak, self.peak_procs, self.samples = 0, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            total, procs = 0, 0
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    total += p.memory_info().rss
                    procs += 1
                except psutil.Error:
                    pass  # exited between the listing and the read
            if total > self.peak:
                self.peak, self.peak_procs = total, procs
            self.samples += 1
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def pinned(cores: int | None) -> dict:
    """Popen arguments that run a process (and its children) on the first ``cores`` cores, with
    every thread pool sized to them; {} for the whole machine."""
    if cores is None:
        return {}
    env = {**os.environ, **{k: str(cores) for k in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS", "NUMBA_NUM_THREADS")}}
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    return {"env": env, "preexec_fn": lambda: os.sched_setaffinity(0, allowed)}


def measure(argv: list[str], cwd: str, log_path: str, interval: float, cores: int | None = None) -> dict:
    load = os.getloadavg()[0]
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, **pinned(cores))
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"FAILED ({proc.returncode}): {' '.join(argv)}\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "minor_faults": usage.ru_minflt, "peak_tree_rss": sampler.peak,
            "peak_tree_procs": sampler.peak_procs, "ru_maxrss": usage.ru_maxrss * 1024,
            "samples": sampler.samples, "load_before": load}


def alternate(impls: list[str], reps: int, argv, outs: dict, work: str, sample: float,
              cores: int | None = None) -> dict[str, list]:
    """Run each implementation ``reps`` times (``argv(impl)``: its command), alternating who goes
    first, each into a fresh ``outs[impl]``; the measurements by implementation."""
    results: dict[str, list] = {i: [] for i in impls}
    for rep in range(reps):
        for impl in impls[rep % len(impls):] + impls[: rep % len(impls)]:
            shutil.rmtree(outs[impl], ignore_errors=True)
            r = measure(argv(impl), work, os.path.join(work, f"{impl}.log"), sample, cores)
            results[impl].append(r)
            print(f"rep {rep + 1}/{reps} {impl:22s} wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.1f} s  "
                  f"tree peak {r['peak_tree_rss'] / 2**30:5.2f} GiB ({r['peak_tree_procs']} procs)  "
                  f"largest {r['ru_maxrss'] / 2**30:5.2f} GiB  load {r['load_before']:.1f}", flush=True)
    return results


# --- agreement ------------------------------------------------------------------------------------
def read_split(out: str, split: str):
    files = sorted(glob.glob(os.path.join(out, split, "part-*.parquet")))
    if not files:
        raise SystemExit(f"DISAGREE: no shard under {out}/{split}")
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables), [t.num_rows for t in tables]


def vocab_sizes(impl: str, out: str, cats=peers.CATS, first_id: int = peers.FIRST_ID) -> dict[str, int]:
    """Vocabulary sizes of the categorical columns ``cats``: from shardsmith's manifest (ids from
    ``first_id``), or the ``vocab_sizes.json`` a peer writes."""
    if impl.startswith("shardsmith"):
        with open(os.path.join(out, "manifest.json")) as f:
            schema = json.load(f)["schema"]
        return {c["name"]: c["cardinality"] - first_id for c in schema if c["name"] in cats}
    with open(os.path.join(out, "vocab_sizes.json")) as f:
        return json.load(f)


def digest(out: str) -> dict:
    """What must agree exactly, plus the continuous columns for the tolerance check."""
    tables = {s: read_split(out, s) for s in SPLITS}
    d = {"rows": {s: t.num_rows for s, (t, _) in tables.items()},
         "shard_rows": {s: sizes for s, (_, sizes) in tables.items()},
         "schema": [(f.name, str(f.type)) for f in tables["train"][0].schema],
         "sha256": {}, "max_train_id": {}}
    for col in ["label", *peers.CATS, peers.CROSS]:
        h = hashlib.sha256()
        for s in SPLITS:
            h.update(np.ascontiguousarray(tables[s][0][col].to_numpy()).tobytes())
        d["sha256"][col] = h.hexdigest()
    for col in peers.CATS:
        d["max_train_id"][col] = int(tables["train"][0][col].to_numpy().max())
    cont = {c: np.concatenate([tables[s][0][c].to_numpy() for s in SPLITS]) for c in peers.CONT}
    return d, cont


def check_agreement(outs: dict[str, str], tol: float) -> dict:
    """Compare every implementation's output with shardsmith's (default engine); raise on a mismatch."""
    ref_name = IMPLS[0]
    ref, ref_cont = digest(outs[ref_name])
    ref_vocab = vocab_sizes(ref_name, outs[ref_name])
    problems, report = [], {"reference": ref_name, "rows": ref["rows"], "shard_rows": ref["shard_rows"],
                            "vocab_sizes": ref_vocab, "sha256": ref["sha256"], "continuous": {}}
    for col, top in ref["max_train_id"].items():  # every vocabulary value occurs >= 3 times in train
        if top != ref_vocab[col] + peers.FIRST_ID - 1:
            problems.append(f"{ref_name}: {col} max train id {top} but vocabulary size {ref_vocab[col]}")
    for name, out in outs.items():
        if name == ref_name:
            continue
        d, cont = digest(out)
        for key in ("rows", "shard_rows", "schema", "max_train_id"):
            if d[key] != ref[key]:
                problems.append(f"{name}: {key} {d[key]} != {ref_name} {ref[key]}")
        vocab = vocab_sizes(name, out)
        if vocab != ref_vocab:
            problems.append(f"{name}: vocabulary sizes {vocab} != {ref_name} {ref_vocab}")
        for col, h in d["sha256"].items():
            if h != ref["sha256"][col]:
                problems.append(f"{name}: checksum of {col} differs from {ref_name}")
        worst, differing = 0.0, 0
        for col in peers.CONT:
            diff = np.abs(cont[col].astype(np.float64) - ref_cont[col].astype(np.float64))
            worst, differing = max(worst, float(np.nanmax(diff))), differing + int((diff != 0).sum())
            if np.isnan(cont[col]).sum() != np.isnan(ref_cont[col]).sum() or np.nanmax(diff) > tol:
                problems.append(f"{name}: {col} differs by up to {np.nanmax(diff):.3g} (tolerance {tol})")
        report["continuous"][name] = {"max_abs_diff": worst, "values_differing": differing,
                                      "values": int(sum(len(v) for v in cont.values()))}
    if problems:
        raise SystemExit("DISAGREE:\n  " + "\n  ".join(problems))
    return report


# --- reporting ------------------------------------------------------------------------------------
def versions() -> dict:
    import dask
    import pandas
    import polars
    import pyarrow

    import shardsmith
    from shardsmith.runtime.identity import code_version

    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"python": platform.python_version(), "shardsmith": shardsmith.__version__,
            "shardsmith_code": code_version(), "commit": commit, "pandas": pandas.__version__,
            "polars": polars.__version__, "pyarrow": pyarrow.__version__, "numpy": np.__version__,
            "dask": dask.__version__, "psutil": psutil.__version__}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "nproc": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform()}


def medians(runs: list[dict]) -> dict:
    keys = ("wall_s", "cpu_s", "user_s", "sys_s", "minor_faults", "peak_tree_rss", "ru_maxrss", "load_before")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def summarize(results: dict, rows: int) -> str:
    med = {impl: medians(runs) for impl, runs in results.items()}
    lines = ["| implementation | wall s (median) | min..max | rows/s | CPU s (user + sys) | minor faults | "
             "peak RSS, tree | largest process | load avg |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for impl, m in med.items():
        walls = [r["wall_s"] for r in results[impl]]
        lines.append(f"| {impl} | {m['wall_s']:.2f} | {min(walls):.2f}..{max(walls):.2f} | "
                     f"{rows / m['wall_s']:,.0f} | {m['cpu_s']:.1f} ({m['user_s']:.1f} + {m['sys_s']:.1f}) | "
                     f"{m['minor_faults'] / 1e6:.2f} M | {m['peak_tree_rss'] / 2**30:.2f} GiB | "
                     f"{m['ru_maxrss'] / 2**30:.2f} GiB | {m['load_before']:.1f} |")
    peers = [p for p in ("pandas", "polars") if p in med]  # an --only subset compares with those it ran
    if not peers:
        return "\n".join(lines)
    heads = ([f"vs {p}: speed" for p in peers] + (["vs polars: CPU time"] if "polars" in med else [])
             + [f"vs {p}: peak RSS" for p in peers])
    lines += ["", "| shardsmith engine | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for impl in (i for i in IMPLS[:2] if i in med):
        m = med[impl]
        cells = [f"{med[p]['wall_s'] / m['wall_s']:.2f}x" for p in peers]
        cells += [f"{med['polars']['cpu_s'] / m['cpu_s']:.2f}x"] if "polars" in med else []
        cells += [f"{m['peak_tree_rss'] / med[p]['peak_tree_rss']:.2f}x" for p in peers]
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- profile ----------------------------------------------------------------------------------------
def profile(data: str, work: str, top: int = 30) -> str:
    """cProfile of one shardsmith compile with engine=inprocess: where the time goes."""
    import pstats

    out = os.path.join(work, "out-profile")
    shutil.rmtree(out, ignore_errors=True)
    stats_path = os.path.join(work, "profile_inprocess.pstats")
    argv = [sys.executable, "-m", "cProfile", "-o", stats_path, "-m", "shardsmith", "compile",
            *shardsmith_overrides(data, out), "engine=inprocess"]
    subprocess.run(argv, cwd=work, check=True, stdout=subprocess.DEVNULL)
    text_path = os.path.join(work, "profile_inprocess.txt")
    with open(text_path, "w") as f:
        st = pstats.Stats(stats_path, stream=f)
        f.write(f"shardsmith's own functions by cumulative seconds (of {st.total_tt:.2f} s profiled)\n")
        for line in own_functions(st, top):
            f.write(line + "\n")
        st.sort_stats("tottime").print_stats(top)
        st.sort_stats("cumulative").print_stats(top)
    shutil.rmtree(out, ignore_errors=True)
    return text_path


def own_functions(st, top: int) -> list[str]:
    """Cumulative and own time of the shardsmith package's functions, largest first."""
    rows = []
    for (path, line, name), (_, calls, own, cum, _) in st.stats.items():
        if f"{os.sep}shardsmith{os.sep}" in path and "site-packages" not in path:
            rows.append((cum, own, calls, f"{os.path.relpath(path, ROOT)}:{line}({name})"))
    rows.sort(reverse=True)
    return [f"{cum:8.2f} cum {own:7.2f} own {calls:7d} calls  {where}" for cum, own, calls, where in rows[:top]]


# --- main -------------------------------------------------------------------------------------------
def bench_parser(description: str, impls, reps: int, data: str, work: str, tol: float,
                 tol_help: str) -> argparse.ArgumentParser:
    """The options the compile benchmarks share; ``data`` and ``work``: folders under bench/results/."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--reps", type=int, default=reps, help="runs of each implementation (medians reported)")
    p.add_argument("--data", default=os.path.join(ROOT, "bench", "results", data))
    p.add_argument("--work", default=os.path.join(ROOT, "bench", "results", work))
    p.add_argument("--only", nargs="+", choices=impls, default=list(impls), help="a subset (the check needs all)")
    p.add_argument("--sample", type=float, default=0.05, help="seconds between RSS samples of a process tree")
    p.add_argument("--tol", type=float, default=tol, help=tol_help)
    return p


def main(argv=None) -> None:
    p = bench_parser(__doc__.splitlines()[0], IMPLS, 5, "data", "compile", 1e-5,
                     "largest absolute difference of continuous outputs")
    p.add_argument("--profile", action="store_true", help="also profile shardsmith engine=inprocess")
    p.add_argument("--profile-only", action="store_true")
    p.add_argument("--cores", type=int, default=None, help="run every implementation on this many cores only")
    args = p.parse_args(argv)
    data, work = os.path.abspath(args.data), os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    ensure_data(data, args.rows)
    if args.profile_only:
        print(open(profile(data, work)).read())
        return
    shard_rows = plan_shard_rows(data)
    impls = [i for i in IMPLS if i in args.only]
    outs = {i: os.path.join(work, f"out-{i}") for i in impls}
    results = alternate(impls, args.reps, lambda impl: command(impl, data, outs[impl], shard_rows), outs, work,
                        args.sample, args.cores)
    agreement = check_agreement(outs, args.tol) if impls == list(IMPLS) else None
    summary = summarize(results, args.rows)
    cores = args.cores or len(os.sched_getaffinity(0))
    summary = f"{args.rows:,} rows on {cores} core(s)\n\n{summary}"
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "rows": args.rows,
              "reps": args.reps, "cores": cores, "shard_rows": shard_rows, "machine": machine(), "versions": versions(),
              "runs": results, "medians": {i: medians(r) for i, r in results.items()}, "agreement": agreement}
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(work, "summary.md"), "w") as f:
        f.write(summary + "\n")
    if agreement:
        cont = "; ".join(f"{k}: max |diff| {v['max_abs_diff']:.2g}, {v['values_differing']} of {v['values']} differ"
                         for k, v in agreement["continuous"].items())
        print(f"\nAGREE: rows {agreement['rows']}, {len(agreement['vocab_sizes'])} vocabulary sizes, sha256 of "
              f"label, {len(peers.CATS)} categorified columns and {peers.CROSS} identical; continuous vs "
              f"{agreement['reference']}: {cont}")
    print("\n" + summary)
    if args.profile:
        print(open(profile(data, work)).read())


if __name__ == "__main__":
    main()
