"""Versioned, atomically committed stage outputs.

Layout of one stage under the data directory::

    <data_dir>/<stage>/CURRENT                     text file: name of the committed version
    <data_dir>/<stage>/<version>/manifest.json     shards, row counts, checksums, stats, config
    <data_dir>/<stage>/<version>/documents/part-<split>-<k>.parquet
    <data_dir>/<stage>/<version>/ledger/part-<split>-<k>.parquet
    <data_dir>/<stage>/<version>/_SUCCESS

``data_dir`` is a local path or an object-store URI (:mod:`pipelines.fs`). A version directory is
written once: on local disk every file goes to a temporary name and is renamed into place; on an
object store every file is written once under its final name (one PUT is atomic per object). A
version becomes visible only when ``CURRENT`` names it, after its manifest and ``_SUCCESS`` exist, and
readers trust only the shards a committed manifest lists, so a reader never sees a half-written
stage and re-materializing never corrupts the last good one. ``<stage>/_LOCK`` (created exclusively)
makes sure two runs of one stage cannot both publish. Version names start with the fingerprint of
(stage, config, upstream versions, code version).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import fs, schemas
from pipelines.code_version import code_version

MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
CURRENT = "CURRENT"
LOCK = "_LOCK"
SIDECAR = ".shard.json"
FORMAT = "corpusforge-stage/1"


class StageNotFoundError(FileNotFoundError):
    """The upstream stage has never been committed; the message says which asset to materialize."""


def atomic_write_bytes(path: fs.Location, data: bytes) -> None:
    """Write ``data`` atomically (local: temporary file + ``os.replace``; object store: one PUT)."""
    fs.write_bytes(path, data)


def atomic_write_json(path: fs.Location, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def sha256_file(path: fs.Location, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with fs.open_read(path) as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# shard writing (used inside Beam DoFns; one writer per (split, kind))


class ShardWriter:
    """Write rows of one split into size-bounded Parquet shards ``part-<split>-<k>.parquet``.

    Local shards are written under a temporary name and renamed on close; on an object store a
    shard is streamed once to its final name. A JSON sidecar next to it records rows, bytes, checksum
    (computed while writing) and a small summary that the driver folds into the manifest.
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
        self.directory = fs.path(directory)
        self.split = split
        self.schema = schema
        self.max_shard_bytes = max_shard_bytes
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.summarize = summarize or summarize_rows
        self._k = first_index
        self._buffer: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Any = None
        self._sink: _HashingSink | None = None
        self._rows = 0
        self._bytes = 0
        self._summary: Counter = Counter()
        self.written: list[dict[str, Any]] = []  # sidecar infos of the shards closed so far

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

    def _final(self) -> Any:
        return self.directory / f"part-{self.split}-{self._k:04d}.parquet"

    def _open(self) -> None:
        # Not parents=True: a bundle still running after its version was discarded (an interrupted
        # in-process run) must fail here, not re-create the deleted version directory.
        try:
            fs.mkdirs(self.directory, parents=False)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{fs.uri(self.directory.parent)} does not exist: its version was discarded"
            ) from None
        if fs.is_remote_path(self.directory):
            self._tmp = self._final()  # written once, under its final name
        else:
            self._tmp = self.directory / f".part-{self.split}-{self._k:04d}.tmp-{uuid.uuid4().hex[:8]}"
        self._sink = _HashingSink(fs.open_write(self._tmp))
        self._writer = pq.ParquetWriter(self._sink, self.schema, compression=self.compression)

    def _flush(self) -> None:
        if self._buffer:
            assert self._writer is not None
            self._writer.write_table(schemas.to_table(self._buffer, self.schema))
            self._buffer = []

    def _close(self) -> None:
        self._flush()
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        assert self._sink is not None
        self._sink.finish()
        final = self._final()
        info = {
            "path": final.name,
            "rows": self._rows,
            "bytes": self._bytes,
            "file_bytes": self._sink.size,
            "sha256": self._sink.sha256.hexdigest(),
            "summary": dict(self._summary),
        }
        if self._tmp != final:
            os.replace(self._tmp, final)
        atomic_write_json(self.directory / (final.name + SIDECAR), info)
        self.written.append(info)
        self._writer, self._tmp, self._sink = None, None, None
        self._rows, self._bytes, self._summary = 0, 0, Counter()
        self._k += 1


