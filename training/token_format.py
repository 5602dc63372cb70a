"""The token dataset format ``corpusforge-tokens/1``: schema, manifest, shard writer and shard reader.

The one definition of the files between the ``tokens`` stage (a Beam job, ``pipelines/tokens``) and
the trainer (``training/data.py``). Needs pyarrow and numpy only: no torch, no Beam.

Layout of a token dataset directory::

    manifest.json            see below
    <split>/part-<k>.arrow   Arrow IPC file; one column ``tokens``: a fixed-size list of
                             ``seq_len + 1`` ids (``dtype``), one packed window per row

``manifest.json`` holds ``format`` (:data:`FORMAT`), ``seq_len``, ``dtype`` (``uint16`` or
``uint32``), ``vocab_size``, the special ids ``eot_id``, ``pad_id``, ``mask_id``,
``tokenizer_sha256`` and ``splits``: ``{split: {"sequences", "tokens", "shards": [{"path",
"sequences", "sha256"}], ...}}`` with shard paths relative to the directory. A pipeline version adds
its own keys (``doc_index``, ``stats``, ``packing``, ``tokenizer``, stage bookkeeping); readers ignore
what they do not know. :func:`token_manifest` builds the format's part, :func:`read_manifest`
checks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

FORMAT = "corpusforge-tokens/1"
MANIFEST_FILE = "manifest.json"
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
ARROW_TYPES = {"uint16": pa.uint16(), "uint32": pa.uint32()}
REQUIRED_KEYS = ("seq_len", "dtype", "vocab_size", "splits")


class TokenDataError(ValueError):
    """The token dataset is missing, corrupt or inconsistent with its manifest; names the file."""


# ------------------------------------------------------------------------------------------- schema


def token_schema(dtype: str, window: int) -> pa.Schema:
    """Schema of a packed token shard: one ``window``-long list of ``dtype`` ids per row."""
    return pa.schema(
        [pa.field("tokens", pa.list_(ARROW_TYPES[dtype], window), nullable=False)],
        metadata={"corpusforge.schema": "tokens/1", "dtype": dtype, "window": str(window)},
    )


def shard_path(split: str, index: int) -> str:
    """Path of shard ``index`` of ``split``, relative to the dataset directory."""
    return f"{split}/part-{index:05d}.arrow"


def entry_path(root: Any, entry: Mapping[str, Any]) -> Any:
    """Where a shard (or document index file) a manifest lists lives: under the dataset directory
    ``root``, or, for a shard appended earlier, under the sibling version directory it names
    (``"version"``: incremental runs list the shards of earlier versions where they are)."""
    version = entry.get("version")
    return (root.parent / version if version else root) / entry["path"]


# ----------------------------------------------------------------------------------------- manifest


def token_manifest(
    *,
    seq_len: int,
    dtype: str,
    vocab_size: int,
    splits: Mapping[str, Any],
    eot_id: int | None,
    pad_id: int | None,
    mask_id: int | None,
    tokenizer_sha256: str = "",
) -> dict[str, Any]:
    """The format's manifest keys (a pipeline version adds its own after them)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    return {
        "format": FORMAT,
        "seq_len": int(seq_len),
        "dtype": dtype,
        "vocab_size": int(vocab_size),
        "tokenizer_sha256": tokenizer_sha256,
        "eot_id": eot_id,
        "pad_id": pad_id,
        "mask_id": mask_id,
        "splits": dict(splits),
    }


