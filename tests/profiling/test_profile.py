"""profile.json: written with every compile, its fields present and consistent with each other and
with the manifest; the cost model; the memory sampler; progress display."""

from __future__ import annotations

import io
import json
import math
import os

import pyarrow.parquet as pq
import pytest

from shardsmith.compiler.config import ProfilingConfig
from shardsmith.profiling import cost, progress, stages
from shardsmith.profiling.sampler import Sampler

ROWS = 120_000  # conftest.demo_data
TOP_KEYS = {"format", "version", "name", "created", "dataset", "manifest", "wall_s", "engine", "config", "rows",
            "input_bytes", "output_bytes", "sections", "stages", "workers", "samples", "spans", "cost", "accounting",
            "machine", "versions"}
STAGE_KEYS = {"name", "kind", "label", "flow", "calls", "wall_s", "max_call_s", "cpu_s", "gpu_s", "rows_in", "rows_out",
              "bytes_in", "bytes_out", "rows_per_s", "bytes_per_s", "cpu_share", "bound", "why", "share_of_task_time"}
WORKER_KEYS = {"label", "role", "id", "pid", "busy_s", "utilisation", "peak_rss_bytes", "lifetime_max_rss_bytes",
               "peak_gpu_bytes", "memory_limit_bytes", "spilled_bytes", "dask"}


def test_profile_is_written_next_to_the_manifest(inprocess_run):
    result, profile = inprocess_run
    assert result.manifest["profile"] == "profile.json"
    assert os.path.isfile(os.path.join(os.path.dirname(result.path), "profile.json"))
    assert profile["format"] == "shardsmith-profile" and profile["version"] == 1
    assert profile["dataset"] == os.path.dirname(os.path.abspath(result.path))
    assert TOP_KEYS <= set(profile)
    for s in profile["stages"]:
        assert STAGE_KEYS <= set(s), s["name"]
    for w in profile["workers"]:
        assert WORKER_KEYS <= set(w)
    m = profile["machine"]
    assert m["logical_cores"] >= 1 and m["memory_bytes"] > 2**28 and m["cpu_model"]
    assert profile["versions"]["pyarrow"] and profile["versions"]["python"]


def test_every_kind_of_stage_is_measured(inprocess_run):
    _, profile = inprocess_run
    names = [s["name"] for s in profile["stages"]]
    for expected in ("driver:plan", "fit0:read", "fit0:stats graph[3]", "fit0:stats graph[5]", "driver:fit0 merge",
                     "transform:read", "transform:graph[0]..graph[3]", "transform:graph[4]", "transform:graph[5]",
                     "transform:split", "write:shards", "driver:manifest"):
        assert expected in names
    by = {s["name"]: s for s in profile["stages"]}
    assert by["transform:read"]["calls"] == profile["engine"]["partitions"] == 4
    assert by["write:shards"]["calls"] == sum(len(s["shards"]) for s in
                                              json.load(open(profile["dataset"] + "/manifest.json"))["splits"].values())
    assert by["transform:graph[0]..graph[3]"]["kind"] == "fused"
    assert by["fit0:stats graph[5]"]["label"].startswith("categorify statistics (26 x ValueCounts")


def test_stage_times_sum_to_the_wall_time(inprocess_run):
    """In-process every stage runs one after another: their seconds add up to the wall time."""
    _, profile = inprocess_run
    stage_sum = sum(s["wall_s"] for s in profile["stages"])
    assert abs(stage_sum - profile["wall_s"]) <= 0.05 * profile["wall_s"], (stage_sum, profile["wall_s"])
    assert stage_sum <= profile["wall_s"]
    sections = sum(s["wall"] for s in profile["sections"])
    assert abs(sections - profile["wall_s"]) <= 0.05 * profile["wall_s"]
    assert profile["accounting"]["stage_sum_s"] == pytest.approx(stage_sum)
    for s in profile["stages"]:
        assert 0 <= s["max_call_s"] <= s["wall_s"] + 1e-9
        assert s["cpu_s"] >= 0


def _flow(profile, flow):
    return [s for s in profile["stages"] if s["flow"] == flow]


def test_rows_out_of_one_stage_are_the_rows_into_the_next(inprocess_run):
    result, profile = inprocess_run
    for flow in ("fit0", "transform"):
        chain = _flow(profile, flow)
        assert len(chain) >= 4
        for a, b in zip(chain, chain[1:]):
            assert a["rows_out"] == b["rows_in"], (a["name"], b["name"])
    rows = result.manifest["rows"]
    transform = _flow(profile, "transform")
    assert transform[0]["rows_in"] == rows["in"] == ROWS
    assert transform[-1]["name"] == "write:shards" and transform[-1]["rows_out"] == rows["out"]


