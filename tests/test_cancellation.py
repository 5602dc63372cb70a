"""Interrupting a stage cancels its Beam job: no committed partial version, no worker left behind.

* ``run_pipeline`` with a fake runner: an interrupt (or failure) while waiting calls
  ``result.cancel()`` once and re-raises; runners that cannot cancel are tolerated.
* The local FnApiRunner (``multi_processing``, 2 workers) in a subprocess, interrupted with SIGINT
  (Ctrl-C, Dagster's terminate) or SIGTERM (``kill``, Kubernetes) while ``raw`` runs: the process
  exits, the previous version stays current, the partial version stays uncommitted (kept for a
  resumed run), no ``sdk_worker_main`` process of that run survives.
* A worker stuck in C code (a regex holding the GIL) is stopped by the watchdog instead of hanging
  Beam's own clean-up forever.
* ``corpusforge run --select raw`` (Dagster in-process): the run is marked canceling as the UI's
  Terminate does, then interrupted; the step raises ``DagsterExecutionInterruptedError`` and the run
  ends CANCELED with nothing committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState

from pipelines import beam_cancel
from pipelines.beam_stage import run_pipeline
from tests.conftest import REPO

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds worker processes in /proc")

# --------------------------------------------------------------------------------------------------
# run_pipeline with a fake runner


class Interrupted(BaseException):
    """Stands in for dagster's DagsterExecutionInterruptedError (a BaseException, not an Exception)."""


class FakeResult(PipelineResult):
    def __init__(self, error: BaseException | None, state: str, cancel_error: Exception | None) -> None:
        super().__init__(state)
        self.error, self.cancel_error, self.cancels = error, cancel_error, 0

    def wait_until_finish(self, duration=None):
        if self.error is not None:
            raise self.error
        self._state = PipelineState.DONE
        return self._state

    def cancel(self):
        self.cancels += 1
        if self.cancel_error is not None:
            raise self.cancel_error
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self):
        raise NotImplementedError


class FakeRunner(PipelineRunner):
    """Returns ``FakeRunner.next_result`` at once, like a remote runner after submitting the job."""

    next_result: FakeResult | None = None

    def run_pipeline(self, pipeline, options):
        assert FakeRunner.next_result is not None
        return FakeRunner.next_result


def run_fake(error=None, state=PipelineState.RUNNING, cancel_error=None) -> FakeResult:
    result = FakeRunner.next_result = FakeResult(error, state, cancel_error)
    options = PipelineOptions([f"--runner={__name__}.FakeRunner"])
    run_pipeline(lambda p: p | beam.Create([1]), options)
    return result


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), Interrupted()])
def test_an_interrupt_while_waiting_cancels_the_job_and_propagates(error):
    with pytest.raises(type(error)):
        run_fake(error)
    assert FakeRunner.next_result is not None and FakeRunner.next_result.cancels == 1


def test_a_runner_that_cannot_cancel_is_tolerated():
    for cancel_error in (NotImplementedError(), OSError("job service unreachable")):
        with pytest.raises(KeyboardInterrupt):  # the interrupt, not the failed cancel
            run_fake(KeyboardInterrupt(), cancel_error=cancel_error)
        assert FakeRunner.next_result is not None and FakeRunner.next_result.cancels == 1


def test_a_finished_job_is_not_cancelled():
    with pytest.raises(RuntimeError, match="job failed"):
        run_fake(RuntimeError("job failed"), state=PipelineState.FAILED)
    assert FakeRunner.next_result is not None and FakeRunner.next_result.cancels == 0
    assert run_fake().cancels == 0 and FakeRunner.next_result.state == PipelineState.DONE


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_during_a_job_unwinds_like_ctrl_c_and_handlers_are_restored():
    inherited = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # Python's own handlers, whatever this test process inherited (a background job ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        before = {s: signal.getsignal(s) for s in inherited}
        with pytest.raises(KeyboardInterrupt), beam_cancel.local_workers_stopped():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in this thread first
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        for sig, handler in inherited.items():
            signal.signal(sig, handler)


