"""Audits of committed tokenizer and token-dataset versions (used by the blocking asset checks).

* :func:`audit_shards` re-counts every split from its Arrow IPC files: checksum, schema, rows
  against the manifest, real (non-pad) tokens, EOTs (one per document) and where padding sits.
* :func:`audit_splits` reads the document indexes' ``doc_id`` columns: no id in both splits, and
  each split's index starts exactly ``documents`` documents (one piece with ``doc_token_start == 0``).
* :func:`audit_tokenizer` checks ``tokenizer.json`` against its manifest and round-trips samples.

Each returns a dict with ``problems`` (human-readable, naming the file) and the counts it measured.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from pipelines import fs, schemas, storage
from pipelines.tokens.bpe import load_tokenizer
from pipelines.tokens.splits import TRAIN, VAL, source_id
from training.token_format import entry_path

ROUND_TRIP_SAMPLES = (
    "The quick brown fox jumps over the lazy dog.\n",
    "  two leading spaces, a tab\tand\n\nblank lines\n",
    "中文文本：天下大势，分久必合，合久必分。\n第二行",
    "Mixed 中文 and English, emoji 😀🎉, accents e\u0301 café <|endoftext|>",
)


def _count_shard(path: Any, schema: pa.Schema, pad_id: int, eot_id: int) -> dict[str, Any]:
    """Rows, real tokens, EOTs, and where padding starts (``first_pad``; -1 for none) in one shard."""
    with fs.open_read(path) as source:
        reader = ipc.open_file(source)
        if reader.schema.names != ["tokens"] or not reader.schema.field(0).type.equals(schema.field(0).type):
            raise ValueError(f"schema {reader.schema.field(0).type} != {schema.field(0).type}")
        rows = tokens = eots = offset = 0
        first_pad, tail_ok = -1, True
        for b in range(reader.num_record_batches):
            column = reader.get_batch(b).column(0)
            if column.null_count:
                raise ValueError("null windows")
            flat = column.flatten().to_numpy(zero_copy_only=False)
            is_pad = flat == pad_id
            rows += len(column)
            tokens += int(flat.size - is_pad.sum())
            eots += int(np.count_nonzero(flat == eot_id))
            if first_pad < 0 and is_pad.any():
                first_pad = offset + int(np.argmax(is_pad))
            if first_pad >= 0:
                tail_ok = tail_ok and bool(is_pad[max(0, first_pad - offset) :].all())
            offset += flat.size
    return {"rows": rows, "tokens": tokens, "eots": eots, "first_pad": first_pad, "tail_ok": tail_ok}


def audit_shards(version_dir: Any) -> dict[str, Any]:
    """Re-count the token shards of a ``tokens`` version and compare with its manifest."""
    root = fs.path(version_dir)
    manifest = storage.StageVersion(root.parent, root.name).manifest()
    window = int(manifest["seq_len"]) + 1
    schema = schemas.token_schema(manifest["dtype"], window)
    pad_id, eot_id = int(manifest["pad_id"]), int(manifest["eot_id"])
    problems: list[str] = []
    measured: dict[str, dict[str, int]] = {}
    for split, entry in manifest["splits"].items():
        got = {"sequences": 0, "tokens": 0, "documents": 0, "shards": 0}
        shards = entry.get("shards", [])
        for i, shard in enumerate(shards):
            path = entry_path(root, shard)
            got["shards"] += 1
            if not path.is_file():
                problems.append(f"{shard['path']}: missing (listed in manifest.json)")
                continue
            if storage.sha256_file(path) != shard["sha256"]:
                problems.append(f"{shard['path']}: sha256 mismatch (corrupt or replaced)")
            try:
                c = _count_shard(path, schema, pad_id, eot_id)
            except (pa.ArrowInvalid, OSError, ValueError) as exc:
                problems.append(f"{shard['path']}: unreadable Arrow IPC file ({exc})")
                continue
            if c["rows"] != shard["sequences"]:
                problems.append(f"{shard['path']}: {c['rows']} sequences, manifest says {shard['sequences']}")
            # the last window of a split is padded; so is the last window of every appended batch
            last = i == len(shards) - 1 or shards[i + 1].get("batch_start", False)
            if c["first_pad"] >= 0 and not (
                last and c["tail_ok"] and c["first_pad"] >= (c["rows"] - 1) * window
            ):
                problems.append(f"{shard['path']}: pad tokens before the end of the split's last window")
            got["sequences"] += c["rows"]
            got["tokens"] += c["tokens"]
            got["documents"] += c["eots"]
        for key in ("sequences", "tokens", "documents"):
            if got[key] != entry[key]:
                problems.append(f"split {split}: shards hold {got[key]} {key}, manifest says {entry[key]}")
        measured[split] = got
    return {"problems": problems, "measured": measured}


def _index_files(root: Any, manifest: dict, split: str) -> list[Any]:
    entry = (manifest.get("doc_index") or {}).get(split) or {"files": []}
    return [entry_path(root, f) for f in entry["files"]]


def audit_splits(version_dir: Any) -> dict[str, Any]:
    """No document id in both splits; each split's index starts exactly its ``documents``."""
    root = fs.path(version_dir)
    manifest = storage.StageVersion(root.parent, root.name).manifest()
    problems: list[str] = []
    val_ids: set[str] = set()
    starts: dict[str, int] = {}
    for split in (VAL, TRAIN):
        starts[split] = 0
        for path in _index_files(root, manifest, split):
            if not path.is_file():
                problems.append(f"{path.name}: document index file missing")
                continue
            try:
                with storage.open_parquet(path) as pf:
                    batches = list(pf.iter_batches(columns=["doc_id", "doc_token_start"]))
                for batch in batches:
                    ids = batch.column(0)
                    first = np.asarray(batch.column(1).to_numpy(zero_copy_only=False)) == 0
                    starts[split] += int(first.sum())
                    if split == VAL:
                        val_ids.update(source_id(x) for x in ids.to_pylist())
                    else:
                        both = [x for x in ids.to_pylist() if source_id(x) in val_ids]
                        problems += [
                            f"document {x!r} (or its source) is in both train and val" for x in both[:5]
                        ]
            except (pa.ArrowInvalid, OSError) as exc:
                problems.append(f"{path.name}: unreadable document index ({exc})")
        expected = int(manifest["splits"].get(split, {}).get("documents", 0))
        if starts[split] != expected:
            problems.append(
                f"split {split}: document index starts {starts[split]} documents, manifest says {expected}"
            )
    return {"problems": problems[:50], "documents": starts, "val_ids": len(val_ids)}


def audit_tokenizer(version_dir: Any) -> dict[str, Any]:
    """``tokenizer.json`` exists, matches its sha256, loads, and round-trips the sample texts."""
    root = fs.path(version_dir)
    entry = storage.StageVersion(root.parent, root.name).manifest()["tokenizer"]
    path = root / entry["path"]
    if not path.is_file():
        return {"problems": [f"{entry['path']}: missing"]}
    problems = []
    if storage.sha256_file(path) != entry["sha256"]:
        problems.append(f"{entry['path']}: sha256 mismatch (corrupt or replaced)")
    try:
        tok = load_tokenizer(path)
    except Exception as exc:  # any parse error of the JSON or the model
        return {"problems": [*problems, f"{entry['path']}: does not load ({exc})"]}
    if tok.get_vocab_size() != entry["vocab_size"]:
        problems.append(f"vocab size {tok.get_vocab_size()}, manifest says {entry['vocab_size']}")
    for text in ROUND_TRIP_SAMPLES:
        back = tok.decode(tok.encode(text).ids)
        if back != unicodedata.normalize("NFC", text):
            problems.append(f"round trip changed {text[:30]!r} into {back[:30]!r}")
    return {"problems": problems, "vocab_size": tok.get_vocab_size()}