def shard_entry(path: str, sequences: int, sha256: str) -> dict[str, Any]:
    """One entry of ``splits[split]["shards"]``."""
    return {"path": path, "sequences": int(sequences), "sha256": sha256}


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and check ``manifest.json`` of the token dataset directory ``path``."""
    file = Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise TokenDataError(f"{file}: token dataset manifest not found")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenDataError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise TokenDataError(f"{file}: format is {found!r}, expected {FORMAT!r}")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise TokenDataError(f"{file}: missing key {key!r}")
    if manifest["dtype"] not in DTYPES:
        raise TokenDataError(f"{file}: dtype {manifest['dtype']!r} is not one of {sorted(DTYPES)}")
    if int(manifest["seq_len"]) < 1 or int(manifest["vocab_size"]) < 1:
        raise TokenDataError(f"{file}: seq_len and vocab_size must be positive")
    return manifest


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- writer


def windows_table(windows: np.ndarray, dtype: str) -> pa.Table:
    """A :func:`token_schema` table over ``windows`` (n, window) without copying the token buffer."""
    window = windows.shape[1]
    values = pa.array(np.ascontiguousarray(windows, dtype=DTYPES[dtype]).reshape(-1))  # type: ignore[call-overload]
    column = pa.FixedSizeListArray.from_arrays(values, window)
    return pa.Table.from_arrays([column], schema=token_schema(dtype, window))


def shard_bytes(windows: np.ndarray, dtype: str, *, rows_per_batch: int | None = None) -> bytes:
    """The bytes of a token shard holding ``windows`` (Arrow IPC file format)."""
    table = windows_table(windows, dtype)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows_per_batch)
    return sink.getvalue().to_pybytes()


def write_shard(
    path: str | os.PathLike, windows: np.ndarray, dtype: str, *, rows_per_batch: int | None = None
) -> str:
    """Write ``windows`` as a local token shard atomically (temporary name, then rename); returns its
    sha256. One record batch, or batches of ``rows_per_batch`` rows (the reader works batch by batch).
    The same bytes as :func:`shard_bytes`, which the Beam stage writes to any store.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = windows_table(windows, dtype)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=rows_per_batch)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def write_token_dataset(
    path: str | os.PathLike,
    splits: Mapping[str, np.ndarray],
    *,
    vocab_size: int,
    dtype: str = "uint16",
    sequences_per_shard: int = 4096,
    rows_per_batch: int = 1024,
    eot_id: int = 0,
    pad_id: int = 1,
    mask_id: int = 2,
    tokenizer_sha256: str = "",
) -> Path:
    """Write in-memory ``splits`` (name -> windows (n, seq_len + 1)) as a token dataset directory.

    For synthetic data in tests and benchmarks; the ``tokens`` stage writes the same shards from Beam.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    seq_len = None
    entries = {}
    for name, arr in splits.items():
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise ValueError(f"split {name!r}: expected a 2-D array of windows")
        seq_len = arr.shape[1] - 1 if seq_len is None else seq_len
        if arr.shape[1] != seq_len + 1:
            raise ValueError("every split must have the same window length")
        shards = []
        for k, lo in enumerate(range(0, len(arr), sequences_per_shard)):
            part, rel = arr[lo : lo + sequences_per_shard], shard_path(name, k)
            digest = write_shard(root / rel, part, dtype, rows_per_batch=rows_per_batch)
            shards.append(shard_entry(rel, len(part), digest))
        entries[name] = {"sequences": len(arr), "tokens": int(arr.size), "shards": shards}
    manifest = token_manifest(
        seq_len=seq_len or 0,
        dtype=dtype,
        vocab_size=vocab_size,
        splits=entries,
        eot_id=eot_id,
        pad_id=pad_id,
        mask_id=mask_id,
        tokenizer_sha256=tokenizer_sha256,
    )
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------- reader


class MappedShard:
    """One shard mapped read-only; record-batch views are zero-copy numpy arrays into the mapping.

    ``pa.memory_map`` cannot release pages without unmapping, which invalidates every view, so
    the shard is mapped with :mod:`mmap` and handed to ``ipc.open_file`` as a buffer (still zero
    copy); :meth:`release` then drops the touched pages from RSS with ``madvise(MADV_DONTNEED)``
    and the views stay valid (the next access maps the page again from the page cache).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path = Path(path)
        if not path.is_file():
            raise TokenDataError(f"token shard {path} does not exist")
        try:
            with open(path, "rb") as fh:
                self.mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as exc:  # an empty file cannot be mapped
            raise TokenDataError(f"token shard {path} cannot be memory-mapped: {exc}") from exc
        try:
            self.reader = ipc.open_file(pa.py_buffer(self.mm))
        except (pa.ArrowInvalid, OSError) as exc:
            self.close()
            raise TokenDataError(f"token shard {path} is not a readable Arrow IPC file: {exc}") from exc
        self.views: dict[int, np.ndarray] = {}

    def view(self, batch: int, window: int) -> np.ndarray:
        """Record batch ``batch`` as a (rows, window) array viewing the mapping."""
        v = self.views.get(batch)
        if v is None:
            v = self.views[batch] = batch_view(self.reader.get_batch(batch), window, self.path)
        return v

    def release(self) -> bool:
        """Drop the mapping's resident pages; False where madvise is unavailable."""
        if not hasattr(self.mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return False
        self.mm.madvise(mmap.MADV_DONTNEED)
        return True

    def close(self) -> None:
        self.views, self.reader = {}, None
        with contextlib.suppress(BufferError):  # a view is still held; unmapped when it is collected
            self.mm.close()


def batch_view(batch: pa.RecordBatch, window: int, path: Path) -> np.ndarray:
    """Zero-copy (rows, window) view of a record batch of a token shard at ``path``."""
    column = batch.column(0)
    if column.null_count:
        raise TokenDataError(f"token shard {path} has null token windows")
    try:
        return column.flatten().to_numpy(zero_copy_only=True).reshape(-1, window)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise TokenDataError(
            f"token shard {path}: cannot view tokens as a {window}-wide array: {exc}"
        ) from exc


def shard_batch_rows(path: str | os.PathLike, dtype: str, window: int) -> list[int]:
    """Row count of every record batch of the shard at ``path``, after checking its schema."""
    expected = token_schema(dtype, window).field(0).type
    shard = MappedShard(path)
    reader = shard.reader
    try:
        field = reader.schema.field(0) if reader.schema.names == ["tokens"] else None
        if field is None or not field.type.equals(expected):
            raise TokenDataError(
                f"token shard {path}: schema is {reader.schema.to_string(show_schema_metadata=False)!r}, "
                f"expected one column tokens: {expected}"
            )
        return [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    except (pa.ArrowInvalid, OSError) as exc:
        raise TokenDataError(f"token shard {path} is corrupt: {exc}") from exc
    finally:
        del reader
        shard.close()
