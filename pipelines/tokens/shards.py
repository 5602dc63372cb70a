"""Build and write one packed output shard: Arrow IPC windows + its Parquet document index.

Layout inside a ``tokens`` stage version::

    <split>/part-<k>.arrow                 the token shard (format: training/token_format.py)
    doc_index/<split>/part-<k>.parquet     schema DOC_INDEX, the documents of shard k's windows

Files are written under temporary names and renamed; a JSON sidecar ``<split>/part-<k>.arrow.shard.json``
carries counts and checksums to the driver, which folds them into ``manifest.json`` and deletes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import fs, schemas, storage
from pipelines.tokens.encode import NP_DTYPES, read_segment_docs, read_segment_tokens
from pipelines.tokens.packing import ShardTask, doc_pieces, to_windows
from training import token_format

SIDECAR = ".shard.json"
INDEX_DIR = "doc_index"


@dataclass
class PackedShard:
    """The windows of one output shard and the document pieces they contain."""

    split: str
    index: int
    windows: np.ndarray  # (n, window)
    doc_index: pa.Table  # schemas.DOC_INDEX
    tokens: int  # real (non-pad) tokens
    summary: Mapping[str, Any]


def pack_shard(task: ShardTask, window: int, pad_id: int, dtype: str) -> PackedShard:
    """Read the task's token ranges from its segments and cut them into windows + index rows."""
    pieces = [read_segment_tokens(p.segment, p.start, p.end, dtype) for p in task.parts]
    flat = np.concatenate(pieces) if pieces else np.empty(0, NP_DTYPES[dtype])
    if len(flat) != task.token_end - task.token_start:
        raise RuntimeError(
            f"{task.split} shard {task.index}: read {len(flat)} tokens from segments, expected "
            f"{task.token_end - task.token_start} (a segment file is truncated)"
        )
    tables = []
    for p in task.parts:
        docs = read_segment_docs(p.segment)
        rows = doc_pieces(
            docs.column("tokens").to_numpy(), p.offset, task.token_start, task.token_end, window
        )
        tables.append(
            pa.table(
                {
                    "sequence": pa.array(rows["sequence"], pa.int64()),
                    "doc_id": docs.column("doc_id").take(pa.array(rows["doc"])),
                    "doc_token_start": pa.array(rows["doc_token_start"], pa.int64()),
                    "window_start": pa.array(rows["window_start"], pa.int32()),
                    "length": pa.array(rows["length"], pa.int32()),
                },
                schema=schemas.DOC_INDEX,
            )
        )
    index = pa.concat_tables(tables) if tables else schemas.DOC_INDEX.empty_table()
    return PackedShard(
        task.split, task.index, to_windows(flat, window, pad_id), index, len(flat), task.summary
    )


def write_parquet(path: Any, table: pa.Table) -> str:
    """Write ``table`` as one Parquet file (atomically, local or object store); returns its sha256."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    fs.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def write_token_shard(path: Any, windows: np.ndarray, dtype: str) -> str:
    """Write one token shard (atomically, local or object store); returns its sha256."""
    data = token_format.shard_bytes(windows, dtype)
    fs.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def write_packed_shard(
    root: str | os.PathLike, shard: PackedShard, dtype: str, eot_id: int
) -> dict[str, Any]:
    """Write the shard, its document index and its sidecar under the version directory ``root``."""
    base = fs.path(root)
    rel = token_format.shard_path(shard.split, shard.index)
    rel_index = f"{INDEX_DIR}/{shard.split}/part-{shard.index:05d}.parquet"
    info = {
        "split": shard.split,
        "index": shard.index,
        "path": rel,
        "sequences": int(shard.windows.shape[0]),
        "sha256": write_token_shard(base / rel, shard.windows, dtype),
        "tokens": int(shard.tokens),
        "documents_ending": int(np.count_nonzero(shard.windows == eot_id)),
        "index_path": rel_index,
        "index_rows": shard.doc_index.num_rows,
        "index_sha256": write_parquet(base / rel_index, shard.doc_index),
        "split_summary": dict(shard.summary),
    }
    storage.atomic_write_json(base / (rel + SIDECAR), info)
    return info


def collect_split(root: str | os.PathLike, split: str, first_index: int = 0) -> list[dict[str, Any]]:
    """The sidecars of one split, in shard order; raises if shards are missing from the sequence
    (which starts at ``first_index`` for a batch appended to earlier shards)."""
    directory = fs.path(root) / split
    fs.refresh(directory)
    infos = [json.loads(p.read_text()) for p in sorted(directory.glob(f"part-*{SIDECAR}"))]
    infos.sort(key=lambda i: i["index"])
    if [i["index"] for i in infos] != list(range(first_index, first_index + len(infos))):
        raise RuntimeError(f"{directory}: output shards are not contiguous: {[i['index'] for i in infos]}")
    if infos and len(infos) != infos[0]["split_summary"]["shards"]:
        raise RuntimeError(
            f"{directory}: {len(infos)} shards written, the plan has {infos[0]['split_summary']['shards']}"
        )
    return infos
