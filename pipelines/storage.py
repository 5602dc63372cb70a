"""Versioned, atomically committed stage outputs.

Layout of one stage under the data directory::

    <data_dir>/<stage>/CURRENT                     text file: name of the committed version
    <data_dir>/<stage>/<version>/manifest.json     shards, row counts, checksums, stats, config
    <data_dir>/<stage>/<version>/documents/part-<split>-<k>.parquet
    <data_dir>/<stage>/<version>/ledger/part-<split>-<k>.parquet
    <data_dir>/<stage>/<version>/_SUCCESS

Every file is written to a temporary name and renamed into place. A version becomes visible only
when ``CURRENT`` (itself replaced atomically) names it, after its manifest and ``_SUCCESS`` exist,
so a reader never sees a half-written stage and re-materializing never corrupts the last good one.
Version names start with the fingerprint of (stage, config, upstream versions, code version).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import schemas
from pipelines.code_version import code_version

MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
CURRENT = "CURRENT"
SIDECAR = ".shard.json"
FORMAT = "corpusforge-stage/1"


class StageNotFoundError(FileNotFoundError):
    """The upstream stage has never been committed; the message says which asset to materialize."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# shard writing (used inside Beam DoFns; one writer per (split, kind))


class ShardWriter:
    """Write rows of one split into size-bounded Parquet shards ``part-<split>-<k>.parquet``.

    Each shard is written under a temporary name and renamed on close; a JSON sidecar next to it
    records rows, bytes, checksum and a small summary that the driver folds into the manifest.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        schema: pa.Schema,
        *,
        max_shard_bytes: int,
        row_group_rows: int,
        compression: str = "zstd",
        summarize: Any = None,
        first_index: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.split = split
        self.schema = schema
        self.max_shard_bytes = max_shard_bytes
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.summarize = summarize or summarize_rows
        self._k = first_index
        self._buffer: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._rows = 0
        self._bytes = 0
        self._summary: Counter = Counter()

    def write(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._open()
        self._buffer.append(dict(row))
        self._rows += 1
        self._bytes += _row_bytes(row)
        self._summary.update(self.summarize(row))
        if len(self._buffer) >= self.row_group_rows:
            self._flush()
        if self._bytes >= self.max_shard_bytes:
            self._close()

    def close(self) -> int:
        """Finish the open shard; returns the index the next shard of this split would get."""
        if self._writer is not None:
            self._close()
        return self._k

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._tmp = self.directory / f".part-{self.split}-{self._k:04d}.tmp-{uuid.uuid4().hex[:8]}"
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=self.compression)

    def _flush(self) -> None:
        if self._buffer:
            assert self._writer is not None
            self._writer.write_table(schemas.to_table(self._buffer, self.schema))
            self._buffer = []

    def _close(self) -> None:
        self._flush()
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        final = self.directory / f"part-{self.split}-{self._k:04d}.parquet"
        info = {
            "path": final.name,
            "rows": self._rows,
            "bytes": self._bytes,
            "file_bytes": self._tmp.stat().st_size,
            "sha256": sha256_file(self._tmp),
            "summary": dict(self._summary),
        }
        os.replace(self._tmp, final)
        atomic_write_json(final.with_name(final.name + SIDECAR), info)
        self._writer, self._tmp = None, None
        self._rows, self._bytes, self._summary = 0, 0, Counter()
        self._k += 1


def _row_bytes(row: Mapping[str, Any]) -> int:
    text = row.get("text")
    if isinstance(text, str):
        return len(text.encode("utf-8", "replace"))
    return int(row.get("bytes") or 0)


def summarize_rows(row: Mapping[str, Any]) -> dict[str, float]:
    """Per-row counters folded into shard summaries: languages and PII for documents, reasons for ledgers."""
    out: dict[str, float] = {}
    if "cluster_id" in row:
        return {f"kind:{row['kind']}": 1, "kept": int(bool(row["kept"]))}
    if "reason" in row:
        out[f"reason:{row['reason']}"] = 1
        out[f"reason_bytes:{row['reason']}"] = int(row.get("bytes") or 0)
        return out
    out[f"lang:{row.get('lang') or 'und'}"] = 1
    for key, value in (row.get("signals") or {}).items():
        if key.startswith("pii."):
            out[key] = value
    for tag in row.get("tags") or ():
        out[f"tag:{tag}"] = 1
    return out


# --------------------------------------------------------------------------------------------------
# stage versions


@dataclass(frozen=True)
class StageVersion:
    """A handle on one version directory of a stage."""

    root: Path  # <data_dir>/<stage>
    name: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def stage(self) -> str:
        return self.root.name

    def dir(self, kind: str) -> Path:
        return self.path / kind

    def manifest(self) -> dict[str, Any]:
        p = self.path / MANIFEST
        if not p.is_file():
            raise StageNotFoundError(
                f"{p} is missing: stage {self.stage!r} version {self.name} is incomplete"
            )
        return json.loads(p.read_text())

    def shard_paths(self, kind: str = "documents") -> list[Path]:
        entry = self.manifest().get(kind) or {"shards": []}
        return [self.path / kind / s["path"] for s in entry["shards"]]


def stage_of(directory: str | os.PathLike) -> str:
    """The stage a ``<data_dir>/<stage>/<version>/<kind>`` directory belongs to."""
    return Path(directory).parent.parent.name


def stage_root(data_dir: str | os.PathLike, stage: str) -> Path:
    return Path(data_dir) / stage


def current_version(data_dir: str | os.PathLike, stage: str) -> StageVersion:
    """The committed version of ``stage``; raises ``StageNotFoundError`` saying what to materialize."""
    root = stage_root(data_dir, stage)
    pointer = root / CURRENT
    if not pointer.is_file():
        raise StageNotFoundError(
            f"no committed output for stage {stage!r} under {root}; materialize the {stage!r} asset first"
        )
    name = pointer.read_text().strip()
    version = StageVersion(root, name)
    if not (version.path / SUCCESS).is_file():
        raise StageNotFoundError(f"{root / CURRENT} names {name!r}, which is not a complete version")
    return version


def new_version(data_dir: str | os.PathLike, stage: str, fp: str) -> StageVersion:
    """A fresh, empty version directory for ``stage`` (name: ``v-<fp>-<utc time>-<rand>``)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    version = StageVersion(stage_root(data_dir, stage), f"v-{fp}-{stamp}-{uuid.uuid4().hex[:4]}")
    version.path.mkdir(parents=True, exist_ok=False)
    return version


