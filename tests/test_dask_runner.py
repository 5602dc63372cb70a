"""Beam on a real ``dask.distributed`` cluster (scheduler + 2 worker processes on 127.0.0.1).

* the runner fixes of ``pipelines.runners.dask_fixes``, each on the pipeline shape that broke upstream;
* the Beam stages (``raw -> clean -> dedup -> filtered -> bias_report``, ``tokens``,
  ``ablation_tokens``) on Dask give the same files, byte for byte, as on the FnApiRunner;
* counters are unknown (``None``), not zero, where a runner cannot report them, and conservation
  fails when the input count is unknown.

The cluster is started once for the module (separate processes, as a deployment would have them),
stops itself when idle (``--idle-timeout``, workers ``--death-timeout``) and is killed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from assets.graph import run_stage
from pipelines import reports, storage
from pipelines.beam_stage import COUNTERS_UNAVAILABLE, pipeline_options, query_counters
from pipelines.config import ConfigError, load_config
from pipelines.runners import DASK_RUNNER_CLASS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import dedup_corpus  # noqa: E402

CLUSTER_SECONDS = 240  # the scheduler stops after this long idle, the workers when it is gone


def _dask_importable() -> bool:
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


needs_dask = pytest.mark.skipif(not _dask_importable(), reason="dask / distributed are not installed")


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory: pytest.TempPathFactory):
    """``tcp://127.0.0.1:PORT`` of a scheduler with two single-threaded worker processes."""
    if not _dask_importable():
        pytest.skip("dask / distributed are not installed")
    root = tmp_path_factory.mktemp("dask")
    scheduler_file = root / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    dask = [sys.executable, "-m", "dask"]
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        procs.append(subprocess.Popen(dask + args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        start(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file), "--idle-timeout", str(CLUSTER_SECONDS)],
            "scheduler",
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail("the Dask scheduler did not start: " + (root / "scheduler.log").read_text())
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            start(
                ["worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard"]
                + ["--death-timeout", "30", "--memory-limit", "2GiB", "--name", f"w{i}"]
                + ["--local-directory", str(root / f"w{i}")],
                f"worker{i}",
            )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        if _dask_importable():
            from pipelines.runners.dask_fixes import close_clients

            close_clients()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _dask_options(address: str) -> PipelineOptions:
    return PipelineOptions([f"--runner={DASK_RUNNER_CLASS}", f"--dask_client_address={address}"])


# -- the runner fixes, each on the shape that failed upstream --------------------------------------


class _Tagging(beam.DoFn):
    def process(self, x: int):
        beam.metrics.Metrics.counter("test", "seen").inc()
        if x % 2:
            yield beam.pvalue.TaggedOutput("odd", x)
        yield x


class _Pid(beam.DoFn):
    def process(self, x: int):
        yield os.getpid()


class _TouchFile(beam.DoFn):
    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, x: Any):
        Path(self.path).write_text(str(x))