class _HashingSink:
    """A binary file wrapper that hashes and counts what is written (no read-back of the shard)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.size += len(view)
        self._fh.write(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # pyarrow closes its stream: the file stays open until finish()
        self.closed = True

    def finish(self) -> None:
        self._fh.flush()
        if hasattr(self._fh, "fileno"):
            with contextlib.suppress(OSError, ValueError, NotImplementedError):
                os.fsync(self._fh.fileno())
        self._fh.close()


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

    root: Any  # <data_dir>/<stage>: a pathlib.Path locally, a UPath on an object store
    name: str

    @property
    def path(self) -> Any:
        return self.root / self.name

    @property
    def stage(self) -> str:
        return self.root.name

    def dir(self, kind: str) -> Any:
        return self.path / kind

    def manifest(self) -> dict[str, Any]:
        p = self.path / MANIFEST
        if not p.is_file():
            raise StageNotFoundError(
                f"{p} is missing: stage {self.stage!r} version {self.name} is incomplete"
            )
        return json.loads(p.read_text())

    def shard_path(self, kind: str, shard: Mapping[str, Any]) -> Any:
        """Where a shard of this version's manifest lives: here, or in the earlier version of the same
        stage it was carried from (``"version"``, see :mod:`pipelines.carry`)."""
        return self.root / shard.get("version", self.name) / kind / shard["path"]

    def shard_paths(self, kind: str = "documents") -> list[Any]:
        entry = self.manifest().get(kind) or {"shards": []}
        return [self.shard_path(kind, s) for s in entry["shards"]]


def stage_of(directory: str | os.PathLike) -> str:
    """The stage a ``<data_dir>/<stage>/<version>/<kind>`` directory belongs to."""
    return fs.path(directory).parent.parent.name


def stage_root(data_dir: str | os.PathLike, stage: str) -> Any:
    return fs.path(data_dir) / stage


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
    if fs.local_path(version.path) is not None:
        version.path.mkdir(parents=True, exist_ok=False)
    return version


def find_partial(data_dir: str | os.PathLike, stage: str, fp: str) -> StageVersion | None:
    """Newest uncommitted version with fingerprint ``fp`` (left by a run that failed), to resume in."""
    root = stage_root(data_dir, stage)
    fs.refresh(root)
    if not root.is_dir():
        return None
    names = sorted(p.name for p in root.glob(f"v-{fp}-*") if not (p / SUCCESS).is_file())
    return StageVersion(root, names[-1]) if names else None


def find_reusable(data_dir: str | os.PathLike, stage: str, fp: str) -> StageVersion | None:
    """Newest complete version with fingerprint ``fp`` (for re-use instead of re-computation)."""
    root = stage_root(data_dir, stage)
    fs.refresh(root)
    if not root.is_dir():
        return None
    names = sorted(p.name for p in root.glob(f"v-{fp}-*") if (p / SUCCESS).is_file())
    return StageVersion(root, names[-1]) if names else None


def collect_shards(directory: Any) -> dict[str, Any]:
    """Fold the shard sidecars of ``directory`` into a manifest entry (sorted by name)."""
    shards = []
    fs.refresh(directory)  # workers in other processes wrote here: no stale listing cache
    if directory.is_dir():
        for side in sorted(directory.glob(f"part-*{SIDECAR}")):
            info = json.loads(side.read_text())
            if not (directory / info["path"]).is_file():
                raise RuntimeError(f"shard sidecar {side} has no shard file beside it")
            shards.append(info)
    return shard_entry(shards)


def shard_entry(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """A manifest entry of ``shards``: their rows, bytes and folded summaries."""
    summary: Counter = Counter()
    for s in shards:
        summary.update(s.get("summary", {}))
    return {
        "rows": sum(s["rows"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
        "summary": dict(sorted(summary.items())),
    }


def entries_from_records(records: Mapping[str, Mapping[str, Any]], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Manifest entries (as :func:`collect_shards` makes them) from the completion records of the
    splits (:mod:`pipelines.completion`): only shards of finished splits, sorted by name."""
    return {
        kind: shard_entry(
            sorted((s for r in records.values() for s in r["shards"].get(kind, [])), key=lambda s: s["path"])
        )
        for kind in kinds
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
            fs.remove(side)
    manifest.update(extra or {})
    atomic_write_json(version.path / MANIFEST, manifest)
    atomic_write_bytes(version.path / SUCCESS, b"")
    point_current(version)
    prune(version.root, keep=keep_versions, protect=version.name)
    return manifest


def point_current(version: StageVersion) -> None:
    atomic_write_bytes(version.root / CURRENT, (version.name + "\n").encode())


def referenced_versions(root: Any) -> set[str]:
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


def prune(root: Any, *, keep: int, protect: str) -> None:
    """Delete all but the ``keep`` newest committed versions, and every uncommitted leftover of a
    failed run; the protected one and any version a downstream stage's current version was built
    from always stay (their manifests must stay resolvable). Runs while the caller holds the lock."""
    fs.refresh(root)
    versions = sorted((p for p in root.glob("v-*") if p.is_dir()), key=lambda p: p.name.split("-", 2)[2])
    committed = [p for p in versions if (p / SUCCESS).is_file()]
    keep_names = {protect} | referenced_versions(root)
    survivors = keep_names | {p.name for p in committed[max(0, len(committed) - keep) :]}
    needed = survivors | {name for s in survivors for name in _carried_from(root / s)}
    doomed = [p for p in committed if p.name not in needed]
    doomed += [p for p in versions if p not in committed and p.name not in keep_names]
    for p in doomed:
        fs.rmtree(p)


def _carried_from(version_dir: Any) -> list[str]:
    """Versions a committed version lists shards of (``carried_from`` in its manifest)."""
    try:
        return list(json.loads((version_dir / MANIFEST).read_text()).get("carried_from") or ())
    except (OSError, ValueError):
        return []


def discard(version: StageVersion) -> None:
    """Remove a version that failed before commit (best effort: when the store is unreachable the
    leftover stays invisible — no manifest, no ``CURRENT`` — and the next commit's prune removes it)."""
    with contextlib.suppress(Exception):  # the original failure matters, not the clean-up
        fs.rmtree(version.path)


class Transaction:
    """One attempt at a new version of a stage; see :func:`transaction`."""

    def __init__(self, data_dir: str | os.PathLike, stage: str, fp: str, keep_versions: int) -> None:
        self.data_dir, self.stage, self.fp, self.keep_versions = data_dir, stage, fp, keep_versions
        self.reused: StageVersion | None = None
        self.resumed = False  # the version is the partial one of a failed run with the same fingerprint
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
        """Make a finished local work directory (e.g. a resumable training run) the new version's
        content: renamed into place locally, uploaded to an object store."""
        version = self.version
        if fs.local_path(version.path) is not None:
            version.path.rmdir()
        fs.upload_tree(directory, version.path)
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
    data_dir: str | os.PathLike,
    stage: str,
    fp: str,
    *,
    reuse: bool = False,
    keep_versions: int = 2,
    resume: bool = False,
) -> Iterator[Transaction]:
    """The only way a stage creates, commits or discards a version.

    ``reuse`` and a complete version with fingerprint ``fp`` exist: ``tx.reused`` is that version,
    ``CURRENT`` points at it, and the body must not write. Otherwise the body writes into
    ``tx.version`` and calls ``tx.commit(...)``; on any exception, or when the body returns
    without committing, the previous version stays current and the partial one is deleted -- unless
    ``resume``: then it is kept (invisible: no manifest, no ``CURRENT``) and the next run with the same
    fingerprint continues in it (``tx.resumed``; completion records say which splits are done).
    """
    tx = Transaction(data_dir, stage, fp, keep_versions)
    fs.check_access(fs.uri(fs.path(data_dir)), write=True, what="data directory")
    with stage_lock(stage_root(data_dir, stage)):
        current = _current_name(data_dir, stage)
        if reuse and (found := find_reusable(data_dir, stage, fp)):
            point_current(found)
            tx.reused, tx.manifest = found, found.manifest()
            yield tx
            return
        if resume and (partial := find_partial(data_dir, stage, fp)):
            tx._version, tx.resumed = partial, True
        try:
            yield tx
            if tx.manifest is None:
                raise RuntimeError(f"stage {stage!r} finished without committing its version")
        except BaseException as exc:
            if tx._version is not None and tx.manifest is None:
                if not resume:
                    discard(tx._version)
                exc.add_note(_not_committed_note(stage, tx._version, current, kept=resume))
            raise


