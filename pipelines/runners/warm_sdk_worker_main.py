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
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

SOCKET_ENV = "CORPUSFORGE_WARM_WORKERS"  # path of the zygote's socket, inherited by the clients
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
    path = os.path.join(tempfile.mkdtemp(prefix="corpusforge-warm-"), "zygote.sock")
    args = [sys.executable, "-m", "pipelines.runners.warm_sdk_worker_main", "serve", path]
    _zygote = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not os.path.exists(path):
        if _zygote.poll() is not None or time.monotonic() > deadline:
            stop_zygote()
            return False
        time.sleep(0.02)
    os.environ[SOCKET_ENV] = path
    return True


def stop_zygote() -> None:
    global _zygote
    os.environ.pop(SOCKET_ENV, None)
    if _zygote is not None and _zygote.poll() is None:
        _zygote.terminate()
        try:
            _zygote.wait(5)
        except subprocess.TimeoutExpired:
            _zygote.kill()
    _zygote = None


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


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent exits (a killed driver leaves no zygote, a
    killed zygote no worker); elsewhere the zygote's parent check is all there is."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
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

    parent = os.getppid()
    _die_with_parent()
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # exists only once it accepts connections
    listener.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    waiting: dict[int, socket.socket] = {}  # child pid -> its client's connection
    try:
        while os.getppid() == parent:
            ready, _, _ = select.select([listener], [], [], 0.2)
            if ready:
                conn, _ = listener.accept()
                env = json.loads(_recv(conn))
                pid = os.fork()
                if pid == 0:  # the worker
                    _die_with_parent()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    listener.close()
                    for other in waiting.values():
                        other.close()
                    code = _worker(env)
                    try:
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
        listener.close()
        for pid in waiting:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if os.path.exists(path):
            os.unlink(path)


def client() -> int:
    """One worker, forked by the zygote: its exit status is this process's."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(os.environ[SOCKET_ENV])
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
