"""Resume inside a stage: kill a stage's process tree half-way, re-run, and only the unfinished splits
are processed; the committed output is byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from assets.graph import run_stage
from pipelines import storage
from pipelines.config import load_config

FILES = 24
RAW = {"coalesce_bytes": 0}  # one split per file
DOCS_PER_FILE = {"raw": 3000, "clean": 250}  # ingestion is ~10x faster per document than cleaning

DRIVER = """
import sys
from apache_beam.options.pipeline_options import PipelineOptions
from assets.graph import run_stage
from pipelines.config import load_config
cfg = load_config(overrides={"paths": {"input": sys.argv[1], "data_dir": sys.argv[2]}, "raw": {"coalesce_bytes": 0}})
run_stage(sys.argv[3], cfg, PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"]))
print("STAGE FINISHED")
"""


BOOKS = Path(__file__).resolve().parents[1] / "sample_data" / "corpus" / "books"


def _corpus(root: Path, docs: int) -> None:
    """English documents that pass cleaning: windows of the bundled sample books."""
    words = " ".join(p.read_text() for p in sorted(BOOKS.glob("en_book_*.txt"))).split()
    root.mkdir()
    for f in range(FILES):
        lines = []
        for i in range(docs):
            start = ((f * docs + i) * 13) % (len(words) - 120)
            lines.append(json.dumps({"text": " ".join(words[start : start + 120])}))
        (root / f"part-{f:03d}.jsonl").write_text("\n".join(lines) + "\n")


def _options() -> PipelineOptions:
    return PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])


def _records(data: Path, stage: str) -> int:
    return sum(1 for _ in (data / stage).glob("v-*/_done/*.json"))


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
    """SIGKILL the process group of ``proc`` as soon as ``ready()``."""
    deadline = time.monotonic() + 120
    try:
        while not ready():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            assert time.monotonic() < deadline, what
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _shards(manifest: dict) -> dict[str, list[tuple[str, int, str]]]:
    return {
        kind: [(s["path"], s["rows"], s["sha256"]) for s in manifest[kind]["shards"]]
        for kind in ("documents", "ledger")
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["raw", "clean"])
def test_a_killed_stage_resumes_and_commits_what_an_uninterrupted_run_does(
    tmp_path: Path, stage: str
) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    _corpus(corpus, DOCS_PER_FILE[stage])
    cfg = load_config(overrides={"paths": {"input": str(corpus), "data_dir": str(data)}, "raw": RAW})
    if stage != "raw":
        run_stage("raw", cfg, _options())
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(corpus), str(data), stage],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes the whole tree
    )
    _kill_when(proc, lambda: _records(data, stage) >= FILES // 3, "the stage did not start finishing splits")
    done = _records(data, stage)
    assert FILES // 3 <= done < FILES, "kill the stage half-way: make the corpus bigger"
    assert not (data / stage / "CURRENT").exists()

    logs: list[str] = []
    resumed = run_stage(stage, cfg, _options(), log=logs.append)
    info = resumed.manifest["resume"]
    assert info["resumed"] and info["splits"] == FILES
    assert info["done_before"] >= done and info["processed"] == FILES - info["done_before"]
    assert any("were finished by an earlier run" in m for m in logs)
    assert resumed.manifest["stats"]["conserved"]
    assert resumed.manifest["stats"]["documents_out"] + resumed.manifest["stats"]["removed"] == (
        FILES * DOCS_PER_FILE[stage]
    )
    assert resumed.manifest["stats"]["documents_out"] > 0
    for kind in ("documents", "ledger"):  # no leftovers of the splits the kill interrupted
        directory = resumed.version.dir(kind)
        on_disk = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
        assert on_disk == sorted(name for name, _, _ in _shards(resumed.manifest)[kind])

    full = load_config(
        overrides={
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "output": {"incremental": False},
            "raw": RAW,
        }
    )
    fresh = run_stage(stage, full, _options())  # the same fingerprint, no partial left: a full run
    assert fresh.manifest["resume"] == {
        "splits": FILES,
        "resumed": False,
        "done_before": 0,
        "carried": 0,
        "processed": FILES,
    }
    assert fresh.version.name != resumed.version.name
    assert _shards(fresh.manifest) == _shards(resumed.manifest)
    assert fresh.manifest["stats"] == resumed.manifest["stats"]
    assert storage.current_version(data, stage).name == fresh.version.name


@pytest.mark.slow
def test_a_killed_dedup_resumes_from_its_finished_step_tasks(tmp_path: Path) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    _corpus(corpus, DOCS_PER_FILE["clean"])
    cfg = load_config(overrides={"paths": {"input": str(corpus), "data_dir": str(data)}, "raw": RAW})
    for stage in ("raw", "clean"):
        run_stage(stage, cfg, _options())
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(corpus), str(data), "dedup"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def sketched() -> int:  # one sketch task per chunk: one per upstream shard here
        return sum(1 for _ in (data / "dedup").glob("v-*/_scratch/_done/Sketch-*.json"))

    _kill_when(proc, lambda: sketched() >= FILES // 3, "dedup did not start sketching")
    done = sketched()
    assert FILES // 3 <= done < FILES, "kill dedup while it sketches: make the corpus bigger"

    resumed = run_stage("dedup", cfg, _options())
    assert resumed.manifest["stats"]["tasks_resumed"] >= done  # finished sketches were not redone
    full_cfg = load_config(
        overrides={
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "output": {"incremental": False},
            "raw": RAW,
        }
    )
    fresh = run_stage("dedup", full_cfg, _options())
    assert fresh.manifest["stats"]["tasks_resumed"] == 0
    for kind in ("documents", "ledger", "clusters"):
        assert [(s["path"], s["sha256"]) for s in resumed.manifest[kind]["shards"]] == [
            (s["path"], s["sha256"]) for s in fresh.manifest[kind]["shards"]
        ]
    assert resumed.manifest["stats"]["removed_by_reason"] == fresh.manifest["stats"]["removed_by_reason"]
