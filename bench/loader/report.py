"""Write the loader benchmark's results into the ``## Loader`` section of BENCHMARKS.md (other
sections, written by other benchmarks, are left as they are)."""

from __future__ import annotations

import os
import re

OURS = "shardsmith (shuffled)"
NAIVE = "naive pyarrow (in order)"
PEERS = ("webdataset (shuffled)", "mosaicml-streaming MDS (shuffled)", "litdata (shuffled)")

METHOD = """\
Each figure is the median of the passes' samples/s: one pass runs from creating the loader's
iterator (worker start-up included) to the last batch of the train split, or stops after the cap
for slow loaders. The loop touches every tensor of every batch (`t.sum()`), batch size 1024.
shardsmith and the naive baseline read the compiled Parquet shards (zstd, row groups of 65,536 rows,
131,072 rows per shard) and yield one tensor per column (41); WebDataset reads the tar shards
shardsmith wrote in the same compile; MDS and LitData read the same rows converted with their own
writers (uncompressed), as dense float32[13], sparse int32[27] and the label. Shuffle buffers:
shardsmith 262,144 rows (blocks of 4 row groups, the default), WebDataset 10,000 samples plus shard
shuffling, MDS and LitData their defaults. The page cache was warm for every loader (the data fits
in memory). Reproduce with `bench/loader/run.sh` (it builds the benchmark's own venv: CPU torch,
the peers with `--no-deps` and what they import; a stand-in `torchvision` satisfies the import MDS
makes at start-up, see `bench/loader/shim/torchvision`)."""


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def section(report: dict, analysis: str = "") -> str:
    m, v = report["machine"], report["versions"]
    by = {(r["loader"], r["num_workers"]): r["median_samples_per_s"] for r in report["results"]}
    workers = sorted({r["num_workers"] for r in report["results"]})
    loaders = list(dict.fromkeys(r["loader"] for r in report["results"]))
    lines = ["## Loader", "",
             f"Measured {report['date']} on {m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB RAM, "
             f"Python {m['python']}, no GPU. {report['train_rows']:,} train rows of the demo dataset, "
             f"batch {report['batch_size']}, median of {report['runs']} passes (cap {report['cap_s']:.0f} s a pass). "
             f"The machine was shared: its 1-minute load average ranged {report['load_average']['min']:.1f} to "
             f"{report['load_average']['max']:.1f} during the passes (2 cores), so expect noise.",
             "", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", "",
             "| loader (samples/s) | " + " | ".join(f"num_workers={w}" for w in workers) + " |",
             "| --- | " + " | ".join("---:" for _ in workers) + " |"]
    for name in loaders:
        lines.append(f"| {name} | " + " | ".join(_fmt(by[(name, w)]) if (name, w) in by else "-" for w in workers)
                     + " |")
    lines += ["", *ratio_lines(by, workers), "", METHOD]
    gpu = report.get("gpu")
    if gpu:
        h2d = gpu["pinned_h2d_bytes_per_s"]
        parts = [f"num_workers={k.split('_')[1]}: batches delivered at {v['bytes_per_s'] / 1e9:.2f} GB/s, "
                 f"{100 * v['fraction_of_h2d']:.0f}% of it (target 80%)"
                 for k, v in gpu.items() if k.startswith("workers_")]
        head = f"GPU ({gpu['device']}): pinned host-to-device copy {h2d / 1e9:.1f} GB/s; "
        lines += ["", head + "; ".join(parts) + "."]
    if analysis:
        lines += ["", analysis]
    return "\n".join(lines) + "\n"


def ratio_lines(by: dict, workers) -> list[str]:
    out = ["Ratios of shardsmith (shuffled) to each, and the targets (at least 3x the best peer, shuffled; at "
           "least half of the naive baseline):", ""]
    for w in workers:
        ours = by.get((OURS, w))
        if ours is None:
            continue
        parts = [f"{p.split(' ')[0]} {ours / by[(p, w)]:.1f}x" for p in PEERS if by.get((p, w))]
        best = max((by[(p, w)] for p in PEERS if by.get((p, w))), default=None)
        naive = by.get((NAIVE, w))
        verdict = []
        if best:
            verdict.append(f"best peer {ours / best:.1f}x ({'met' if ours >= 3 * best else 'NOT met'})")
        if naive:
            verdict.append(f"naive baseline {ours / naive:.2f}x ({'met' if ours >= 0.5 * naive else 'NOT met'})")
        out.append(f"- num_workers={w}: " + ", ".join(parts) + "; " + "; ".join(verdict) + ".")
    return out


def update_benchmarks(path: str, report: dict, analysis: str = "") -> None:
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    new = section(report, analysis or ANALYSIS)
    pattern = re.compile(r"^## Loader\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: new + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + new
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")


ANALYSIS = """Where the time goes. The peers handle every sample in Python: WebDataset parses four tar members
per sample (two .npy headers, the JSON, the text label), shuffles samples one by one and collates
1,024 of them; MDS and LitData deserialize each sample and the DataLoader collates 1,024 dicts.
shardsmith never touches a sample in Python: pyarrow decodes whole row groups, a block of four row
groups is permuted once with NumPy (one matrix per dtype), and a batch is one strided copy per
dtype into a single buffer whose column views are the batch. Its cost is the Parquet (zstd) decode
plus one shuffled copy, which is why the shuffled figure sits near the naive in-order reader and
why the target against the peers is met by a wide margin. Each pass includes filling the first
shuffle block (262,144 rows) before the first batch.

With num_workers=2 on two cores, the two workers and the training loop's process share two cores
(and shared the machine with other jobs here), so workers buy nothing on this machine; what they
add is the cost of moving batches between processes. shardsmith sends 8 batches per shared-memory
message (about a millisecond each here) and splits them in the loop's process in the order single
batches would have come; the naive baseline, which sends a batch's 41 tensors as 41 segments, shows
what that costs. Whether workers add throughput on a machine with cores to spare was not measured
here.

The peers' absolute figures are several times below the one measurement quoted in the issue for
this kind of machine (WebDataset 15K, MDS 30K, LitData 192K samples/s). Other jobs loaded the
machine during these runs, but even in the quietest pass the peers stayed well below those figures,
and this benchmark did not find out why; each peer is set up as its documentation shows, with the
exact code in `bench/loader/run.py`, and the formats are written by the peers' own writers. The
passes were interleaved across loaders so that each met similar conditions; the ratios, not the
absolute figures, are the result to take from this run."""