def find_reusable(data_dir: str | os.PathLike, stage: str, fp: str) -> StageVersion | None:
    """Newest complete version with fingerprint ``fp`` (for re-use instead of re-computation)."""
    root = stage_root(data_dir, stage)
    if not root.is_dir():
        return None
    names = sorted(p.name for p in root.glob(f"v-{fp}-*") if (p / SUCCESS).is_file())
    return StageVersion(root, names[-1]) if names else None


def collect_shards(directory: Path) -> dict[str, Any]:
    """Fold the shard sidecars of ``directory`` into a manifest entry (sorted by name)."""
    shards = []
    if directory.is_dir():
        for side in sorted(directory.glob(f"part-*{SIDECAR}")):
            info = json.loads(side.read_text())
            if not (directory / info["path"]).is_file():
                raise RuntimeError(f"shard sidecar {side} has no shard file beside it")
            shards.append(info)
    summary: Counter = Counter()
    for s in shards:
        summary.update(s.get("summary", {}))
    return {
        "rows": sum(s["rows"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
        "summary": dict(sorted(summary.items())),
    }


def commit(
    version: StageVersion,
    *,
    config: Any,
    upstream: Mapping[str, str],
    entries: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    keep_versions: int = 2,
) -> dict[str, Any]:
    """Write the manifest (``entries``: kind -> ``collect_shards`` result) and ``_SUCCESS`` of
    ``version``, point ``CURRENT`` at it and prune old versions."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "stage": version.stage,
        "version": version.name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "config": config,
        "upstream": dict(upstream),
    }
    for kind, entry in entries.items():
        manifest[kind] = entry
        for side in version.dir(kind).glob(f"part-*{SIDECAR}"):
            side.unlink()
    manifest.update(extra or {})
    atomic_write_json(version.path / MANIFEST, manifest)
    atomic_write_bytes(version.path / SUCCESS, b"")
    point_current(version)
    prune(version.root, keep=keep_versions, protect=version.name)
    return manifest


def point_current(version: StageVersion) -> None:
    atomic_write_bytes(version.root / CURRENT, (version.name + "\n").encode())


def referenced_versions(root: Path) -> set[str]:
    """Versions of the stage at ``root`` that the current version of another stage was built from."""
    stage, used = root.name, set()
    for other in root.parent.iterdir():
        pointer = other / CURRENT
        if other == root or not pointer.is_file():
            continue
        try:
            manifest = json.loads((other / pointer.read_text().strip() / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if name := manifest.get("upstream", {}).get(stage):
            used.add(name)
    return used


def prune(root: Path, *, keep: int, protect: str) -> None:
    """Delete all but the ``keep`` newest versions; the protected one and any version a downstream
    stage's current version was built from always stay (their manifests must stay resolvable)."""
    versions = sorted((p for p in root.glob("v-*") if p.is_dir()), key=lambda p: p.name.split("-", 2)[2])
    keep_names = {protect} | referenced_versions(root)
    doomed = [p for p in versions[: max(0, len(versions) - keep)] if p.name not in keep_names]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)


def discard(version: StageVersion) -> None:
    """Remove a version that failed before commit."""
    shutil.rmtree(version.path, ignore_errors=True)


class Transaction:
    """One attempt at a new version of a stage; see :func:`transaction`."""

    def __init__(self, data_dir: str | os.PathLike, stage: str, fp: str, keep_versions: int) -> None:
        self.data_dir, self.stage, self.fp, self.keep_versions = data_dir, stage, fp, keep_versions
        self.reused: StageVersion | None = None
        self._version: StageVersion | None = None
        self.manifest: dict[str, Any] | None = None

    @property
    def version(self) -> StageVersion:
        """The new, uncommitted version directory (created on first use)."""
        if self.reused is not None:
            raise RuntimeError(f"stage {self.stage!r} re-uses {self.reused.name}; it writes no new version")
        if self._version is None:
            self._version = new_version(self.data_dir, self.stage, self.fp)
        return self._version

    def adopt(self, directory: str | os.PathLike) -> StageVersion:
        """Make a finished work directory (e.g. a resumable training run) the new version's content."""
        version = self.version
        version.path.rmdir()
        os.replace(directory, version.path)
        return version

    def commit(
        self,
        *,
        config: Any,
        upstream: Mapping[str, str],
        entries: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write manifest and ``_SUCCESS``, point ``CURRENT`` at the version, prune old versions."""
        if self.manifest is not None:
            raise RuntimeError(f"version {self.version.name} of {self.stage!r} is already committed")
        self.manifest = commit(
            self.version,
            config=config,
            upstream=upstream,
            entries=entries or {},
            extra=extra,
            keep_versions=self.keep_versions,
        )
        return self.manifest


@contextlib.contextmanager
def transaction(
    data_dir: str | os.PathLike, stage: str, fp: str, *, reuse: bool = False, keep_versions: int = 2
) -> Iterator[Transaction]:
    """The only way a stage creates, commits or discards a version.

    ``reuse`` and a complete version with fingerprint ``fp`` exist: ``tx.reused`` is that version,
    ``CURRENT`` points at it, and the body must not write. Otherwise the body writes into
    ``tx.version`` and calls ``tx.commit(...)``; on any exception, or when the body returns
    without committing, the partial version is deleted and the previous one stays current.
    """
    tx = Transaction(data_dir, stage, fp, keep_versions)
    if reuse and (found := find_reusable(data_dir, stage, fp)):
        point_current(found)
        tx.reused, tx.manifest = found, found.manifest()
        yield tx
        return
    try:
        yield tx
        if tx.manifest is None:
            raise RuntimeError(f"stage {stage!r} finished without committing its version")
    except BaseException:
        if tx._version is not None and tx.manifest is None:
            discard(tx._version)
        raise


# --------------------------------------------------------------------------------------------------
# reading


def iter_rows(
    path: str | os.PathLike, columns: list[str] | None = None, batch_rows: int = 1024
) -> Iterator[dict]:
    """Stream the rows of one Parquet shard as dicts (map columns as dicts), one batch in memory."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield from schemas.from_batch(batch)


def iter_stage_rows(
    version: StageVersion, kind: str = "documents", columns: list[str] | None = None
) -> Iterator[dict]:
    for path in version.shard_paths(kind):
        yield from iter_rows(path, columns=columns)
