"""Cancel the Beam job a stage started when the driver is interrupted.

An interrupt is Ctrl-C (``KeyboardInterrupt``), ``SIGTERM``, or Dagster terminating the run: Dagster
sends ``SIGINT`` to the run worker and its handler raises ``DagsterExecutionInterruptedError`` (a
``BaseException``) in the step, mapping ``SIGTERM`` the same way. Either way the exception unwinds
``beam_stage.run_pipeline`` and the stage's ``storage.transaction``, which deletes the partial
version; this module makes sure the Beam job and its workers do not outlive it.

* Runners that return a handle from ``pipeline.run()`` (Dataflow, the portable Flink / Spark / Prism
  job servers, Dask): an interrupt while waiting calls ``result.cancel()`` (:func:`cancel`).
* The local FnApiRunner has no handle: it runs the whole job inside ``pipeline.run()`` and its
  result cannot be cancelled. The interrupt unwinds ``run()``; Beam then closes the control channel
  and its ``sdk_worker_main`` subprocesses (``direct_running_mode=multi_processing``) exit. Should
  one not exit within ``grace`` seconds (a DoFn stuck in C code), a watchdog started by the signal
  handler terminates it, so Beam's own clean-up cannot hang; any left once the interrupt has
  unwound are terminated too (:func:`local_workers_stopped`).
* ``SIGTERM`` with Python's default action (a plain ``corpusforge run`` or script, not a Dagster run
  worker) would kill the driver on the spot, orphaning the workers and leaving the partial version
  on disk; while a job runs it raises ``KeyboardInterrupt`` instead, as Dagster does.

Worker processes are found as descendants of this process whose command line names
``sdk_worker_main`` (``/proc``, else ``psutil`` when installed), excluding those that already ran
before the job started. This module never imports Dagster.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

WORKER_MARKER = "sdk_worker_main"  # FnApiRunner multi_processing: python -m ...worker.sdk_worker_main
GRACE_S = 10.0  # how long workers may take to exit by themselves after an interrupt (default)


def cancel(result: Any) -> None:
    """Cancel a running Beam job through its ``PipelineResult``; runners that cannot are tolerated."""
    try:
        from apache_beam.runners.runner import PipelineState

        if PipelineState.is_terminal(result.state):
            return
    except Exception:  # state unknown (e.g. the service is unreachable): try to cancel anyway
        pass
    try:
        result.cancel()
        log.warning("cancelled the Beam job (%s)", type(result).__name__)
    except NotImplementedError:
        log.info("the runner's %s cannot cancel its job", type(result).__name__)
    except Exception as exc:  # already finished, service unreachable, ...
        log.warning("could not cancel the Beam job (%s): %s", type(result).__name__, exc)


# --------------------------------------------------------------------------------------------------
# local worker processes


def _proc_children() -> dict[int, list[int]] | None:
    """Parent pid -> child pids from ``/proc``; ``None`` where there is no ``/proc``."""
    if not os.path.isdir("/proc/self"):
        return None
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":  # exited, not yet reaped
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sdk_worker_pids(root: int | None = None) -> set[int]:
    """PIDs of the descendants of process ``root`` (default: this one) that run (or wrap) a Beam
    ``sdk_worker_main``."""
    root = os.getpid() if root is None else root
    tree = _proc_children()
    if tree is None:
        try:
            import psutil
        except ImportError:
            return set()
        found = set()
        try:
            children = psutil.Process(root).children(recursive=True)
        except psutil.Error:
            return set()
        for child in children:
            try:
                if WORKER_MARKER in " ".join(child.cmdline()):
                    found.add(child.pid)
            except psutil.Error:
                continue
        return found
    found, stack = set(), list(tree.get(root, []))
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        if WORKER_MARKER in _cmdline(pid):
            found.add(pid)
    return found


def _alive(pids: Iterable[int]) -> set[int]:
    """The ``pids`` that still exist as one of this process's sdk workers (guards against pid reuse)."""
    return set(pids) & sdk_worker_pids()


def stop_processes(pids: Iterable[int], timeout: float = 5.0) -> set[int]:
    """``SIGTERM`` the ``pids`` still alive, ``SIGKILL`` those left after ``timeout``; returns them."""
    targets = _alive(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not (left := _alive(targets)):
            break
        if sig == signal.SIGKILL:
            log.warning("Beam worker processes %s did not stop on SIGTERM: killing them", sorted(left))
        for pid in left:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(left) and time.monotonic() < deadline:
            time.sleep(0.05)
    return targets


def _watchdog(targets: set[int], grace: float) -> None:
    """In ``grace`` seconds, stop the ``targets`` that have not exited by themselves."""
    if not targets:
        return

    def run() -> None:
        time.sleep(grace)
        if left := _alive(targets):
            log.warning(
                "Beam workers %s still run %.0fs after the interrupt: stopping them", sorted(left), grace
            )
            stop_processes(left)

    threading.Thread(target=run, name="beam-worker-watchdog", daemon=True).start()


@contextmanager
def local_workers_stopped(grace: float | None = None) -> Iterator[None]:
    """Run a Beam job inside: an interrupt stops the local worker processes it started.

    In the main thread, ``SIGINT`` and ``SIGTERM`` handlers wrap the current ones for the duration
    (restored afterwards): they call the previous handler (Python's raises ``KeyboardInterrupt``,
    Dagster's ``DagsterExecutionInterruptedError``; a default ``SIGTERM`` raises
    ``KeyboardInterrupt``) and, when it raises, start a watchdog that stops the job's workers still
    running ``grace`` seconds (default :data:`GRACE_S`) later. A handler that only records the signal (Dagster outside a step)
    and an ignored signal are left alone. Whatever exception leaves the block, workers started
    inside it that are still running are then stopped. Meant for one job at a time per process.
    """
    grace = GRACE_S if grace is None else grace
    before = sdk_worker_pids()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        targets = sdk_worker_pids() - before
        prev = previous[signum]
        if callable(prev):
            try:
                prev(signum, frame)
            except BaseException:
                _watchdog(targets, grace)
                raise
            return
        _watchdog(targets, grace)
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            prev = signal.getsignal(sig)
            if prev is not signal.SIG_IGN:
                previous[sig] = prev
                signal.signal(sig, handler)
    try:
        yield
    except BaseException:
        if left := sdk_worker_pids() - before:
            log.warning("stopping Beam worker processes %s left by the interrupted job", sorted(left))
            stop_processes(left)
        raise
    finally:
        for signum, prev in previous.items():
            signal.signal(signum, prev if prev is not None else signal.SIG_DFL)