def test_an_ignored_signal_stays_ignored():
    """``nohup``-style ignores are the caller's choice: the wrapper installs nothing for them."""
    inherited = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with beam_cancel.local_workers_stopped():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, inherited)


# --------------------------------------------------------------------------------------------------
# the local FnApiRunner in a subprocess

STAGE_DRIVER = """
import sys
from apache_beam.options.pipeline_options import PipelineOptions
from assets.graph import run_stage
from pipelines.config import load_config

cfg = load_config(overrides={"paths": {"input": sys.argv[1], "data_dir": sys.argv[2]},
                             "raw": {"split_bytes": 1 << 20}})
warm = ["--experiments=corpusforge_warm_workers"] if sys.argv[3:] == ["warm"] else []
options = PipelineOptions(
    ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2", *warm]
)
run_stage("raw", cfg, options)
print("STAGE FINISHED", flush=True)
"""

STUCK_DRIVER = """
import re, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines import beam_cancel
from pipelines.beam_stage import run_pipeline

beam_cancel.GRACE_S = 2.0
marker = sys.argv[1]

def stuck(x):
    open(marker, "w").close()
    re.match(r"(a+)+$", "a" * 40 + "b")  # exponential backtracking in C, holding the GIL
    return x

options = PipelineOptions(
    ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
)
run_pipeline(lambda p: p | beam.Create([1, 2]) | beam.Reshuffle() | beam.Map(stuck), options)
print("STAGE FINISHED", flush=True)
"""


def write_corpus(root: Path, mib: int) -> None:
    """``mib`` MiB of JSONL: enough for the raw stage to run for several seconds on 2 workers."""
    root.mkdir(parents=True, exist_ok=True)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "near",
        "the",
        "river",
        "bank",
        "while",
        "data",
        "flows",
    ]
    lines, size = [], 0
    while size < 1 << 20:
        text = " ".join(words[(len(lines) + i) % len(words)] for i in range(40 + len(lines) % 300))
        lines.append(json.dumps({"text": f"{len(lines)} {text}"}) + "\n")
        size += len(lines[-1])
    block = "".join(lines)
    with open(root / "big.jsonl", "w", encoding="utf-8") as fh:
        for _ in range(mib):
            fh.write(block)


