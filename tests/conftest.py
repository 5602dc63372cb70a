"""Shared fixtures: Beam options that never try Prism, small corpora, isolated data directories."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_CORPUS = REPO / "sample_data" / "corpus"


@pytest.fixture
def beam_options():
    """Single-process FnApiRunner (the DirectRunner would first try to download Prism)."""
    from apache_beam.options.pipeline_options import PipelineOptions  # torch-only machines lack Beam

    return PipelineOptions(
        ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )


def write_bad_corpus(root: Path) -> dict[str, int]:
    """A corpus with one of every kind of bad input; returns the expected quarantine counts."""
    root.mkdir(parents=True, exist_ok=True)
    good = "The quick brown fox jumps over the lazy dog near the river bank today."
    with open(root / "records.jsonl", "wb") as fh:
        fh.write(json.dumps({"text": good, "url": "https://example.org/1"}).encode() + b"\n")
        fh.write(b'{"text": "bad \xff\xfe bytes"}\n')  # invalid-utf8
        fh.write(b'{"text": "no closing brace"\n')  # malformed-json
        fh.write(b"[1, 2, 3]\n")  # malformed-json (not an object)
        fh.write(b'{"body": "wrong field"}\n')  # missing-text-field
        fh.write(b'{"text": 7}\n')  # missing-text-field (not a string)
        fh.write(b'{"text": "   \\n  "}\n')  # empty-text
        fh.write(json.dumps({"text": "y" * 5000}).encode() + b"\n")  # record-too-large (limit 4096)
        fh.write(b'{"text": "lone \\ud800 surrogate"}\n')  # invalid-utf8 (surrogate escape)
        fh.write(b"\n")  # blank line: not a record
        fh.write(
            json.dumps({"text": "这是一个中文文档，用来测试读取。"}, ensure_ascii=False).encode() + b"\n"
        )
    full = gzip.compress(json.dumps({"text": good}).encode() * 50 + b"\n")
    (root / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])  # unreadable-file
    (root / "picture.png").write_bytes(b"\x89PNG\r\n")  # unsupported-format
    with gzip.open(root / "more.jsonl.gz", "wb") as fh:
        fh.write(json.dumps({"text": good + " Again."}).encode() + b"\n")
    (root / "note.txt").write_text("A plain text note that is a whole document.\n", encoding="utf-8")
    return {
        "invalid-utf8": 2,
        "malformed-json": 2,
        "missing-text-field": 2,
        "empty-text": 1,
        "record-too-large": 1,
        "unreadable-file": 1,
        "unsupported-format": 1,
        "documents": 4,
    }


@pytest.fixture
def bad_corpus(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "input"
    return root, write_bad_corpus(root)


def commit_documents(data_dir: Path, stage: str, docs: list[dict], per_shard: int = 4) -> str:
    """Commit ``docs`` (dicts with at least id and text) as a stage version; returns its name."""
    from pipelines import schemas, storage

    version = storage.new_version(data_dir, stage, "test")
    for i in range(0, len(docs), per_shard):
        writer = storage.ShardWriter(
            version.dir("documents"),
            f"{i // per_shard:05d}",
            schemas.DOCUMENTS,
            max_shard_bytes=1 << 30,
            row_group_rows=64,
        )
        for j, d in enumerate(docs[i : i + per_shard]):
            writer.write(
                {"source": "test", "offset": i + j, "lang": "en", "lang_score": 1.0, "tags": [], **d}
            )
        writer.close()
    entries = {k: storage.collect_shards(version.dir(k)) for k in ("documents", "ledger")}
    storage.commit(version, config={}, upstream={}, entries=entries)
    return version.name
