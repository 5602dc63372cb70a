"""Export committed stage versions in standard formats (``corpusforge export ...``; docs/outputs.md).

* :func:`export_documents` -- a documents stage as Parquet that ``datasets`` (``load_dataset("parquet")``),
  DuckDB and Polars open: the same columns as :data:`pipelines.schemas.DOCUMENTS`, except ``signals``
  (an Arrow ``map<string, float>``, which ``datasets`` rejects) becomes a list of ``{key, value}``
  structs in key order. Files ``data/train-<k>-of-<n>.parquet``: one per upstream shard.
* :func:`export_tokens_hf` -- a token dataset as a Hugging Face ``datasets`` folder (the
  ``save_to_disk`` layout): ``<split>/data-<k>-of-<n>.arrow`` (Arrow IPC *stream* files, one per
  shard, column ``input_ids``: one packed window of ``seq_len + 1`` ids), ``<split>/state.json``,
  ``<split>/dataset_info.json`` and ``dataset_dict.json``. Splits ``train`` and ``validation``
  (corpusforge's ``val``).
* :func:`export_tokens_megatron` -- a token dataset as Megatron-LM ``MMapIndexedDataset`` files,
  ``<split>.bin`` / ``<split>.idx``: one sequence per document (its tokens and its end-of-text),
  recovered from the document index, padding dropped; ``.idx`` exactly as Megatron-LM's
  ``indexed_dataset.py`` writes it (:func:`megatron_index_header`).

Every export streams (one record batch or one document-index file in memory at a time) and
writes through :mod:`pipelines.fs`, so the output may be a local path or an object-store URI. It is
written atomically (:func:`staged_output`): locally into a hidden sibling directory renamed into place
at the end; on an object store every file is written once under its final name and ``README.md``
(the dataset card) last, so a folder with a README is complete. The card itself comes from
:mod:`pipelines.card`; callers pass its markdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipelines import fs, storage
from training.token_format import entry_path

CARD_FILE = "README.md"
HF_SPLITS = {"train": "train", "val": "validation"}  # corpusforge split -> Hugging Face split name
SIGNAL_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.float32())]))
BATCH_ROWS = 1024

# Megatron-LM (megatron/core/datasets/indexed_dataset.py): ``_INDEX_HEADER``, version 1 and the
# ``DType`` codes. Megatron has no unsigned 32-bit type: larger vocabularies are stored as int32.
MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}


class ExportError(ValueError):
    """The export cannot be written (target exists, stage of the wrong kind, inconsistent data)."""


@dataclass
class ExportResult:
    """What an export wrote: its location, file names (relative) and counts for the dataset card."""

    path: str
    files: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# the output directory


def _is_empty_dir(target: Any) -> bool:
    fs.refresh(target)
    if not target.exists():
        return True
    if not target.is_dir():
        return False
    return next(iter(target.iterdir()), None) is None


@contextlib.contextmanager
def staged_output(out: fs.Location, *, overwrite: bool = False) -> Iterator[Any]:
    """A directory to write an export into, that becomes ``out`` only if the block succeeds.

    ``out`` must be missing or empty unless ``overwrite`` (then the old content is replaced at the
    end). Local: a hidden sibling ``.<name>.tmp-<rand>`` renamed to ``out`` (the old ``out`` is moved
    aside first and deleted after). Object store: ``out`` itself; on failure what was written is
    deleted (best effort). Yields a location (``pathlib.Path`` locally, ``UPath`` remotely).
    """
    target = fs.path(out)
    if not overwrite and not _is_empty_dir(target):
        raise ExportError(f"{fs.uri(target)} exists and is not empty; choose another folder or overwrite it")
    local = fs.local_path(target)
    if local is None:
        if overwrite:
            fs.rmtree(target)
        try:
            yield target
        except BaseException:
            fs.rmtree(target)
            raise
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = local.parent / f".{local.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield fs.path(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if local.exists():
        if local.is_dir() and not any(local.iterdir()):
            local.rmdir()
        else:
            old = local.with_name(f".{local.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(local, old)
    os.replace(staging, local)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def write_text(path: Any, text: str) -> None:
    fs.write_bytes(path, text.encode("utf-8"))


def write_json(path: Any, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _open_ipc_file(path: Any, stack: contextlib.ExitStack) -> ipc.RecordBatchFileReader:
    """An Arrow IPC file reader (memory-mapped locally, ranged reads on an object store)."""
    local = fs.local_path(fs.path(path))
    if local is not None:
        return ipc.open_file(stack.enter_context(pa.memory_map(str(local), "r")))
    return ipc.open_file(stack.enter_context(fs.open_read(path)))


# --------------------------------------------------------------------------------------------------
# documents -> Parquet


def signals_as_list(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A ``map<string, float>`` column as ``list<struct<key: string, value: float>>`` (same order)."""
    try:
        return column.cast(SIGNAL_TYPE)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # older pyarrow: no map -> list cast
        values = column.to_pylist()
        return pa.array(
            [None if v is None else [{"key": k, "value": x} for k, x in v] for v in values], SIGNAL_TYPE
        )