def test_rows_change_where_a_filter_drops_them(demo_data, compile_fn, tmp_path):
    """A pushed-down filter shows in the read stage, a late one in its own stage; the chain holds."""
    graph = [{"op": "filter", "expr": "I2 >= 0"}, {"op": "fill_missing", "cols": ["I1", "I3"], "value": 0},
             {"op": "log1p", "cols": ["I1"]}, {"op": "filter", "expr": "I1 > 0.5"},
             {"op": "normalize", "cols": ["I3"]}, {"op": "categorify", "cols": ["C1", "C5"]}]
    result, profile = compile_fn(demo_data, str(tmp_path / "ds"), "engine=inprocess",
                                   "engine.partition_bytes=1MB", "engine.reads=per_pass", graph=graph)
    table = pq.read_table(f"{demo_data}").to_pandas()
    after_first = int((table["I2"] >= 0).sum())
    import numpy as np

    i1 = np.log1p(table["I1"].fillna(0).astype("float64")).astype("float32")
    kept = int(((table["I2"] >= 0) & (i1 > 0.5)).sum())
    chain = _flow(profile, "transform")
    read = chain[0]
    assert read["rows_in"] == ROWS and read["rows_out"] == after_first
    late = [s for s in chain if s["rows_out"] != s["rows_in"] and s["name"] != "transform:read"]
    assert [s["name"] for s in late] == ["transform:graph[3]"]
    assert late[0]["rows_out"] == kept == result.manifest["rows"]["out"]
    for a, b in zip(chain, chain[1:]):
        assert a["rows_out"] == b["rows_in"]


def test_a_partition_read_once_flows_from_the_first_fit_pass(demo_data, compile_fn, tmp_path):
    """Reading once: each partition is read (every column) and its elementwise prefix applied in
    the first fit pass, then kept; the transform's flow starts from the kept partition."""
    result, profile = compile_fn(demo_data, str(tmp_path / "ds"), "engine=inprocess", "engine.partition_bytes=11MB",
                                 "engine.reads=once")
    by = {s["name"]: s for s in profile["stages"]}
    assert by["fit0:read"]["calls"] == profile["engine"]["partitions"] == 4 and "transform:read" not in by
    assert by["fit0:read"]["label"] == "fit pass 0: read partitions, kept for every pass"
    assert abs(by["fit0:read"]["bytes_in"] - sum(i["bytes"] for i in result.manifest["inputs"])) <= 8
    fit = [s["name"] for s in _flow(profile, "fit0")]
    assert fit[:2] == ["fit0:read", "fit0:graph[0]..graph[2]"] and "transform:graph[0]..graph[2]" not in by
    transform = _flow(profile, "transform")
    assert transform[0]["name"] == "transform:graph[3]..graph[3]" and transform[0]["rows_in"] == ROWS
    for chain in (_flow(profile, "fit0"), transform):
        for a, b in zip(chain, chain[1:]):
            assert a["rows_out"] == b["rows_in"], (a["name"], b["name"])


def test_bytes_in_and_out(inprocess_run):
    result, profile = inprocess_run
    by = {s["name"]: s for s in profile["stages"]}
    files = sum(i["bytes"] for i in result.manifest["inputs"])
    # Every column is read, so the partitions' on-disk estimates add up to the files (rounding aside).
    assert abs(by["transform:read"]["bytes_in"] - files) <= 8
    assert profile["input_bytes"] == files
    shard_bytes = sum(s["bytes"] for split in result.manifest["splits"].values() for s in split["shards"])
    assert by["write:shards"]["bytes_out"] == shard_bytes == profile["output_bytes"]
    for s in _flow(profile, "transform"):
        assert s["bytes_out"] > 0 and s["rows_per_s"] == pytest.approx(s["rows_in"] / s["wall_s"])


def test_memory_samples_and_workers(inprocess_run):
    _, profile = inprocess_run
    (worker,) = profile["workers"]
    assert worker["role"] == "inprocess" and worker["label"] == "inprocess"
    samples = profile["samples"]["inprocess"]
    assert len(samples["t"]) >= 3 and samples["t"] == sorted(samples["t"])
    assert max(samples["rss"]) == worker["peak_rss_bytes"] > 50e6
    assert worker["lifetime_max_rss_bytes"] >= worker["peak_rss_bytes"] * 0.99
    assert 0 < worker["utilisation"] <= 1.0
    assert {sp[1] for sp in profile["spans"]} == {"inprocess"}
    for sp in profile["spans"]:
        assert 0 <= sp[3] <= sp[4] <= profile["wall_s"] + 1e-3


