"""Test fixture: commit a small documents stage from in-memory texts (tests and benchmarks)."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines import schemas, storage


def make_document(
    text: str, *, lang: str | None = None, doc_id: str | None = None, source: str = "mem"
) -> dict:
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
    with storage.transaction(data_dir, stage, "fixture") as tx:
        _write_shards(tx, documents, shard_docs, row_group_rows)
    return tx.version


def _write_shards(
    tx: storage.Transaction, documents: Iterable[Mapping[str, Any]], shard_docs: int, row_group_rows: int
) -> None:
    version = tx.version
    writer: storage.ShardWriter | None = None
    for n, doc in enumerate(documents):
        if n % shard_docs == 0:
            if writer is not None:
                writer.close()
            writer = storage.ShardWriter(
                version.dir("documents"),
                f"{n // shard_docs:05d}",
                schemas.DOCUMENTS,
                max_shard_bytes=1 << 62,
                row_group_rows=row_group_rows,
            )
        assert writer is not None
        writer.write(doc)
    if writer is not None:
        writer.close()
    tx.commit(
        config={"fixture": True},
        upstream={},
        entries={
            "documents": storage.collect_shards(version.dir("documents")),
            "ledger": storage.collect_shards(version.dir("ledger")),
        },
    )


_EN_WORDS = [
    "the",
    "river",
    "runs",
    "past",
    "old",
    "stone",
    "walls",
    "while",
    "children",
    "count",
    "boats",
    "and",
    "merchants",
    "argue",
    "about",
    "grain",
    "prices",
    "near",
    "the",
    "harbour",
    "before",
    "the",
    "evening",
    "bells",
    "ring",
    "across",
    "quiet",
    "streets",
    "of",
    "the",
    "town",
]
_ZH_CHARS = "天下大势分久必合合久必分春风又绿江南岸明月何时照我还山川草木日月星辰学而时习之不亦说乎"


def synthetic_documents(n: int, seed: int = 0) -> list[dict]:
    """``n`` small deterministic documents: English, Chinese and mixed, with odd whitespace and emoji."""

    rng = random.Random(seed)
    docs = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            body = " ".join(rng.choice(_EN_WORDS) for _ in range(rng.randint(5, 60)))
            text, lang = ("  " if i % 4 == 0 else "") + body.capitalize() + ".\n", "en"
        elif kind == 1:
            body = "".join(rng.choice(_ZH_CHARS) for _ in range(rng.randint(5, 80)))
            text, lang = body[: len(body) // 2] + "，" + body[len(body) // 2 :] + "。\n\n", "zh"
        else:
            en = " ".join(rng.choice(_EN_WORDS) for _ in range(rng.randint(2, 10)))
            zh = "".join(rng.choice(_ZH_CHARS) for _ in range(rng.randint(2, 10)))
            text, lang = f"\n{en} {zh} 😀 cafe\u0301 {i}", "und"
        docs.append(make_document(text, lang=lang, doc_id=f"doc-{seed}-{i:06d}", source=f"synthetic/{kind}"))
    return docs
