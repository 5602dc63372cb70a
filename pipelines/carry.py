"""Incremental runs: a new version re-uses the output of every split whose input did not change.

A stage that processes splits (one input file or upstream shard each; the output of a split depends
only on its input, the stage's config and the code) records, per split, the identity of the input it
read (``splits.json`` in the version: file name, size and change stamp for ingestion, the upstream
shard's checksum downstream) and the split's statistics. The next run with the same *carry key*
(fingerprint of stage, config and code, not of the input) processes only splits whose input is new or
different; the others are *carried*: the new manifest lists their shards where they already are, in
the earlier version's directory (``"version"`` in the shard entry), and their statistics come from
``splits.json``. Nothing is copied. A split whose input disappeared (a removed or changed file) is not
carried, which retracts its documents. Pruning keeps every version a kept version carries shards from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines import storage

SPLITS_FILE = "splits.json"
BATCH_KEY = re.compile(r"^b(\d+)-")


def batch_key(batch: int, index: int) -> str:
    """Key of the ``index``-th new split of input batch ``batch`` (``raw``); downstream split keys
    start with it (they are upstream shard names), so every stage knows a document's batch."""
    return f"b{batch:04d}-{index:05d}"


def batch_of(key: str) -> int:
    """The input batch of a split key (0 for keys of no batch)."""
    m = BATCH_KEY.match(key)
    return int(m.group(1)) if m else 0


@dataclass(frozen=True)
class SplitRun:
    """One run of a split stage: its attempt id and the splits it must not process again (carried
    from the previous version, or finished by an earlier attempt of this one)."""

    attempt: str
    skip: frozenset[str] = field(default_factory=frozenset)

    def todo(self, splits: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [(key, item) for key, item in splits if key not in self.skip]


def previous(data_dir: str, stage: str, carry_key: str) -> storage.StageVersion | None:
    """The current version of ``stage`` if it was made with ``carry_key`` (same config and code)."""
    try:
        version = storage.current_version(data_dir, stage)
    except storage.StageNotFoundError:
        return None
    return version if version.manifest().get("carry_key") == carry_key else None


def read_splits(version: storage.StageVersion) -> dict[str, dict[str, Any]]:
    """``{split key: {"input": identity, "stats": {...}}}`` of a committed version ({} if none)."""
    path = version.path / SPLITS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_bytes())


def write_splits(
    version: storage.StageVersion, records: Mapping[str, Mapping[str, Any]], inputs: Mapping[str, str] | None
) -> None:
    body = {
        k: {"input": r.get("input") or (inputs or {}).get(k), "stats": r["stats"]}
        for k, r in sorted(records.items())
    }
    storage.atomic_write_json(version.path / SPLITS_FILE, body)


def split_entries(prev: storage.StageVersion, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per split of ``prev``: the input identity it read, its shards (pointing at where they live) and
    its statistics."""
    manifest = prev.manifest()
    shards: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for kind in kinds:
        for s in (manifest.get(kind) or {}).get("shards", []):
            entry = {**s, "version": s.get("version", prev.name)}
            shards.setdefault(s.get("split", ""), {}).setdefault(kind, []).append(entry)
    return {
        key: {"input": split["input"], "shards": shards.get(key, {}), "stats": split["stats"]}
        for key, split in read_splits(prev).items()
    }


def carried_records(
    prev: storage.StageVersion, inputs: Mapping[str, str], kinds: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Completion records, pointing at ``prev``'s shards, for every key of ``inputs`` whose input
    identity equals the one ``prev`` processed under the same key."""
    earlier = split_entries(prev, kinds)
    out = {}
    for key, identity in inputs.items():
        split = earlier.get(key)
        if split is not None and identity is not None and split["input"] == identity:
            out[key] = {**split, "split": key, "attempt": f"carried:{prev.name}"}
    return out


def carried_from(entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Versions whose directories hold shards that ``entries`` list."""
    return sorted({s["version"] for e in entries.values() for s in e.get("shards", []) if "version" in s})
