"""Live progress of a running stage, from the data it has committed so far (runner-agnostic).

Beam metrics arrive only when a job ends on the local runner and not at all on some others, so a
driver-side thread lists the shard sidecars the workers have finished in the uncommitted version
(local disk or object store) every few seconds and reports documents and bytes written, kept and
removed, the rates, and an ETA when the number of input documents is known.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pipelines import fs, storage


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def progress_line(stage: str, kept: int, removed: int, nbytes: int, elapsed: float, total: int | None) -> str:
    """One human-readable progress line (pure)."""
    done = kept + removed
    rate = done / elapsed if elapsed > 0 else 0.0
    line = f"{stage}: {done:,} documents ({kept:,} kept, {removed:,} removed), {nbytes / 1e6:,.1f} MB"
    line += f", {rate:,.0f} docs/s, {nbytes / 1e6 / elapsed if elapsed > 0 else 0.0:,.1f} MB/s"
    if total:
        line += f", {100 * done / total:.1f}% of {total:,}"
        if rate > 0 and done < total:
            line += f", ETA {format_eta((total - done) / rate)}"
    return line


def written_so_far(version: storage.StageVersion, kinds: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """{kind: (rows, text bytes)} over the shard sidecars finished in ``version``."""
    out = {}
    for kind in kinds:
        rows = nbytes = 0
        directory = version.dir(kind)
        fs.refresh(directory)
        try:
            sides = list(directory.glob(f"part-*{storage.SIDECAR}")) if directory.exists() else []
        except OSError:
            sides = []
        for side in sides:
            try:
                info = json.loads(side.read_bytes())
            except (OSError, ValueError):
                continue  # being written
            rows += int(info.get("rows", 0))
            nbytes += int(info.get("bytes", 0))
        out[kind] = (rows, nbytes)
    return out


class ProgressMonitor:
    """Every ``every`` seconds, ``log`` a progress line for the version being written."""

    def __init__(
        self,
        stage: str,
        version: storage.StageVersion,
        kinds: tuple[str, ...],
        log: Callable[[str], Any],
        *,
        total: int | None = None,
        every: float = 15.0,
    ) -> None:
        self.stage, self.version, self.kinds, self.log = stage, version, kinds, log
        self.total, self.every = total, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{stage}", daemon=True)
        self._start = time.monotonic()
        self.lines = 0

    def __enter__(self) -> ProgressMonitor:
        if self.kinds:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                counts = written_so_far(self.version, self.kinds)
            except Exception:  # noqa: BLE001 - progress must never fail a stage
                continue
            kept, kept_bytes = counts.get("documents", (0, 0))
            removed, removed_bytes = counts.get("ledger", (0, 0))
            elapsed = time.monotonic() - self._start
            self.log(
                progress_line(self.stage, kept, removed, kept_bytes + removed_bytes, elapsed, self.total)
            )
            self.lines += 1
