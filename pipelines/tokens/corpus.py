"""Commit a small documents stage from in-memory texts (tests, benchmarks, demos of the token stages)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines import schemas, storage


def make_document(text: str, *, lang: str | None = None, doc_id: str | None = None, source: str = "mem") -> dict:
    """A ``DOCUMENTS`` row; the id defaults to a hash of the text."""
    return {
        "id": doc_id or hashlib.sha1(text.encode("utf-8")).hexdigest()[:20],
        "text": text,
        "source": source,
        "offset": 0,
        "lang": lang,
        "signals": {},
        "tags": [],
        "meta": "{}",
    }


def write_documents_stage(
    data_dir: str | os.PathLike,
    documents: Iterable[Mapping[str, Any]],
    *,
    stage: str = "filtered",
    shard_docs: int = 1000,
    row_group_rows: int = 256,
) -> storage.StageVersion:
    """Write ``documents`` as shards of ``shard_docs`` rows and commit them as ``stage``."""
    version = storage.new_version(data_dir, stage, "fixture")
    writer: storage.ShardWriter | None = None
    n = 0
    for doc in documents:
        if writer is None or n % shard_docs == 0:
            if writer is not None:
                writer.close()
            writer = storage.ShardWriter(
                version.dir("documents"),
                f"{n // shard_docs:05d}",
                schemas.DOCUMENTS,
                max_shard_bytes=1 << 62,
                row_group_rows=row_group_rows,
            )
        writer.write(doc)
        n += 1
    if writer is not None:
        writer.close()
    storage.commit(
        version,
        config={"fixture": True},
        upstream={},
        entries={
            "documents": storage.collect_shards(version.dir("documents")),
            "ledger": storage.collect_shards(version.dir("ledger")),
        },
    )
    return version