def default_signals() -> None:
    """Undo an inherited ignore: a shell's background job starts with SIGINT ignored (``nohup cmd &``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start(script: str, *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The driver in its own session with default signal handlers: a signal reaches it alone, as
    from Dagster or Kubernetes, however the test run itself was started."""
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signals,
            env=env,
        )


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """The ``pids`` still running (not exited, not zombie) after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = set()
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_bytes()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if stat[stat.rindex(b")") + 2 :].split()[0] != b"Z" and b"sdk_worker_main" in cmd:
                alive.add(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def interrupt(proc: subprocess.Popen, sig: int, log: Path, timeout: float = 60.0) -> float:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        workers = beam_cancel.sdk_worker_pids(proc.pid)
        proc.kill()
        beam_cancel.stop_processes(workers)
        pytest.fail(f"the driver did not exit within {timeout}s of the signal:\n{log.read_text()[-3000:]}")
    return time.monotonic() - sent


def committed_raw(tmp_path: Path) -> tuple[Path, str]:
    """A data directory whose ``raw`` stage has a committed version (of a tiny corpus)."""
    from assets.graph import run_stage
    from pipelines.config import load_config

    small = tmp_path / "small"
    small.mkdir()
    (small / "a.jsonl").write_text(json.dumps({"text": "An earlier, committed corpus."}) + "\n")
    data = tmp_path / "data"
    cfg = load_config(overrides={"paths": {"input": str(small), "data_dir": str(data)}})
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])
    return data, run_stage("raw", cfg, options).version.name


def raw_versions(data: Path) -> set[str]:
    return {p.name for p in (data / "raw").glob("v-*")}


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "mode"),
    [(signal.SIGINT, "cold"), (signal.SIGTERM, "cold"), (signal.SIGTERM, "warm")],
    ids=["SIGINT", "SIGTERM", "SIGTERM-warm-workers"],
)
def test_interrupting_a_local_multiprocess_stage_commits_nothing_and_stops_its_workers(tmp_path, sig, mode):
    data, previous = committed_raw(tmp_path)
    write_corpus(tmp_path / "big", mib=120)
    log = tmp_path / "driver.log"
    proc = start(STAGE_DRIVER, str(tmp_path / "big"), str(data), mode, log=log)
    # warm: the zygote, and per worker its client and the forked worker (all named sdk_worker_main)
    expected = 5 if mode == "warm" else 2
    try:
        wait_for(
            lambda: len(beam_cancel.sdk_worker_pids(proc.pid)) >= expected and len(raw_versions(data)) > 1,
            120,
            "the job's workers and its new version",
            proc,
            log,
        )
        time.sleep(2.0)
        workers = beam_cancel.sdk_worker_pids(proc.pid)
        assert proc.poll() is None, "the stage finished before the signal: make the corpus bigger"
        assert len(workers) >= expected
        took = interrupt(proc, sig, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode != 0 and "STAGE FINISHED" not in out
    assert "KeyboardInterrupt" in out
    assert gone(workers) == set(), "Beam worker processes outlived the interrupted run"
    assert (data / "raw" / "CURRENT").read_text().strip() == previous
    partial = raw_versions(data) - {previous}
    assert len(partial) == 1, "the partial version should stay (invisible) for a resumed run"
    assert not (data / "raw" / partial.pop() / "_SUCCESS").exists()
    assert "to resume" in out
    assert took < 30


@needs_proc
@pytest.mark.slow
def test_a_worker_stuck_in_c_code_is_stopped_after_the_grace_period(tmp_path):
    marker, log = tmp_path / "in-dofn", tmp_path / "driver.log"
    proc = start(STUCK_DRIVER, str(marker), log=log)
    try:
        wait_for(marker.exists, 120, "the DoFn to start", proc, log)
        time.sleep(0.5)
        workers = beam_cancel.sdk_worker_pids(proc.pid)
        took = interrupt(proc, signal.SIGINT, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "STAGE FINISHED" not in log.read_text()
    assert "still run" in log.read_text()  # the watchdog's warning
    assert gone(workers, timeout=5) == set()
    assert took < 30  # without the watchdog Beam's clean-up waits for the regex (hours)


@needs_proc
@pytest.mark.slow
def test_terminating_a_dagster_run_cancels_the_stage(tmp_path):
    """What the UI's Terminate does, minus the gRPC hop: mark the run CANCELING, then SIGINT the
    process executing it (Dagster's run worker sends itself SIGINT when told to terminate)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    data, previous = committed_raw(tmp_path)
    write_corpus(tmp_path / "big", mib=120)
    config = tmp_path / "config.yaml"
    config.write_text("raw:\n  split_bytes: 1048576\n")
    home = tmp_path / "dagster_home"
    log = tmp_path / "cli.log"
    cli = "import sys; from assets.cli import main; sys.exit(main())"
    args = ["run", "--config", str(config), "--input", str(tmp_path / "big"), "--data-dir", str(data)]
    proc = start(
        cli,
        *args,
        "--workers",
        "2",
        "--select",
        "raw",
        log=log,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    try:
        wait_for(
            lambda: beam_cancel.sdk_worker_pids(proc.pid) and len(raw_versions(data)) > 1,
            180,
            "the raw step's Beam workers",
            proc,
            log,
        )
        time.sleep(1.0)
        workers = beam_cancel.sdk_worker_pids(proc.pid)
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        instance.report_run_canceling(run)
        interrupt(proc, signal.SIGINT, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode != 0 and "DagsterExecutionInterruptedError" in out
    assert gone(workers) == set()
    assert (data / "raw" / "CURRENT").read_text().strip() == previous
    partial = raw_versions(data) - {previous}  # kept, uncommitted, for a resumed run
    assert len(partial) == 1 and not (data / "raw" / partial.pop() / "_SUCCESS").exists()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
