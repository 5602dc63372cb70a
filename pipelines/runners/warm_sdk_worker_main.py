"""Warm Beam SDK workers for the local FnApiRunner in ``multi_processing`` mode.

Beam starts every worker of every pipeline as a fresh ``python -m ...sdk_worker_main``: importing
Beam, numpy, pyarrow and the stage's modules costs 1.3–1.8 s per worker on a busy 2-core machine,
paid again by every stage (a trivial two-worker pipeline takes ~5 s against 0.26 s in process). Here a
*zygote* process imports all of that once per driver process and forks a worker for each request:

* ``serve SOCKET`` (the zygote, started by :func:`ensure_zygote`, a child of the driver): imports
  :data:`PRELOAD`, listens on a Unix socket; per connection it reads the worker's environment (the
  control, logging and options descriptors the runner sets), forks, and the child runs Beam's
  ``sdk_worker_main`` harness with it; the exit status goes back on the connection. It starts no
  thread and opens no gRPC channel before forking, and exits when its parent is gone.
* ``client`` (the command the runner launches per worker, :func:`command`): a small interpreter that
  sends its environment to the zygote and exits with the worker's status, so the runner sees a normal
  worker process.

Both keep ``sdk_worker_main`` in their command line, so ``pipelines.beam_cancel`` finds (and stops)
the forked workers and the clients of an interrupted job like Beam's own workers. Outputs do not
depend on how workers start. On by default; ``runner.warm_workers: false`` restores Beam's fresh interpreters.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

SOCKET_ENV = "CORPUSFORGE_WARM_WORKERS"  # path of the zygote's socket, inherited by the clients
DIR_PREFIX = "corpusforge-warm-"  # + the driver's pid: the zygote's socket directory under $TMPDIR
PRELOAD = (
    "apache_beam.runners.worker.sdk_worker_main",
    "numpy",
    "pyarrow.parquet",
    "pipelines.beam_stage",
    "pipelines.ingest",
    "pipelines.clean",
    "pipelines.dedup.job",
    "pipelines.bias.job",
    "pipelines.bias.report",
    "pipelines.tokens.dataset",
)
READY_TIMEOUT_S = 60.0

_zygote: subprocess.Popen | None = None


def command() -> str:
    """The worker command line for ``SubprocessSDKEnvironment``."""
    return f"{sys.executable} -m pipelines.runners.warm_sdk_worker_main client"


def ensure_zygote() -> bool:
    """Start this process's zygote unless it runs; True when it is ready to fork workers."""
    global _zygote
    if _zygote is not None and _zygote.poll() is None and os.environ.get(SOCKET_ENV):
        return True
    stop_zygote()  # one that died: remove its directory
    _remove_stale_directories()
    path = os.path.join(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"), "zygote.sock")
    args = [sys.executable, "-m", "pipelines.runners.warm_sdk_worker_main", "serve", path]
    _zygote = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not os.path.exists(path):
        if _zygote.poll() is not None or time.monotonic() > deadline:
            os.environ[SOCKET_ENV] = path  # for stop_zygote to remove the directory
            stop_zygote()
            return False
        time.sleep(0.02)
    os.environ[SOCKET_ENV] = path
    return True


def _remove_stale_directories() -> None:
    """Socket directories of drivers that are gone (a zygote killed outright cannot remove its own)."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        if not name.startswith(DIR_PREFIX):
            continue
        owner = name[len(DIR_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}") and os.path.isdir("/proc/self"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def stop_zygote() -> None:
    global _zygote
    if _zygote is None:  # not started by this process (a client inherits the variable: leave it)
        return
    path = os.environ.pop(SOCKET_ENV, None)
    if _zygote.poll() is None:
        _zygote.terminate()
        try:
            _zygote.wait(5)
        except subprocess.TimeoutExpired:
            _zygote.kill()
    _zygote = None
    if path:  # a killed zygote cannot remove its directory
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


atexit.register(stop_zygote)


def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack("!I", len(payload)) + payload)


def _recv(conn: socket.socket) -> bytes:
    head = _exactly(conn, 4)
    return _exactly(conn, struct.unpack("!I", head)[0])


def _exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the zygote connection closed")
        data += chunk
    return data


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux: this process gets ``sig`` when its parent exits (a killed driver leaves no zygote, a
    killed zygote no worker); elsewhere the zygote's parent check is all there is."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(env: dict[str, str]) -> int:
    """Run Beam's worker harness with ``env`` (in a forked child)."""
    os.environ.clear()
    os.environ.update(env)
    from apache_beam.runners.worker import sdk_worker_main

    try:
        sdk_worker_main.main([])
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 1
    except BaseException:  # noqa: BLE001 - the harness logged it; the status tells the runner
        return 1
    return 0


def serve(path: str) -> None:
    """The zygote: fork a worker per connection until the parent process is gone."""
    import importlib

    parent, zygote = os.getppid(), os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds to the clean-up below
    _die_with_parent(signal.SIGTERM)  # a killed driver: stop the workers, remove the socket directory
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # exists only once it accepts connections
    listener.listen(16)
    waiting: dict[int, socket.socket] = {}  # child pid -> its client's connection
    try:
        while os.getppid() == parent:
            ready, _, _ = select.select([listener], [], [], 0.2)
            if ready:
                conn, _ = listener.accept()
                env = json.loads(_recv(conn))
                pid = os.fork()
                if pid == 0:  # the worker: never leaves this block (the finally below is the zygote's)
                    code = 1
                    try:
                        _die_with_parent()
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        listener.close()
                        for other in waiting.values():
                            other.close()
                        code = _worker(env)
                        _send(conn, str(code).encode())
                    finally:
                        os._exit(code)
                waiting[pid] = conn
            while waiting:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                finished = waiting.pop(pid, None)
                if finished is not None:
                    finished.close()
    finally:
        if os.getpid() != zygote:
            os._exit(1)  # a forked worker interrupted before its own block: leave the zygote's socket
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        listener.close()
        for pid in waiting:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # the zygote's private directory (mkdtemp)


def client() -> int:
    """One worker, forked by the zygote: its exit status is this process's. Without a zygote to
    reach, this process becomes a cold Beam worker instead (the runner would wait forever for a
    worker that never connects)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(os.environ.get(SOCKET_ENV, ""))
        except OSError as exc:
            print(f"warm workers: no zygote ({exc}); starting a cold worker", file=sys.stderr, flush=True)
            cold = [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]
            os.execv(sys.executable, cold)
        _send(conn, json.dumps(dict(os.environ)).encode())
        try:
            return int(_recv(conn))
        except ConnectionError:
            return 1  # the worker died without reporting (killed)


def main(argv: list[str]) -> Any:
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(argv[1])
        return 0
    if argv == ["client"]:
        return client()
    raise SystemExit("usage: python -m pipelines.runners.warm_sdk_worker_main serve SOCKET | client")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
