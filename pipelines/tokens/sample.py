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

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import storage
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
        for texts, sizes in self._selected():
            for text, size in zip(texts, sizes, strict=True):
                buf.append(text)
                self.documents += 1
                self.bytes += size
                if len(buf) >= self.batch_docs:
                    yield buf
                    buf = []
                if self.bytes >= self.max_bytes:
                    self.capped = True
                    if buf:
                        yield buf
                    return
        if buf:
            yield buf

    def _selected(self) -> Iterator[tuple[list[str], list[int]]]:
        """Per Parquet batch: the sampled texts and their UTF-8 sizes (val documents set aside).

        Rows are chosen from the ``id`` column first; only the chosen texts become Python strings.
        """
        for path in self.paths:
            with storage.open_parquet(path) as pf:
                names = set(pf.schema_arrow.names)
                columns = [c for c in COLUMNS if c in names]
                for batch in pf.iter_batches(batch_size=self.read_rows, columns=columns):
                    ids = batch.column("id").to_pylist()
                    self.documents_seen += len(ids)
                    is_val = [split_of(i, self.val_fraction) == VAL for i in ids]
                    if self.heldout_size < self.heldout_bytes and any(is_val):
                        self._keep_heldout(batch, is_val, "lang" in names)
                    keep = [
                        not v and in_sample(i, self.seed, self.rate) for i, v in zip(ids, is_val, strict=True)
                    ]
                    if any(keep):
                        texts = batch.column("text").filter(pa.array(keep))
                        yield texts.to_pylist(), pc.binary_length(texts).to_pylist()

    def _keep_heldout(self, batch: pa.RecordBatch, is_val: list[bool], has_lang: bool) -> None:
        mask = pa.array(is_val)
        texts = batch.column("text").filter(mask).to_pylist()
        langs = batch.column("lang").filter(mask).to_pylist() if has_lang else [None] * len(texts)
        for text, lang in zip(texts, langs, strict=True):
            if self.heldout_size >= self.heldout_bytes:
                break
            self.heldout.append((text, lang))
            self.heldout_size += len(text.encode("utf-8"))