def _current_name(data_dir: Any, stage: str) -> str | None:
    try:
        return current_version(data_dir, stage).name
    except StageNotFoundError:
        return None


def _not_committed_note(stage: str, version: StageVersion, current: str | None, *, kept: bool) -> str:
    previous = f"{current} stays current" if current else "no earlier version was current"
    if kept:
        return (
            f"corpusforge: stage {stage!r} version {version.name} was not committed; {previous}. Its "
            "finished splits are kept: re-run the stage with the same input and config to resume "
            f"(delete {fs.uri(version.path)} to start over; the next commit removes it otherwise)"
        )
    return (
        f"corpusforge: stage {stage!r} version {version.name} was not committed (its partial files are "
        f"never read, and are deleted now or by the next commit); {previous}"
    )


class StageLockedError(RuntimeError):
    """Another run is writing the same stage; the message says who and how to clear a stale lock."""


@contextlib.contextmanager
def stage_lock(root: Any) -> Iterator[None]:
    """Hold ``<stage>/_LOCK`` (created exclusively) while a run writes or publishes the stage.

    A lock left by a dead process on this host is taken over; any other held lock fails fast.
    """
    lock = root / LOCK
    token = uuid.uuid4().hex
    body = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    data = json.dumps(body, sort_keys=True).encode()
    if not fs.create_exclusive(lock, data):
        held = _read_lock(lock)
        if held is not None and not _stale(held):
            raise StageLockedError(
                f"stage {root.name!r} is being written by another run (pid {held.get('pid')} on "
                f"{held.get('host')} since {held.get('since')}); wait for it, or delete "
                f"{fs.uri(lock)} if no run is active"
            )
        fs.remove(lock)
        if not fs.create_exclusive(lock, data):
            raise StageLockedError(f"stage {root.name!r}: another run took the lock {fs.uri(lock)} just now")
    _HELD.add(token)
    try:
        yield
    finally:
        _HELD.discard(token)
        with contextlib.suppress(Exception):  # unreachable store: the lock is stale for the next run
            held = _read_lock(lock)
            if held is not None and held.get("token") == token:
                fs.remove(lock)