def test_cost_block_follows_the_measured_wall_time(inprocess_run):
    result, profile = inprocess_run
    c, wall = profile["cost"], profile["wall_s"]
    assert c["price_per_hour"] == 3.6 and c["billed_share"] == 1.0
    assert c["run"] == pytest.approx(wall / 1000)  # 3.6 per hour is 0.001 per second
    assert c["per_tb_input"] == pytest.approx(c["run"] / (profile["input_bytes"] / 1e12))
    assert c["per_million_rows"] == pytest.approx(c["run"] / (ROWS / 1e6))
    p = c["projection"]
    assert p["target_bytes"] == 10**10
    fixed = sum(s["wall_s"] for s in profile["stages"] if s["kind"] == "startup")
    assert p["seconds"] == pytest.approx(fixed + (wall - fixed) * 1e10 / profile["input_bytes"])
    assert p["cost"] == pytest.approx(p["seconds"] / 1000)
    assert any("linearly" in a for a in p["assumptions"])


def test_cost_model_on_known_numbers():
    pc = ProfilingConfig(cost_per_hour=2.0, gpus_per_node=8, project_to_bytes="1TB")
    node = cost.cost_model(pc, wall_s=7200, fixed_s=200, input_bytes=5 * 10**11, rows_in=10**9,
                           engine_kind="cpu", workers=2)
    assert node["run"] == pytest.approx(4.0) and node["billed_share"] == 1.0
    assert node["per_tb_input"] == pytest.approx(8.0) and node["per_million_rows"] == pytest.approx(0.004)
    assert node["projection"]["seconds"] == pytest.approx(200 + 7000 * 2)
    assert node["projection"]["cost"] == pytest.approx(2.0 * 14200 / 3600)
    gpu = cost.cost_model(pc, wall_s=7200, fixed_s=200, input_bytes=5 * 10**11, rows_in=10**9,
                          engine_kind="gpu", workers=2)
    assert gpu["billed_share"] == 0.25 and gpu["run"] == pytest.approx(1.0)
    unpriced = cost.cost_model(ProfilingConfig(), 3600, 0, 10**12, 10**6, "cpu", 1)
    assert unpriced["run"] is None and unpriced["node_hours"] == pytest.approx(1.0)
    assert unpriced["projection"]["seconds"] == pytest.approx(3600)


def test_profiling_off_writes_no_profile_and_the_same_shards(demo_data, compile_fn, inprocess_run, tmp_path):
    result_on, _ = inprocess_run
    result_off, profile = compile_fn(demo_data, str(tmp_path / "ds"), "engine=inprocess",
                                       "engine.partition_bytes=1MB", "profiling.enabled=false")
    assert profile is None and result_off.manifest["profile"] is None
    def shas(m):
        return [s["sha256"] for split in m["splits"].values() for s in split["shards"]]

    assert shas(result_off.manifest) == shas(result_on.manifest)


def test_a_local_dask_cluster_is_profiled_per_worker(demo_data, compile_fn, tmp_path):
    result, profile = compile_fn(demo_data, str(tmp_path / "ds"), "engine.n_workers=2", "engine.processes=true",
                                   "engine.partition_bytes=1MB")
    assert profile["engine"]["executor"] == "dask" and profile["engine"]["workers"] == 2
    workers = [w for w in profile["workers"] if w["role"] == "worker"]
    assert sorted(w["label"] for w in workers) == ["w0", "w1"]
    assert all(w["address"].startswith("tcp://") and w["peak_rss_bytes"] > 0 for w in workers)
    assert {w["label"] for w in profile["workers"]} == set(profile["samples"])
    assert {sp[1] for sp in profile["spans"]} <= set(profile["samples"])
    assert sum(w["busy_s"] for w in workers) > 0
    assert all("execute.thread-cpu.seconds" in w["dask"] for w in workers if w["busy_s"])
    assert profile["engine"]["dashboard"] is None or profile["engine"]["dashboard"].startswith("http")
    for flow in ("fit0", "transform"):
        chain = _flow(profile, flow)
        for a, b in zip(chain, chain[1:]):
            assert a["rows_out"] == b["rows_in"]
    assert _flow(profile, "transform")[-1]["rows_out"] == result.manifest["rows"]["out"]