def export_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every map column as a list of key/value structs (metadata noted)."""
    fields = [
        pa.field(f.name, SIGNAL_TYPE, nullable=f.nullable) if pa.types.is_map(f.type) else f for f in schema
    ]
    meta = dict(schema.metadata or {})
    meta[b"corpusforge.export"] = b"documents/1; map columns as list<struct<key, value>>"
    return pa.schema(fields, metadata=meta)


def convert_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = [signals_as_list(c) if pa.types.is_map(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def source_group(source: str | None) -> str:
    """The top-level source of a document: the first component of its input path."""
    if not source:
        return "unknown"
    return source.replace("\\", "/").lstrip("/").split("/", 1)[0]


def export_documents(
    version: storage.StageVersion,
    out: fs.Location,
    *,
    card: Callable[[ExportResult], str] | None = None,
    overwrite: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> ExportResult:
    """Write the documents of ``version`` as Parquet under ``out/data/`` (see the module docstring).

    ``card(result)`` returns the dataset card written as ``out/README.md``, given the files and
    counts (documents, languages, sources) of the export.
    """
    manifest = version.manifest()
    if "documents" not in manifest:
        raise ExportError(f"stage {version.stage!r} ({version.name}) holds no documents")
    shards = version.shard_paths("documents")
    result = ExportResult(fs.uri(fs.path(out)))
    languages: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    rows = 0
    with staged_output(out, overwrite=overwrite) as root:
        n = max(1, len(shards))
        for k, shard in enumerate(shards):
            rel = f"data/train-{k:05d}-of-{n:05d}.parquet"
            with storage.open_parquet(shard) as pf:
                schema = export_schema(pf.schema_arrow)
                with (
                    fs.open_write(root / rel) as sink,
                    pq.ParquetWriter(sink, schema, compression="zstd") as w,
                ):
                    for batch in pf.iter_batches(batch_size=batch_rows):
                        w.write_batch(convert_batch(batch, schema))
                        rows += batch.num_rows
                        if "lang" in batch.schema.names:
                            languages.update(x or "und" for x in batch.column("lang").to_pylist())
                        if "source" in batch.schema.names:
                            sources.update(source_group(x) for x in batch.column("source").to_pylist())
            result.files.append(rel)
        if not shards:  # an empty stage still yields a readable (empty) file
            rel = "data/train-00000-of-00001.parquet"
            with fs.open_write(root / rel) as sink:
                pq.write_table(_empty_documents_table(), sink)
            result.files.append(rel)
        result.counts = {
            "kind": "documents",
            "stage": version.stage,
            "version": version.name,
            "documents": rows,
            "languages": dict(languages.most_common()),
            "sources": dict(sources.most_common()),
            "data_files": {"train": "data/train-*.parquet"},
        }
        if rows != int((manifest.get("documents") or {}).get("rows", rows)):
            raise ExportError(
                f"{version.name}: read {rows} documents, the manifest lists {manifest['documents']['rows']}"
            )
        if card is not None:
            write_text(root / CARD_FILE, card(result))
            result.files.append(CARD_FILE)
    return result


def _empty_documents_table() -> pa.Table:
    from pipelines import schemas

    return export_schema(schemas.DOCUMENTS).empty_table()


# --------------------------------------------------------------------------------------------------
# tokens: shared


def _token_manifest(version: storage.StageVersion) -> dict[str, Any]:
    manifest = version.manifest()
    if not str(manifest.get("format", "")).startswith("corpusforge-tokens/") or "splits" not in manifest:
        raise ExportError(f"stage {version.stage!r} ({version.name}) is not a token dataset")
    return manifest


def _iter_windows(
    version: storage.StageVersion, manifest: Mapping[str, Any], split: str
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(shard index, record batch)`` of every shard of ``split``, in order."""
    for k, shard in enumerate(manifest["splits"][split]["shards"]):
        with contextlib.ExitStack() as stack:
            reader = _open_ipc_file(entry_path(version.path, shard), stack)
            for i in range(reader.num_record_batches):
                yield k, reader.get_batch(i)


# --------------------------------------------------------------------------------------------------
# tokens -> Hugging Face datasets


def hf_schema(window: int, value_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [pa.field("input_ids", pa.list_(value_type, window), nullable=False)],
        metadata={"corpusforge.export": "tokens-hf/1"},
    )