def _read_lock(lock: Any) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_bytes())
    except (OSError, ValueError):
        return None


_HELD: set[str] = set()  # tokens of the locks this process holds now


def _stale(held: Mapping[str, Any]) -> bool:
    """A lock of a process that no longer runs on this host, or one this process left behind."""
    if held.get("host") != socket.gethostname():
        return False
    if held.get("pid") == os.getpid():
        return held.get("token") not in _HELD
    try:
        os.kill(int(held.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


# --------------------------------------------------------------------------------------------------
# reading


def iter_rows(
    path: str | os.PathLike, columns: list[str] | None = None, batch_rows: int = 1024
) -> Iterator[dict]:
    """Stream the rows of one Parquet shard as dicts (map columns as dicts), one batch in memory."""
    with open_parquet(path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield from schemas.from_batch(batch)


@contextlib.contextmanager
def open_parquet(path: str | os.PathLike) -> Iterator[pq.ParquetFile]:
    """A ``ParquetFile`` on a local path or an object store (ranged reads, one row group at a time)."""
    local = fs.local_path(fs.path(path))
    if local is not None:
        pf = pq.ParquetFile(local)
        try:
            yield pf
        finally:
            pf.close()
        return
    with fs.open_read(path) as fh:
        pf = pq.ParquetFile(fh)
        yield pf


def iter_stage_rows(
    version: StageVersion, kind: str = "documents", columns: list[str] | None = None
) -> Iterator[dict]:
    for path in version.shard_paths(kind):
        yield from iter_rows(path, columns=columns)
