"""Warm Beam workers (pipelines/runners/warm_sdk_worker_main.py): multi_processing workers forked from
one zygote per driver process, with the same results as Beam's own workers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import apache_beam as beam
import pytest

from pipelines.beam_stage import pipeline_options, run_pipeline
from pipelines.config import load_config
from pipelines.runners import warm_sdk_worker_main as warm


def _where(out_dir: str):
    def record(x: int) -> int:
        Path(out_dir, f"{x}.txt").write_text(f"{os.getpid()} {os.getppid()}")
        return x

    return record


def _run(tmp_path: Path, name: str, warm_workers: bool) -> dict[int, tuple[int, int]]:
    out = tmp_path / name
    out.mkdir()
    runner = dataclasses.replace(load_config().runner, warm_workers=warm_workers)  # default: on
    options = pipeline_options(runner)
    run_pipeline(
        lambda p: p | beam.Create(list(range(8))) | beam.Reshuffle() | beam.Map(_where(str(out))), options
    )
    return {int(f.stem): tuple(int(v) for v in f.read_text().split()) for f in out.glob("*.txt")}


@pytest.mark.slow
def test_workers_fork_from_one_zygote_per_driver_and_do_the_same_work(tmp_path):
    warm.stop_zygote()
    first = _run(tmp_path, "a", True)
    zygote = warm._zygote
    assert zygote is not None and zygote.poll() is None
    assert sorted(first) == list(range(8))
    assert {parent for _, parent in first.values()} == {zygote.pid}  # forked, not started by Beam
    assert all(pid != os.getpid() for pid, _ in first.values())  # in worker processes
    second = _run(tmp_path, "b", True)
    assert warm._zygote is zygote and {parent for _, parent in second.values()} == {zygote.pid}
    cold = _run(tmp_path, "c", False)
    assert sorted(cold) == sorted(first) and zygote.pid not in {parent for _, parent in cold.values()}
    warm.stop_zygote()
    assert zygote.poll() is not None
