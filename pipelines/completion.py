"""Completion records: what each finished split (or step task) of an uncommitted version wrote.

``<directory>/_done/<key>.json`` is written atomically once a split's shards are closed. The records
make a stage resumable: a re-run of a stage that failed continues in the same uncommitted version
(same fingerprint) and skips every split that has a record, so only unfinished splits are processed
again. For stages that process splits they are also the only source of the manifest's shard lists and
per-split statistics: shards of a split that died half-way are never listed, and leftovers of it are
removed before the re-run (:func:`remove_unrecorded`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines import fs

DONE = "_done"
READ_THREADS = 16  # concurrent reads of records on object stores


def record_path(directory: fs.Location, key: str) -> Any:
    return fs.path(directory) / DONE / f"{key}.json"


def exists(directory: fs.Location, key: str) -> bool:
    return bool(record_path(directory, key).is_file())


def write(directory: fs.Location, key: str, record: Mapping[str, Any]) -> None:
    """Write the record of ``key`` (atomic: temporary file + rename locally, one PUT remotely)."""
    fs.write_bytes(record_path(directory, key), json.dumps(record, sort_keys=True, default=str).encode())


def read(directory: fs.Location, key: str) -> dict[str, Any] | None:
    p = record_path(directory, key)
    try:
        return json.loads(p.read_bytes())
    except FileNotFoundError:
        return None


def keys(directory: fs.Location) -> list[str]:
    """Keys that have a record, sorted."""
    done = fs.path(directory) / DONE
    fs.refresh(done)
    if not done.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in done.glob("*.json"))


def read_all(directory: fs.Location) -> dict[str, dict[str, Any]]:
    """Every record under ``directory``, by key (read concurrently on object stores)."""
    names = keys(directory)
    if not names:
        return {}
    threads = READ_THREADS if fs.is_remote_path(fs.path(directory)) else 1
    with ThreadPoolExecutor(threads) as pool:
        records = list(pool.map(lambda k: read(directory, k), names))
    return {k: r for k, r in zip(names, records, strict=True) if r is not None}


def resumable(fn: Callable[[Any, Any], dict[str, Any]], directory: str, name: str) -> Callable[..., Any]:
    """``fn(task, plan) -> stats`` that records its statistics under ``<name>-<task key>`` and, when
    the record exists already (a resumed run), returns them (plus ``tasks_resumed: 1``) without
    running ``fn`` again.

    Statistics go through JSON either way, so resumed and fresh tasks combine alike."""

    def run(task: Any, plan: Any) -> dict[str, Any]:
        key = f"{name}-{task_key(task)}"
        found = read(directory, key)
        if found is not None:
            return {**found["stats"], "tasks_resumed": 1}
        stats = json.loads(json.dumps(fn(task, plan), default=_plain))
        write(directory, key, {"stats": stats})
        return stats

    return run


def task_key(task: Any) -> str:
    """A file-name-safe key for a task descriptor (an int, or a dataclass with an ``index``)."""
    if isinstance(task, int):
        return f"{task:06d}"
    index = getattr(task, "index", None)
    if isinstance(index, int):
        return f"{index:06d}"
    raise TypeError(f"no task key for {task!r}")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def remove_unrecorded(version_dir: fs.Location, kinds: Iterable[str], records: Mapping[str, Any]) -> int:
    """Delete files under ``<version>/<kind>/`` that no record lists (leftovers of splits that died
    half-way: partial shards, their sidecars, temporary files); returns how many were removed."""
    listed = {s["path"] for r in records.values() for shards in r["shards"].values() for s in shards}
    removed = 0
    for kind in kinds:
        directory = fs.path(version_dir) / kind
        fs.refresh(directory)
        if not directory.is_dir():
            continue
        for p in list(directory.iterdir()):
            name = p.name
            shard = name[: -len(".shard.json")] if name.endswith(".shard.json") else name
            if shard not in listed:
                fs.remove(p)
                removed += 1
    return removed
