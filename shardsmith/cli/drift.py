"""``shardsmith drift BASE NEW``: how NEW's data differs from BASE's, per column (PSI, Jensen-Shannon
and KS distances, null rate, out-of-vocabulary rate) and in rows; exit 1 when a threshold is
crossed. Thresholds: the ``drift`` config group (``drift=strict``, ``drift.psi=0.1``) and
``--fail-on``."""

from __future__ import annotations

import json
import os

from shardsmith.cli.common import Parser, is_override
from shardsmith.compiler.config import DriftConfig, compose
from shardsmith.errors import ConfigError
from shardsmith.profiling.report.drift import write_drift_page
from shardsmith.shards.drift import METRICS, compare, text_lines
from shardsmith.shards.manifest import read_manifest

DRIFT_PAGE = "drift.html"


def run(rest: list[str]) -> int:
    overrides = [w for w in rest if is_override(w) and w.lstrip("+~").startswith("drift")]
    p = Parser("drift", description="Compare NEW's data with BASE's; exit 1 "
                                "when a threshold is crossed. key=value words set the drift config group.")
    p.add_argument("base", help="the reference dataset (a directory or its manifest.json)")
    p.add_argument("new", help="the dataset to compare with it")
    p.add_argument("--fail-on", help="thresholds, e.g. psi=0.1,ks=0.2,oov_rate=off (metrics: "
                                     f"{', '.join(METRICS)})")
    p.add_argument("--split", help="compare one split (default: all rows)")
    p.add_argument("--bins", type=int, help="bins at BASE's quantiles for continuous columns (default: drift.bins)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--out", help=f"where to write the HTML page (default: {DRIFT_PAGE} in NEW's directory)")
    p.add_argument("--no-html", action="store_true", help="write no HTML page")
    args = p.parse_args([w for w in rest if w not in overrides])
    cfg = compose(overrides).drift if overrides else DriftConfig()
    thresholds = {m: getattr(cfg, m) for m in METRICS}
    thresholds.update(parse_fail_on(args.fail_on))
    base, new = read_manifest(args.base), read_manifest(args.new)
    result = compare(base, new, thresholds, args.split or cfg.split, args.bins or cfg.bins)
    print(json.dumps(result, indent=1) if args.json else "\n".join(text_lines(result)))
    if not args.no_html:
        target = args.out or os.path.join(new["_dir"], DRIFT_PAGE)
        write_drift_page(target, result)
        if not args.json:
            print(f"page: {target}")
    return 1 if result["drifted"] else 0


def parse_fail_on(text: str | None) -> dict:
    """``psi=0.1,ks=0.2,oov_rate=off`` -> {"psi": 0.1, "ks": 0.2, "oov_rate": None}."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in METRICS:
            raise ConfigError(f"unknown metric '{name}' (expected: {', '.join(METRICS)})", "--fail-on")
        if value.strip() in ("off", "none", "null"):
            out[name] = None
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"expected {name}=<limit>, got {item.strip()!r}", "--fail-on") from None
        if out[name] < 0:
            raise ConfigError(f"expected a limit >= 0, got {item.strip()!r}", "--fail-on")
    return out