def export_tokens_hf(
    version: storage.StageVersion,
    out: fs.Location,
    *,
    card: Callable[[ExportResult], str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the token dataset ``version`` as a Hugging Face ``datasets`` folder (module docstring).

    ``datasets.load_from_disk(out)`` gives a ``DatasetDict``; ``Dataset.from_file`` reads one shard;
    ``load_dataset(out)`` reads the ``configs`` of the card. Windows are copied as they are (the
    padded tail of a split's last window holds ``pad_id``: mask it in the labels).
    """
    manifest = _token_manifest(version)
    window = int(manifest["seq_len"]) + 1
    value_type = pa.uint32() if manifest.get("dtype") == "uint32" else pa.uint16()
    result = ExportResult(fs.uri(fs.path(out)))
    splits = [s for s in HF_SPLITS if s in manifest["splits"]]
    splits += sorted(s for s in manifest["splits"] if s not in HF_SPLITS)
    names = {s: HF_SPLITS.get(s, s) for s in splits}
    counts: dict[str, Any] = {}
    with staged_output(out, overwrite=overwrite) as root:
        for split in splits:
            entry, name = manifest["splits"][split], names[split]
            shards = entry["shards"] or [None]  # an empty split still gets one (empty) file
            files, rows = [], 0
            for k, shard in enumerate(shards):
                rel = f"data-{k:05d}-of-{len(shards):05d}.arrow"
                schema = hf_schema(window, value_type)
                with contextlib.ExitStack() as stack:
                    sink = stack.enter_context(fs.open_write(root / name / rel))
                    writer = stack.enter_context(ipc.new_stream(sink, schema))
                    if shard is not None:
                        reader = _open_ipc_file(entry_path(version.path, shard), stack)
                        for i in range(reader.num_record_batches):
                            batch = reader.get_batch(i)
                            writer.write_batch(pa.RecordBatch.from_arrays([batch.column(0)], schema=schema))
                            rows += batch.num_rows
                files.append(rel)
            if rows != int(entry["sequences"]):
                raise ExportError(f"{split}: read {rows} windows, the manifest lists {entry['sequences']}")
            write_json(root / name / "state.json", _hf_state(files, version.name, name))
            write_json(root / name / "dataset_info.json", _hf_info(manifest, version))
            result.files += [f"{name}/{f}" for f in files] + [
                f"{name}/state.json",
                f"{name}/dataset_info.json",
            ]
            counts[name] = {
                "sequences": rows,
                "tokens": int(entry["tokens"]),
                "documents": int(entry.get("documents", 0)),
            }
        write_json(root / "dataset_dict.json", {"splits": [names[s] for s in splits]})
        result.files.append("dataset_dict.json")
        result.counts = {
            "kind": "tokens",
            "format": "hf",
            "stage": version.stage,
            "version": version.name,
            "splits": counts,
            "rows": sum(c["sequences"] for c in counts.values()),
            "data_files": {names[s]: f"{names[s]}/data-*.arrow" for s in splits},
        }
        if card is not None:
            write_text(root / CARD_FILE, card(result))
            result.files.append(CARD_FILE)
    return result


def _hf_state(files: list[str], version: str, split: str) -> dict[str, Any]:
    fingerprint = hashlib.blake2b(f"{version}/{split}".encode(), digest_size=8).hexdigest()
    return {
        "_data_files": [{"filename": f} for f in files],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }


def _hf_info(manifest: Mapping[str, Any], version: storage.StageVersion) -> dict[str, Any]:
    """``dataset_info.json`` without ``features`` (``datasets`` reads them from the Arrow schema, so
    the file suits every ``datasets`` version)."""
    return {
        "description": (
            f"corpusforge token dataset {version.name}: packed windows of seq_len + 1 = "
            f"{int(manifest['seq_len']) + 1} token ids, one end-of-text ({manifest.get('eot_id')}) after "
            f"every document; only the last window of a split is padded with pad_id {manifest.get('pad_id')} "
            "(mask it in the labels). See README.md."
        ),
        "citation": "",
        "homepage": "",
        "license": "",
    }


# --------------------------------------------------------------------------------------------------
# tokens -> Megatron-LM MMapIndexedDataset


def megatron_dtype(dtype: str) -> np.dtype:
    """The numpy dtype a Megatron ``.bin`` of a ``dtype`` token dataset holds (uint32 -> int32)."""
    return np.dtype(np.uint16) if dtype == "uint16" else np.dtype(np.int32)


def megatron_index_header(dtype: np.dtype, sequences: int, documents: int) -> bytes:
    """Magic, version (u64), dtype code (u8), sequence count (u64), document count (u64): the bytes
    before the sizes array, as Megatron-LM's ``_IndexWriter`` writes them."""
    return (
        MEGATRON_MAGIC
        + struct.pack("<Q", MEGATRON_VERSION)
        + struct.pack("<B", MEGATRON_DTYPES[np.dtype(dtype)])
        + struct.pack("<Q", sequences)
        + struct.pack("<Q", documents)
    )


def _document_lengths(
    version: storage.StageVersion, manifest: Mapping[str, Any], split: str
) -> Iterator[np.ndarray]:
    """Token counts (end-of-text included) of the split's documents in stream order, in chunks: a
    document starts at each document-index piece whose ``doc_token_start`` is 0 and continues over
    the following pieces (a document spanning windows has one piece per window, maybe in the next
    file)."""
    files = ((manifest.get("doc_index") or {}).get(split) or {}).get("files", [])
    if int(manifest["splits"][split].get("tokens", 0)) and not files:
        raise ExportError(f"{version.name}: split {split!r} has no document index; cannot recover documents")
    pending = 0  # tokens of the document still open at the end of the previous batch
    for f in files:
        with storage.open_parquet(entry_path(version.path, f)) as pf:
            for batch in pf.iter_batches(batch_size=1 << 16, columns=["doc_token_start", "length"]):
                starts = batch.column(0).to_numpy(zero_copy_only=False) == 0
                lengths = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
                owner = np.cumsum(starts)  # 0: the open document, i: the i-th document starting here
                sums = np.zeros(int(starts.sum()) + 1, np.int64)
                np.add.at(sums, owner, lengths)
                pending += int(sums[0])
                if len(sums) > 1:
                    if pending:
                        yield np.array([pending], np.int64)
                    yield sums[1:-1]
                    pending = int(sums[-1])
    if pending:
        yield np.array([pending], np.int64)


def export_tokens_megatron(
    version: storage.StageVersion,
    out: fs.Location,
    *,
    card: Callable[[ExportResult], str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the token dataset ``version`` as Megatron-LM ``<split>.bin`` / ``<split>.idx`` pairs.

    One sequence per document (``--data-path <out>/train``): the ``.bin`` is the split's token
    stream without the final padding, the ``.idx`` holds the header, every document's length
    (int32), its byte offset in the ``.bin`` (int64) and the document index ``0..n`` (int64).
    """
    manifest = _token_manifest(version)
    dtype = megatron_dtype(str(manifest["dtype"]))
    itemsize = dtype.itemsize
    result = ExportResult(fs.uri(fs.path(out)))
    counts: dict[str, Any] = {}
    with staged_output(out, overwrite=overwrite) as root:
        for split, entry in manifest["splits"].items():
            total = int(entry["tokens"])
            documents = int(entry.get("documents", 0))
            written = 0
            with fs.open_write(root / f"{split}.bin") as sink:
                for _, batch in _iter_windows(version, manifest, split):
                    flat = batch.column(0).flatten().to_numpy(zero_copy_only=False)
                    take = min(len(flat), total - written)
                    if take <= 0:
                        break
                    if dtype != flat.dtype:
                        if int(flat[:take].max(initial=0)) > np.iinfo(dtype).max:
                            raise ExportError(f"token ids of {version.name} do not fit Megatron's {dtype}")
                        sink.write(flat[:take].astype(dtype).tobytes())
                    else:
                        sink.write(np.ascontiguousarray(flat[:take]).tobytes())
                    written += take
            if written != total:
                raise ExportError(f"{split}: the shards hold {written} tokens, the manifest lists {total}")
            # two passes over the (small) document index: lengths, then byte offsets
            with fs.open_write(root / f"{split}.idx") as sink:
                sink.write(megatron_index_header(dtype, documents, documents + 1))
                seen, tokens = 0, 0
                for chunk in _document_lengths(version, manifest, split):
                    sink.write(chunk.astype("<i4").tobytes())
                    seen += len(chunk)
                    tokens += int(chunk.sum())
                if (seen, tokens) != (documents, total):
                    raise ExportError(
                        f"{split}: the document index holds {seen} documents / {tokens} tokens, the manifest "
                        f"lists {documents} / {total}"
                    )
                offset = 0
                for chunk in _document_lengths(version, manifest, split):
                    ends = np.cumsum(chunk) * itemsize + offset
                    starts = np.concatenate([[offset], ends[:-1]]) if len(chunk) else ends
                    sink.write(starts.astype("<i8").tobytes())
                    if len(chunk):
                        offset = int(ends[-1])
                for lo in range(0, documents + 1, 1 << 20):
                    sink.write(np.arange(lo, min(documents + 1, lo + (1 << 20)), dtype="<i8").tobytes())
            result.files += [f"{split}.bin", f"{split}.idx"]
            counts[split] = {"documents": documents, "tokens": total}
        result.counts = {
            "kind": "tokens",
            "format": "megatron",
            "stage": version.stage,
            "version": version.name,
            "dtype": str(dtype),
            "splits": counts,
            "rows": sum(c["documents"] for c in counts.values()),
        }
        if card is not None:
            write_text(root / CARD_FILE, card(result))
            result.files.append(CARD_FILE)
    return result