def test_profiling_options_are_checked():
    from shardsmith.compiler.config import compose
    from shardsmith.errors import ConfigError

    for override, key in (("profiling.cost_per_hour=-1", "profiling.cost_per_hour"),
                          ("profiling.project_to_bytes=lots", "profiling.project_to_bytes"),
                          ("profiling.progress=fancy", "profiling.progress"),
                          ("profiling.sample_interval=0", "profiling.sample_interval")):
        with pytest.raises(ConfigError) as err:
            compose(["source.paths=[x.parquet]", override])
        assert err.value.where == key


# --- bounds ----------------------------------------------------------------------------------------
def _stage(kind="op", wall=1.0, cpu=0.9, gpu=None):
    return {"kind": kind, "wall_s": wall, "cpu_s": cpu, "cpu_share": cpu / wall, "gpu_s": gpu}


def test_bound_classification():
    assert stages.classify(_stage(cpu=0.9), False, False)[0] == "compute"
    assert stages.classify(_stage(kind="read", cpu=0.2), False, False)[0] == "I/O"
    assert stages.classify(_stage(kind="write", cpu=0.1), False, False)[0] == "I/O"
    assert stages.classify(_stage(cpu=0.2), False, False)[0] == "waiting"
    assert stages.classify(_stage(cpu=0.1, gpu=0.8), False, False)[0] == "compute"
    assert stages.classify(_stage(cpu=0.9), True, False)[0] == "spill"
    assert stages.classify(_stage(cpu=0.9), False, True)[0] == "spill"
    assert stages.classify(_stage(kind="startup", cpu=0.0), False, False)[0] == "startup"


def test_spill_windows_flag_the_stages_that_overlap_them():
    from shardsmith.profiling.assemble import _flag_windows

    sampler = {"id": "h:1", "interval_s": 1.0, "memory_limit_bytes": 1000,
               "samples": {"t": [0.0, 1.0, 2.0, 3.0], "rss": [100, 100, 900, 100], "spilled": [0, 0, 50, 50]}}
    windows = _flag_windows([sampler])
    assert windows["spill"]["h:1"] == [(1.0, 2.0)]
    assert windows["pressure"]["h:1"] == [(1.0, 2.0)]
    inside = [{"worker": "h:1", "start": 1.5, "wall": 0.2}]
    before = [{"worker": "h:1", "start": 0.1, "wall": 0.5}]
    elsewhere = [{"worker": "h:2", "start": 1.5, "wall": 0.2}]
    assert stages.overlaps(inside, windows["spill"])
    assert not stages.overlaps(before, windows["spill"]) and not stages.overlaps(elsewhere, windows["spill"])


# --- the sampler and the progress display --------------------------------------------------------------
def test_sampler_keeps_peaks_when_it_thins_its_series():
    s = Sampler(interval=0.05, max_samples=4)
    s._last = (0.0, 0.0)
    for _ in range(20):
        s.sample()
    assert len(s.series["t"]) < 8 and s.interval > 0.05
    real_peak = max(s.series["rss"])
    summary = s.summary()
    assert summary["peak_rss_bytes"] == real_peak > 0
    assert summary["samples"]["t"] == sorted(summary["samples"]["t"])


def test_sampler_thread_runs_and_stops():
    s = Sampler(interval=0.02).start()
    import time

    time.sleep(0.2)
    summary = s.stop()
    assert len(summary["samples"]["t"]) >= 4
    assert summary["sampler_cpu_s"] < 0.2


class _Part:
    def __init__(self, rows):
        self.rows = rows


def test_progress_log_lines(monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    lines = []
    p = progress.Progress("transform", [_Part(1000)] * 4, mode="log", log=lines.append)
    for _ in range(3):
        p.advance(_Part(1000))
    p.close()
    assert len(lines) == 3
    assert lines[-1].startswith("transform: 3k/4k rows (75%)") and "rows/s" in lines[-1] and "ETA" in lines[-1]


def test_progress_bar_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "BAR_DELAY", 0.0)
    monkeypatch.setattr(progress, "REDRAW", 0.0)
    out = io.StringIO()
    p = progress.Progress("fit pass 0", [_Part(-1)] * 2, mode="bar", stream=out)
    assert p.unit == "partitions" and p.total == 2
    p.advance(_Part(-1))
    p.advance(_Part(-1))
    p.close()
    text = out.getvalue()
    assert "\rfit pass 0 |" in text and "2/2 partitions" in text and "ETA" in text
    assert "#" * 10 in text and text.endswith("\r\x1b[K")


