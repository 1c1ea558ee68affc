"""The cost model: what a run cost on a rented node, per TB of input and per million rows, and
what an input of another size would take, from this run's own measured rates.

The node is billed by the hour (``profiling.cost_per_hour``), from the start of the compile to its
commit. On the GPU engine with ``profiling.gpus_per_node`` set, a run is charged for the GPUs it
used (one per worker): ``price x workers / gpus_per_node``, as if the rest of the node served other
work; otherwise it pays for the whole node.
"""

from __future__ import annotations

from shardsmith.ir.sizes import parse_size

TB = 1e12
DEFAULT_TARGET = "1TB"


def billed_share(engine_kind: str, workers: int, gpus_per_node: int) -> float:
    if engine_kind == "gpu" and gpus_per_node:
        return min(1.0, workers / gpus_per_node)
    return 1.0


def cost_of(wall_s: float, price_per_hour: float | None, share: float) -> float | None:
    return None if price_per_hour is None else price_per_hour * share * wall_s / 3600.0


def cost_model(pcfg, wall_s: float, fixed_s: float, input_bytes: int, rows_in: int,
               engine_kind: str, workers: int) -> dict:
    """The ``cost`` block of a profile. ``fixed_s``: time paid once whatever the input size
    (starting and stopping the cluster)."""
    price = pcfg.cost_per_hour
    share = billed_share(engine_kind, workers, pcfg.gpus_per_node)
    cost = cost_of(wall_s, price, share)
    out = {
        "currency": pcfg.currency, "price_per_hour": price, "gpus_per_node": pcfg.gpus_per_node,
        "billed_share": share, "billing": _billing_text(engine_kind, workers, pcfg.gpus_per_node, share),
        "node_hours": wall_s / 3600.0 * share,
        "run": cost,
        "per_tb_input": cost / (input_bytes / TB) if cost is not None and input_bytes else None,
        "per_million_rows": cost / (rows_in / 1e6) if cost is not None and rows_in else None,
        "projection": projection(pcfg, wall_s, fixed_s, input_bytes, rows_in, price, share),
    }
    return out


def _billing_text(kind: str, workers: int, gpus_per_node: int, share: float) -> str:
    if kind == "gpu" and gpus_per_node:
        return f"{workers} of {gpus_per_node} GPUs of the node ({share:.0%} of its price)"
    return "the whole node"


def projection(pcfg, wall_s: float, fixed_s: float, input_bytes: int, rows_in: int, price, share) -> dict:
    """Time and cost for ``profiling.project_to_bytes`` (default 1 TB) of input like this one."""
    target = parse_size(pcfg.project_to_bytes or DEFAULT_TARGET, "profiling.project_to_bytes")  # checked before
    variable = max(wall_s - fixed_s, 0.0)
    rate = input_bytes / variable if variable > 0 else None
    scale = target / input_bytes if input_bytes else None
    seconds = fixed_s + variable * scale if scale is not None else None
    return {
        "target_bytes": target,
        "target_rows": int(rows_in * scale) if scale is not None else None,
        "input_bytes_per_s": rate,
        "seconds": seconds,
        "cost": cost_of(seconds, price, share) if seconds is not None else None,
        "assumptions": [
            f"time grows linearly with input bytes at this run's rate ({_rate_text(rate)} of input), "
            f"plus {fixed_s:.1f} s paid once (starting and stopping the cluster)",
            "the same node, engine settings and worker count",
            "input like this run's: row width, compression ratio, null rates and vocabulary growth",
            "no new bottleneck at scale: no spill, storage as fast as here, vocabularies fit the driver",
            "small inputs may have been served from the page cache, which makes reads look faster",
        ],
    }


def _rate_text(rate: float | None) -> str:
    return "unknown" if rate is None else f"{rate / 1e6:,.1f} MB/s"


def reprice(profile: dict, price_per_hour: float) -> dict:
    """The profile's cost block at another node price (``shardsmith report --cost-per-hour``)."""
    c = dict(profile["cost"])
    c["price_per_hour"] = price_per_hour
    c["run"] = price_per_hour * c["node_hours"]
    c["per_tb_input"] = c["run"] / (profile["input_bytes"] / TB) if profile["input_bytes"] else None
    rows = profile["rows"]["in"]
    c["per_million_rows"] = c["run"] / (rows / 1e6) if rows else None
    proj = dict(c["projection"])
    if proj.get("seconds") is not None:
        proj["cost"] = cost_of(proj["seconds"], price_per_hour, c["billed_share"])
    c["projection"] = proj
    return c