@needs_dask
def test_runner_fixes_on_a_cluster(dask_address: str, tmp_path: Path):
    from pipelines.runners.dask_fixes import CorpusforgeDaskRunner

    p = beam.Pipeline(runner=CorpusforgeDaskRunner(), options=_dask_options(dask_address))
    numbers = p | "Numbers" >> beam.Create(list(range(20))) | "Spread" >> beam.Reshuffle()
    out = numbers | "Tag" >> beam.ParDo(_Tagging()).with_outputs("odd", main="all")
    # multi-output tags: each consumer reads its own tag
    assert_that(out.odd, equal_to(list(range(1, 20, 2))), label="OddOnly")
    # side inputs computed once (and CombineGlobally, which needs one for its default)
    total = out.all | "Total" >> beam.CombineGlobally(sum)
    shares = out.all | "Share" >> beam.Map(lambda x, t: x * 190 // t, beam.pvalue.AsSingleton(total))
    assert_that(shares | "SumShares" >> beam.CombineGlobally(sum), equal_to([190]), label="Shares")
    # finish_bundle outputs: BatchElements emits its last batch there
    batches = (
        p
        | "Ten" >> beam.Create(list(range(10)))
        | beam.BatchElements(min_batch_size=4, max_batch_size=4)
        | "Sizes" >> beam.Map(len)
    )
    assert_that(batches | "Batched" >> beam.CombineGlobally(sum), equal_to([10]), label="AllBatched")
    # GroupByKey by encoded key (1 and 1.0 are different keys to Beam) and by window
    groups = (
        p
        | "Keys" >> beam.Create([(1, "a"), (1.0, "b"), (1, "c")])
        | "Group" >> beam.GroupByKey()
        | "SortedGroups" >> beam.MapTuple(lambda k, vs: (type(k).__name__, sorted(vs)))
    )
    assert_that(groups, equal_to([("int", ["a", "c"]), ("float", ["b"])]), label="EncodedKeys")
    windowed = (
        p
        | "Timed" >> beam.Create([("k", 1), ("k", 2), ("k", 65)])
        | "Stamp" >> beam.Map(lambda kv: beam.window.TimestampedValue(kv, kv[1]))
        | "Fixed" >> beam.WindowInto(beam.window.FixedWindows(60))
        | "GroupWindows" >> beam.GroupByKey()
        | "Sums" >> beam.MapTuple(lambda k, vs: sum(vs))
    )
    assert_that(windowed, equal_to([3, 65]), label="Windows")
    # Reshuffle spreads a small Create over both workers
    pids = numbers | "Pids" >> beam.ParDo(_Pid()) | "DistinctPids" >> beam.Distinct()
    assert_that(pids | "CountPids" >> beam.combiners.Count.Globally(), equal_to([2]), label="TwoWorkers")
    # every sink runs, not only the last one visited
    _ = (
        numbers
        | "SinkA" >> beam.Filter(lambda x: x == 0)
        | "TouchA" >> beam.ParDo(_TouchFile(str(tmp_path / "a")))
    )
    _ = (
        numbers
        | "SinkB" >> beam.Filter(lambda x: x == 1)
        | "TouchB" >> beam.ParDo(_TouchFile(str(tmp_path / "b")))
    )
    result = p.run()
    result.wait_until_finish()
    assert (tmp_path / "a").read_text() == "0" and (tmp_path / "b").read_text() == "1"
    # metrics: attempted values collected from the workers
    assert query_counters(result) == {}  # only the corpusforge namespace is reported
    seen = result.metrics().query(beam.metrics.MetricsFilter().with_name("seen"))["counters"]
    assert [(c.committed, c.attempted) for c in seen] == [(None, 20)]


@needs_dask
def test_a_failing_dofn_fails_the_pipeline(dask_address: str):
    from pipelines.runners.dask_fixes import CorpusforgeDaskRunner

    def boom(x: int) -> int:
        raise ValueError(f"bad element {x}")

    p = beam.Pipeline(runner=CorpusforgeDaskRunner(), options=_dask_options(dask_address))
    _ = p | beam.Create([7]) | "Boom" >> beam.Map(boom)
    with pytest.raises(ValueError, match="bad element 7"):
        p.run().wait_until_finish()


@needs_dask
def test_unsupported_primitives_fail_at_construction(dask_address: str):
    from pipelines.runners.dask_fixes import CorpusforgeDaskRunner

    p = beam.Pipeline(runner=CorpusforgeDaskRunner(), options=_dask_options(dask_address))
    _ = (
        p
        | beam.Create([("k", 1)])
        | beam.WindowInto(beam.window.Sessions(10))
        | "MergingGroup" >> beam.GroupByKey()
    )
    with pytest.raises(NotImplementedError, match="merging windows"):
        p.run()


# -- the data stages: FnApiRunner and Dask give the same bytes -------------------------------------


def _write_corpus(root: Path) -> None:
    """Near-duplicate families and singletons in three JSONL files, plus records to quarantine."""
    records = dedup_corpus.generate(families=24, singletons=12, seed=11)
    root.mkdir(parents=True)
    for i in range(3):
        with open(root / f"part-{i}.jsonl", "w", encoding="utf-8") as fh:
            for r in records[i::3]:
                fh.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
    (root / "bad.jsonl").write_bytes(b'{"text": "unterminated\n{"body": "no text field"}\n')


STAGES = ("raw", "clean", "dedup", "filtered", "bias_report", "tokenizer", "tokens", "ablation_tokens")
VERSION_NAME = re.compile(rb"v-[0-9a-f]{16}-\d{8}T\d{6,12}-[0-9a-f]{4}")  # differs between any two runs


def _run_chain(data: Path, corpus: Path, runner: dict[str, Any], in_memory: bool = False) -> dict[str, Any]:
    cfg = load_config(
        None,
        {
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "runner": runner,
            "raw": {"split_bytes": 64 * 1024},  # several byte-range splits per file
            "output": {"max_shard_bytes": 96 * 1024},
            "tokenizer": {"vocab_size": 512, "sample_bytes": 64 * 1024},
            "tokens": {"seq_len": 64},
        },
    )
    options = pipeline_options(cfg.runner, in_memory=in_memory)
    return {name: run_stage(name, cfg, options, log=lambda _: None) for name in STAGES}


def _fingerprint(version: storage.StageVersion) -> dict[str, str]:
    """sha256 of every file a version holds, by relative path (manifest, marker and dedup's run
    times excluded; the bias report names the versions it read)."""
    root = Path(str(version.path))
    return {
        str(f.relative_to(root)): hashlib.sha256(VERSION_NAME.sub(b"v", f.read_bytes())).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.name not in (storage.MANIFEST, storage.SUCCESS, "timing.json")
    }


@needs_dask
def test_data_stages_on_dask_equal_fnapi(dask_address: str, tmp_path: Path):
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    local = _run_chain(tmp_path / "local", corpus, {"runner": "FnApiRunner"}, in_memory=True)
    started = time.monotonic()
    dask = _run_chain(tmp_path / "dask", corpus, {"runner": "DaskRunner", "dask_address": dask_address})
    elapsed = time.monotonic() - started
    for name in STAGES:
        a, b = local[name].manifest, dask[name].manifest
        assert _fingerprint(local[name].version) == _fingerprint(dask[name].version), name
        for kind in ("documents", "ledger", "clusters"):
            if kind in a:
                assert [s["sha256"] for s in a[kind]["shards"]] == [s["sha256"] for s in b[kind]["shards"]]
        if name != "tokenizer":  # the tokenizer (not a Beam stage) records its training time
            assert a.get("stats") == b.get("stats"), name
    raw, dedup = dask["raw"].manifest, dask["dedup"].manifest
    # the conservation input of ingestion is counted by the job (a statistic), not read from counters
    assert raw["records_read"] == local["raw"].manifest["records_read"] == raw["stats"]["documents_in"]
    assert raw["stats"]["documents_out"] > 50 and raw["stats"]["removed"] == 2
    assert raw["stats"]["conserved"] and reports.conservation(dask["raw"].version, None)["passed"]
    # the corpus has near-duplicate families: dedup removes some, every decision found its document
    assert dedup["stats"]["removed_by_reason"].get("near-duplicate", 0) > 0
    assert dedup["stats"]["components"] > 0 and dedup["stats"]["audit"]["unmatched_decisions"] == 0
    assert not (Path(str(dask["dedup"].version.path)) / "_scratch").exists()
    # Beam counters are monitoring only, and this runner reports them
    assert dask["raw"].manifest["counters"]["raw.documents"] == raw["stats"]["documents_out"]
    assert elapsed < 120


# -- configuration ----------------------------------------------------------------------------------


@needs_dask
def test_dask_runner_config_gives_the_fixed_runner_and_the_scheduler():
    from apache_beam.runners.dask.dask_runner import DaskOptions

    cfg = load_config(None, {"runner": {"runner": "DaskRunner", "dask_address": "tcp://10.0.0.5:8786"}})
    options = pipeline_options(cfg.runner)
    assert options.get_all_options(drop_default=True)["runner"] == DASK_RUNNER_CLASS
    assert options.view_as(DaskOptions).address == "tcp://10.0.0.5:8786"
    upstream = load_config(None, {"runner": {"runner": "apache_beam.runners.dask.dask_runner.DaskRunner"}})
    assert pipeline_options(upstream.runner).get_all_options(drop_default=True)["runner"] == DASK_RUNNER_CLASS


def test_dask_address_needs_the_dask_runner():
    with pytest.raises(ConfigError, match="runner.dask_address"):
        load_config(None, {"runner": {"runner": "FnApiRunner", "dask_address": "tcp://h:8786"}})
    with pytest.raises(ConfigError, match="both name the scheduler"):
        load_config(
            None,
            {
                "runner": {
                    "runner": "DaskRunner",
                    "dask_address": "tcp://h:8786",
                    "options": ["--dask_client_address=tcp://h:8786"],
                }
            },
        )


# -- missing metrics are unknown, not zero ----------------------------------------------------------


class _NoMetrics:
    def metrics(self):
        raise NotImplementedError("collecting metrics will come later!")


def test_query_counters_reports_unavailable_metrics_as_none():
    assert query_counters(_NoMetrics()) is None
    assert "unknown, not zero" in COUNTERS_UNAVAILABLE


def test_conservation_fails_when_the_input_count_is_unknown(tmp_path: Path):
    version = storage.StageVersion(tmp_path / "raw", "v-test")
    version.path.mkdir(parents=True)
    manifest = {
        "documents": {"rows": 3, "bytes": 30, "summary": {}, "shards": []},
        "ledger": {"rows": 1, "bytes": 5, "summary": {}, "shards": []},
        "records_read": None,
    }
    storage.atomic_write_json(version.path / storage.MANIFEST, manifest)
    check = reports.conservation(version, None)
    assert check["passed"] is False and check["input_known"] == 0 and check["documents_in"] == -1
    storage.atomic_write_json(version.path / storage.MANIFEST, {**manifest, "records_read": 4})
    assert reports.conservation(version, None)["passed"] is True


def test_a_runner_without_metrics_records_unknown_counters_and_ingest_still_conserves(
    bad_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from pipelines import beam_stage

    monkeypatch.setattr(beam_stage, "query_counters", lambda result: None)  # as for a runner without metrics
    root, expected = bad_corpus
    cfg = load_config(
        None,
        {
            "paths": {"input": str(root), "data_dir": str(tmp_path / "data")},
            "raw": {"max_record_bytes": 4096},
        },
    )
    result = run_stage("raw", cfg, pipeline_options(cfg.runner, in_memory=True), log=lambda _: None)
    m = result.manifest
    assert m["counters"] is None and m["counters_note"] == COUNTERS_UNAVAILABLE
    assert m["records_read"] == sum(expected.values()) == m["stats"]["documents_in"]  # from the job's data
    assert m["stats"]["conserved"] and reports.conservation(result.version, None)["passed"]
