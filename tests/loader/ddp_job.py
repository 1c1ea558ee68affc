"""A real DDP job for tests/loader/test_ddp.py: ``python ddp_job.py CONFIG.json`` starts ``world``
processes, as torchrun does (one interpreter per rank, so DataLoader workers fork), that join a
gloo process group on 127.0.0.1, stream the dataset through ShardLoader with
DataLoader workers, all-reduce a value every step (uneven batch counts would hang here), and write
what each rank saw in each phase to ``out/<phase>-rank-<r>.json`` and ``.npy``."""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def consume(loader, stop):
    import torch
    import torch.distributed as dist

    rows, reduced, local = [], [], []
    for step, batch in enumerate(loader):
        names = sorted(batch)
        rows.append(np.column_stack([batch[n].numpy().astype(np.float64) for n in names]))
        value = torch.tensor([float(batch["label"].sum()), float(len(batch["label"]))], dtype=torch.float64)
        local.append(value.tolist())
        dist.all_reduce(value)
        reduced.append(value.tolist())
        if stop and step + 1 == stop:
            break
    return rows, reduced, local


def run(rank: int, cfg: dict) -> None:
    import time

    t0 = time.perf_counter()
    import torch.distributed as dist

    from shardsmith.shards import ShardDataset, ShardLoader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank,
                            world_size=cfg["world"])
    t_init = time.perf_counter() - t0
    ds = ShardDataset(cfg["dataset"], batch_size=cfg["batch_size"], seed=cfg["seed"], format=cfg.get("format"))
    if cfg.get("state"):
        with open(cfg["state"]) as f:
            ds.load_state_dict(json.load(f))
    loader = ShardLoader(ds, num_workers=cfg["workers"])
    for phase in cfg["phases"]:  # {"name", "epoch" (optional), "stop" (optional)}
        if "epoch" in phase:
            ds.set_epoch(phase["epoch"])
        t1 = time.perf_counter()
        rows, reduced, local = consume(loader, phase.get("stop"))
        out = os.path.join(cfg["out"], f"{phase['name']}-rank-{rank}")
        np.save(out + ".npy", np.concatenate(rows) if rows else np.zeros((0, 41)))
        with open(out + ".json", "w") as f:
            json.dump({"batches": len(rows), "len": len(ds), "state": loader.state_dict(), "local": local,
                       "reduced": reduced, "rank": dist.get_rank(), "world": dist.get_world_size(),
                       "seconds": {"init": t_init, "loop": time.perf_counter() - t1}}, f)
    dist.barrier()
    dist.destroy_process_group()


def launch(config_path: str) -> int:
    import subprocess

    with open(config_path) as f:
        world = json.load(f)["world"]
    procs = [subprocess.Popen([sys.executable, __file__, config_path, str(r)]) for r in range(world)]
    codes = [p.wait(timeout=300) for p in procs]
    return max(codes, key=abs)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        sys.exit(launch(sys.argv[1]))
    with open(sys.argv[1]) as f:
        run(int(sys.argv[2]), json.load(f))
