"""Warm Beam workers (pipelines/runners/warm_sdk_worker_main.py): multi_processing workers forked from
one zygote per driver process, with the same results as Beam's own workers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest

from pipelines.beam_stage import pipeline_options, run_pipeline
from pipelines.config import load_config
from pipelines.runners import warm_sdk_worker_main as warm
from tests.conftest import REPO


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
    socket_dir = Path(os.environ[warm.SOCKET_ENV]).parent
    warm.stop_zygote()
    assert zygote.poll() is not None
    assert not socket_dir.exists()  # nothing left in the temp directory per run


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_zygote_starts_cold_instead_of_hanging_the_job(tmp_path):
    warm.stop_zygote()
    first = _run(tmp_path, "a", True)
    zygote = warm._zygote
    assert zygote is not None and {parent for _, parent in first.values()} == {zygote.pid}
    # the clients of the first job exited (their atexit ran): the zygote's socket is still there
    socket_path = Path(os.environ[warm.SOCKET_ENV])
    assert socket_path.exists()
    socket_path.unlink()  # as if a temp cleaner removed it
    second = _run(tmp_path, "b", True)
    assert sorted(second) == list(range(8))
    assert zygote.pid not in {parent for _, parent in second.values()}  # Beam-started (cold) workers
    warm.stop_zygote()
    assert not socket_path.parent.exists()


KILLED_DRIVER = """
import sys, time
import apache_beam as beam
from pipelines.beam_stage import pipeline_options, run_pipeline
from pipelines.config import load_config

marker = sys.argv[1]

def slow(x):
    open(marker, "w").close()
    time.sleep(120)
    return x

run_pipeline(lambda p: p | beam.Create([1, 2]) | beam.Reshuffle() | beam.Map(slow), pipeline_options(load_config().runner))
"""


def _alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (an orphan's zombie may never be reaped in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _children(parent: int) -> set[int]:
    kids = set()
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent:
            kids.add(int(proc.name))
    return kids


def _zygotes() -> dict[int, str]:
    """pid -> socket path of every running zygote (``... warm_sdk_worker_main serve PATH``)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pipelines.runners.warm_sdk_worker_main" in args and b"serve" in args:
            found[int(proc.name)] = args[args.index(b"serve") + 1].decode()
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="finds the zygote in /proc")
def test_a_killed_driver_leaves_no_zygote_worker_or_socket_directory(tmp_path):
    before = set(_zygotes())
    marker = tmp_path / "in-dofn"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_DRIVER, str(marker)], cwd=REPO, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        (zygote, path), *_ = [(pid, p) for pid, p in _zygotes().items() if pid not in before]
        assert Path(path).exists()
        workers = _children(zygote)
        assert len(workers) == 2
        proc.kill()  # SIGKILL: no atexit, no finally in the driver
        proc.wait()
        deadline = time.monotonic() + 15
        while _alive(zygote) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(zygote), "the zygote outlived its driver"
        assert not any(_alive(pid) for pid in workers), "a forked worker outlived the run"
        # the zygote removes its socket directory as it goes; should it be killed before it can,
        # the next driver to start a zygote removes it
        warm.stop_zygote()
        assert warm.ensure_zygote()
        warm.stop_zygote()
        assert not Path(path).parent.exists(), "the zygote's socket directory was left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
