"""Test fixture: a real S3 API (moto's server) on 127.0.0.1, behind a TCP proxy that can cut the link.

The proxy is what makes storage faults reproducible: ``cut_on(b"PUT /bucket/data/clean/v-")`` drops
every connection from the first request whose first bytes contain that marker until ``restore()``,
exactly what a client sees when the store goes away mid-write.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttableProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target>; ``cut`` drops every connection."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._cut = threading.Event()
        self._marker: bytes | None = None
        self.cut_requests = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_on(self, marker: bytes) -> None:
        self._marker = marker

    def restore(self) -> None:
        self._marker = None
        self._cut.clear()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def close(self) -> None:
        self._stop = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._cut.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket, inspect: bool) -> None:
            try:
                while not done.is_set():
                    data = src.recv(65536)
                    if not data:
                        break
                    if inspect and self._marker and self._marker in data[:512]:
                        self._cut.set()
                    if self._cut.is_set():
                        self.cut_requests += 1
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                done.set()
                for sock in (src, dst):
                    with suppress(OSError):
                        sock.close()

        threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()
        pump(client, upstream, True)


@contextmanager
def s3_server(secret: str = "testing-secret") -> Iterator[dict]:
    """Start moto's S3 server and a proxy; yields {endpoint, proxy, env}. Environment variables point
    boto/s3fs at the proxy (credentials are fake: moto accepts any)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    proxy = CuttableProxy(port)
    endpoint = f"http://127.0.0.1:{proxy.port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing-key",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_MAX_ATTEMPTS": "2",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield {"endpoint": endpoint, "proxy": proxy, "env": env, "port": port}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proxy.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
