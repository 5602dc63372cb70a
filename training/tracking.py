"""Experiment tracking of a training run: TensorBoard event files and, optionally, MLflow.

``TrainConfig.tracking`` names the trackers (default ``tensorboard``). Neither is ever required:

* **tensorboard** -- event files ``<run dir>/tensorboard/events.out.tfevents.*`` written by
  :class:`EventFileWriter`, a dependency-free writer of the TFRecord-framed ``Event`` protocol
  buffers TensorBoard reads (scalars only), so the trainer does not need the ``tensorboard`` package
  (``pip install tensorboard`` to view them: ``tensorboard --logdir <run dir>/tensorboard``). A
  resumed run starts a new file with a ``SessionLog.START`` event at its first step, so TensorBoard
  drops the steps an interrupted run logged after its last checkpoint.
* **mlflow** -- parameters and the same scalars in an MLflow run, only when ``mlflow`` is
  installed and ``MLFLOW_TRACKING_URI`` is set (``MLFLOW_EXPERIMENT_NAME`` picks the experiment); a
  resumed run continues the MLflow run recorded in ``<run dir>/mlflow_run.json``. Otherwise one log
  line says why it is skipped.

Scalars: ``train/loss`` and ``train/lr`` every step, ``train/tokens_per_s`` and ``train/mfu`` at
each log line, ``val/loss`` and ``val/ppl`` at each evaluation. A tracker that fails is disabled
with one log line; training goes on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

TENSORBOARD_DIR = "tensorboard"
MLFLOW_RUN_FILE = "mlflow_run.json"
FILE_VERSION = "brain.Event:2"


# --------------------------------------------------------------------------------------------------
# TFRecord framing and the Event protocol buffer, by hand


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord files use."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length (u64), masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 on the wire: negative values as two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _message(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def scalar_summary(values: Mapping[str, float]) -> bytes:
    """``Summary { repeated Value value = 1 }`` with ``Value { tag = 1; simple_value = 2 }`` each."""
    return b"".join(
        _message(1, _message(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(v)))
        for tag, v in values.items()
    )


def event(
    wall_time: float,
    step: int = 0,
    *,
    file_version: str | None = None,
    summary: bytes | None = None,
    session_start: bool = False,
) -> bytes:
    """``Event { wall_time = 1; step = 2; file_version = 3 | summary = 5 | session_log = 7 }``."""
    out = _key(1, 1) + struct.pack("<d", wall_time)
    if step:
        out += _key(2, 0) + _varint(step)
    if file_version is not None:
        out += _message(3, file_version.encode())
    if summary is not None:
        out += _message(5, summary)
    if session_start:
        out += _message(7, _key(1, 0) + _varint(1))  # SessionLog { status = START }
    return out


class EventFileWriter:
    """Append scalar events to a new ``events.out.tfevents.*`` file under ``directory``."""

    def __init__(self, directory: str | os.PathLike, *, start_step: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time_ns()
        stamp = now / 1e9
        # TensorBoard reads the files of a directory in name order: seconds and nanoseconds first, so
        # a resumed run's file (another process, maybe within the same second) sorts after the first
        name = (
            f"events.out.tfevents.{now // 10**9:010d}.{now % 10**9:09d}.{socket.gethostname()}.{os.getpid()}"
        )
        self.path = self.directory / name
        self._fh: IO[bytes] | None = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._write(event(stamp, file_version=FILE_VERSION))
        if start_step is not None:
            self._write(event(time.time(), start_step, session_start=True))
        self.flush()

    def _write(self, record: bytes) -> None:
        assert self._fh is not None
        self._fh.write(tfrecord(record))

    def scalars(self, step: int, values: Mapping[str, float], wall_time: float | None = None) -> None:
        finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if finite and self._fh is not None:
            self._write(event(wall_time or time.time(), step, summary=scalar_summary(finite)))

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------------------------------
# trackers


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, out_dir: Path, start_step: int, log: Callable[[str], Any]) -> None:
        self.writer = EventFileWriter(
            out_dir / TENSORBOARD_DIR, start_step=start_step + 1 if start_step else None
        )
        log(f"tensorboard: writing {self.writer.path}")

    def params(self, values: Mapping[str, Any]) -> None:
        pass

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        self.writer.scalars(step, values)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    name = "mlflow"

    def __init__(self, mlflow: Any, out_dir: Path, log: Callable[[str], Any]) -> None:
        self.mlflow = mlflow
        record = out_dir / MLFLOW_RUN_FILE
        run_id = None
        if record.is_file():
            try:
                run_id = json.loads(record.read_text())["run_id"]
            except (OSError, ValueError, KeyError):
                run_id = None
        try:
            run = mlflow.start_run(run_id=run_id) if run_id else None
        except Exception:  # the recorded run is gone (another server, deleted): start a new one
            run = None
        if run is None:
            run = mlflow.start_run(run_name=out_dir.name, tags={"corpusforge.run_dir": str(out_dir)})
        self.run_id = run.info.run_id
        out_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"run_id": self.run_id}))
        log(f"mlflow: run {self.run_id} at {os.environ.get('MLFLOW_TRACKING_URI')}")

    def params(self, values: Mapping[str, Any]) -> None:
        self.mlflow.log_params({k: v for k, v in values.items() if v is not None})

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if finite:
            self.mlflow.log_metrics(finite, step=step)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.mlflow.end_run()


def _open_mlflow(out_dir: Path, log: Callable[[str], Any]) -> _MLflow | None:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        log("mlflow: skipped (MLFLOW_TRACKING_URI is not set)")
        return None
    try:
        import mlflow
    except ImportError:
        log("mlflow: skipped (the mlflow package is not installed: pip install mlflow)")
        return None
    return _MLflow(mlflow, out_dir, log)


class Tracking:
    """The trackers of one run (rank 0 only); every method is a no-op when there are none."""

    def __init__(self, trackers: list[Any], log: Callable[[str], Any]) -> None:
        self.trackers, self.log = trackers, log

    @classmethod
    def open(
        cls,
        names: list[str],
        out_dir: str | os.PathLike,
        *,
        start_step: int = 0,
        params: Mapping[str, Any] | None = None,
        log: Callable[[str], Any] = print,
        enabled: bool = True,
    ) -> Tracking:
        """Open the trackers ``names`` for the run directory ``out_dir`` (none when not ``enabled``)."""
        self = cls([], log)
        if not enabled:
            return self
        out = Path(out_dir)
        for name in names:
            try:
                tracker = (
                    _TensorBoard(out, start_step, log) if name == "tensorboard" else _open_mlflow(out, log)
                )
            except Exception as exc:  # tracking must never stop training
                log(f"{name}: disabled ({type(exc).__name__}: {exc})")
                continue
            if tracker is not None:
                self.trackers.append(tracker)
        self._each("params", dict(params or {}))
        return self

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                self.log(f"{tracker.name}: disabled ({type(exc).__name__}: {exc})")
                self.trackers.remove(tracker)

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        clean = {k: float(v) for k, v in values.items() if v is not None}
        if clean:
            self._each("scalars", step, clean)

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("close")
        self.trackers = []
