"""Stream the tokenizer's training sample (and a bounded held-out set) out of upstream document shards.

One pass over the shards, one Parquet batch in memory at a time:

* a validation-split document (:func:`~pipelines.tokens.splits.split_of`) is never sampled; the
  first ``heldout_bytes`` of them are kept aside for the held-out statistics;
* a training-split document is sampled when its seeded id hash is under ``rate``; sampling stops
  once ``max_bytes`` of text have been handed out (a hard cap on top of the expected size).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipelines.tokens.splits import VAL, in_sample, split_of

COLUMNS = ["id", "text", "lang"]


@dataclass
class DocumentSample:
    """Iterate :meth:`batches` to get the sample; counts are complete once it is exhausted."""

    paths: Sequence[str | os.PathLike]
    seed: int
    rate: float
    val_fraction: float
    max_bytes: int
    heldout_bytes: int = 0
    batch_docs: int = 1000
    read_rows: int = 2048
    documents: int = 0
    bytes: int = 0
    documents_seen: int = 0
    heldout: list[tuple[str, str | None]] = field(default_factory=list)
    heldout_size: int = 0
    capped: bool = False

    def batches(self) -> Iterator[list[str]]:
        """Lists of up to ``batch_docs`` sampled texts, in shard and row order."""
        buf: list[str] = []
        for doc_id, text, lang in self._rows():
            self.documents_seen += 1
            if split_of(doc_id, self.val_fraction) == VAL:
                self._keep_heldout(text, lang)
                continue
            if not in_sample(doc_id, self.seed, self.rate):
                continue
            buf.append(text)
            self.documents += 1
            self.bytes += len(text.encode("utf-8"))
            if len(buf) >= self.batch_docs:
                yield buf
                buf = []
            if self.bytes >= self.max_bytes:
                self.capped = True
                break
        if buf:
            yield buf

    def _keep_heldout(self, text: str, lang: str | None) -> None:
        if self.heldout_size < self.heldout_bytes:
            self.heldout.append((text, lang))
            self.heldout_size += len(text.encode("utf-8"))

    def _rows(self) -> Iterator[tuple[str, str, str | None]]:
        for path in self.paths:
            pf = pq.ParquetFile(path)
            names = set(pf.schema_arrow.names)
            columns = [c for c in COLUMNS if c in names]
            for batch in pf.iter_batches(batch_size=self.read_rows, columns=columns):
                ids = batch.column("id").to_pylist()
                texts = batch.column("text").to_pylist()
                langs = batch.column("lang").to_pylist() if "lang" in names else [None] * len(ids)
                yield from zip(ids, texts, langs, strict=True)