def test_progress_mode_follows_the_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert progress.resolve_mode("auto", Tty()) == "bar"
    assert progress.resolve_mode("auto", io.StringIO()) == "log"
    monkeypatch.setenv("CI", "true")
    assert progress.resolve_mode("auto", Tty()) == "log"
    assert progress.resolve_mode("off", Tty()) == "off"


def test_nvtx_ranges_are_a_no_op_without_nvtx():
    from shardsmith.profiling import nvtx

    with nvtx.annotate("stage"):
        value = 1
    assert value == 1
    assert nvtx.available() in (True, False)


@pytest.mark.gpu
def test_gpu_stages_carry_cuda_event_times(demo_data, compile_fn, tmp_path):
    from shardsmith.backends import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        import shardsmith.backends.gpu  # noqa: F401
        from shardsmith.backends.gpu import GpuBackend  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the GPU backend is not on this branch: {exc}")
    _, profile = compile_fn(demo_data, str(tmp_path / "ds"), "engine=gpu", "engine.n_workers=1")
    transform = _flow(profile, "transform")
    assert all(s["gpu_s"] is not None and s["gpu_s"] >= 0 for s in transform)
    assert any(w.get("peak_gpu_bytes") for w in profile["workers"])
    assert profile["machine"]["gpus"]
    assert not math.isnan(profile["wall_s"])


def test_a_local_cluster_logs_its_dashboard_address(monkeypatch):
    from shardsmith.compiler.config import EngineConfig
    from shardsmith.runtime import cluster

    lines = []
    with cluster.executor_for(EngineConfig(n_workers=1, dashboard=True), "cpu", lines.append):
        pass
    assert lines[0].startswith("started a local CPU cluster: 1 worker(s), dashboard http://127.0.0.1:")
    monkeypatch.setattr(cluster, "_has_bokeh", lambda: False)

    class Ex:
        dashboard = "http://127.0.0.1:1/status"

    # Asked for without bokeh: says why there is none; not asked for (the default): says nothing.
    assert "no dashboard: it needs bokeh" in cluster._dashboard_note(EngineConfig(dashboard=True), Ex())
    assert cluster._dashboard_note(EngineConfig(), Ex()) == ""


class _Backend:
    """Just enough of a backend for a Recorder: frames are lists."""

    def num_rows(self, frame):
        return len(frame)

    def nbytes(self, frame):
        return 8 * len(frame)


def test_recorder_pushes_an_nvtx_range_per_stage(monkeypatch):
    import sys
    import types

    from shardsmith.profiling import nvtx
    from shardsmith.profiling.spans import recorder

    calls = []
    fake = types.SimpleNamespace(push_range=lambda message, domain: calls.append(("push", message, domain)),
                                 pop_range=lambda domain: calls.append(("pop", domain)))
    monkeypatch.setitem(sys.modules, "nvtx", fake)
    nvtx._module.cache_clear()
    try:
        rec = recorder(_Backend(), "transform", 3, {"nvtx": True})
        span = rec.start("graph[0]", "op", [1, 2, 3])
        rec.stop(span, [1, 2])
        out = rec.finish()
    finally:
        nvtx._module.cache_clear()
    assert calls == [("push", "transform:graph[0]", "shardsmith"), ("pop", "shardsmith")]
    (s,) = out["spans"]
    assert (s["rows_in"], s["rows_out"], s["bytes_in"], s["bytes_out"]) == (3, 2, 24, 16)
    assert s["partition"] == 3 and s["wall"] >= 0 and "gpu" not in s


def test_recorder_reads_cuda_events_once_at_the_end(monkeypatch):
    """The GPU timer with a stand-in for CuPy: events are read after the task, not between stages."""
    import sys
    import types

    from shardsmith.profiling.spans import recorder

    log = []

    class Event:
        def __init__(self):
            self.t = None

        def record(self):
            self.t = len(log)
            log.append("record")

        def synchronize(self):
            log.append("sync")

    def elapsed(start, end):
        return 1000.0 * (end.t - start.t)  # milliseconds, as CUDA reports them

    cuda = types.SimpleNamespace(Event=Event, get_elapsed_time=elapsed)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    rec = recorder(_Backend(), "transform", 0, {"gpu": True})
    for key in ("read", "graph[0]"):
        span = rec.start(key, "op", [1])
        rec.stop(span, [1])
    assert "sync" not in log
    out = rec.finish()
    assert log.count("sync") == 2
    assert [s["gpu"] for s in out["spans"]] == [1.0, 1.0]
