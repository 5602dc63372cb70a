"""Encode one upstream shard's row group into per-split token segments (the encode half of packing).

Each document goes to ``train`` or ``val`` by :func:`~pipelines.tokens.splits.split_of`; documents
of a split are encoded ``batch_docs`` at a time with one ``encode_batch`` call, an EOT is appended
to each, and the ids are streamed to ``<work_dir>/<split>/seg-<key>.tokens`` (raw little-endian
``dtype`` array) while ``seg-<key>.docs.arrow`` records each document's id and token count. Both
files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from tokenizers import Tokenizer

from pipelines import fs, storage
from pipelines.tokens.bpe import encode_texts, lang_bucket
from pipelines.tokens.packing import Segment
from pipelines.tokens.splits import SPLITS, split_of

DOCS_SCHEMA = pa.schema([pa.field("doc_id", pa.string()), pa.field("tokens", pa.int64())])
NP_DTYPES: dict[str, np.dtype] = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class SegmentWriter:
    """Append encoded documents of one (split, upstream shard) to its token and document files."""

    def __init__(self, work_dir: str | os.PathLike, split: str, key: str, dtype: str) -> None:
        self.split, self.key, self.dtype = split, key, NP_DTYPES[dtype]
        self.dir = fs.path(work_dir) / split
        fs.mkdirs(self.dir)
        self.tokens_path = self.dir / f"seg-{key}.tokens"
        self.docs_path = self.dir / f"seg-{key}.docs.arrow"
        remote = fs.is_remote_path(self.dir)  # object store: written once under the final name
        self._tmp = self.tokens_path if remote else self.dir / f".seg-{key}.tokens.tmp-{uuid.uuid4().hex[:8]}"
        self._fh = fs.open_write(self._tmp)
        self.doc_ids: list[str] = []
        self.doc_tokens: list[int] = []
        self.bytes = 0
        self.langs: dict[str, dict[str, int]] = {}

    def add(
        self, doc_ids: list[str], ids: list[list[int]], langs: list[str | None], nbytes: list[int]
    ) -> None:
        """Append documents whose token lists already end with EOT."""
        lengths = [len(x) for x in ids]
        flat = np.fromiter(chain.from_iterable(ids), dtype=self.dtype, count=sum(lengths))
        self._fh.write(flat.tobytes())
        self.doc_ids.extend(doc_ids)
        self.doc_tokens.extend(lengths)
        for lang, n, nb in zip(langs, lengths, nbytes, strict=True):
            c = self.langs.setdefault(lang_bucket(lang), {"documents": 0, "bytes": 0, "tokens": 0})
            c["documents"] += 1
            c["bytes"] += nb
            c["tokens"] += n
        self.bytes += sum(nbytes)

    def close(self) -> Segment:
        self._fh.flush()
        if fs.local_path(self._tmp) is not None:
            os.fsync(self._fh.fileno())
        self._fh.close()
        if self._tmp != self.tokens_path:
            os.replace(str(self._tmp), str(self.tokens_path))
        table = pa.table(
            {"doc_id": pa.array(self.doc_ids, pa.string()), "tokens": pa.array(self.doc_tokens, pa.int64())},
            schema=DOCS_SCHEMA,
        )
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, DOCS_SCHEMA) as writer:
            writer.write_table(table)
        fs.write_bytes(self.docs_path, sink.getvalue().to_pybytes())
        return Segment(
            split=self.split,
            key=self.key,
            tokens_path=fs.uri(self.tokens_path),
            docs_path=fs.uri(self.docs_path),
            tokens=int(sum(self.doc_tokens)),
            documents=len(self.doc_ids),
            bytes=self.bytes,
            langs=dict(sorted(self.langs.items())),
        )

    def abort(self) -> None:
        self._fh.close()
        fs.remove(self._tmp)


def encode_shard(
    path: str | os.PathLike,
    key: str,
    tok: Tokenizer,
    *,
    work_dir: str | os.PathLike,
    dtype: str,
    val_fraction: float,
    batch_docs: int,
    eot_id: int,
    row_groups: list[int] | None = None,
    split_overrides: Mapping[str, str] | None = None,
) -> Iterator[Segment]:
    """Encode the documents of one Parquet shard (or of its ``row_groups``); one segment per split.

    ``split_overrides`` (doc id -> split) replaces :func:`split_of` for the documents it names.
    """
    overrides = split_overrides or {}
    writers: dict[str, SegmentWriter] = {}
    pending: dict[str, list[tuple[str, str, str | None, int]]] = {s: [] for s in SPLITS}

    def flush(split: str) -> None:
        docs = pending[split]
        if not docs:
            return
        ids = encode_texts(tok, [d[1] for d in docs])
        for x in ids:
            x.append(eot_id)
        if split not in writers:
            writers[split] = SegmentWriter(work_dir, split, key, dtype)
        writers[split].add([d[0] for d in docs], ids, [d[2] for d in docs], [d[3] for d in docs])
        pending[split] = []

    try:
        with storage.open_parquet(path) as pf:
            has_lang = "lang" in pf.schema_arrow.names
            columns = ["id", "text", "lang"] if has_lang else ["id", "text"]
            for batch in pf.iter_batches(batch_size=batch_docs, columns=columns, row_groups=row_groups):
                ids = batch.column("id").to_pylist()
                texts = batch.column("text").to_pylist()
                sizes = pc.binary_length(batch.column("text")).to_pylist()
                langs = batch.column("lang").to_pylist() if has_lang else [None] * len(ids)
                for doc in zip(ids, texts, langs, sizes, strict=True):
                    split = overrides.get(doc[0]) or split_of(doc[0], val_fraction)
                    pending[split].append(doc)
                    if len(pending[split]) >= batch_docs:
                        flush(split)
        for split in SPLITS:
            flush(split)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for split in SPLITS:
        if split in writers:
            yield writers[split].close()


def read_segment_tokens(segment: Segment, start: int, end: int, dtype: str) -> np.ndarray:
    """Tokens ``[start, end)`` of a segment's token file."""
    dt = NP_DTYPES[dtype]
    if not fs.is_remote(segment.tokens_path):
        return np.fromfile(segment.tokens_path, dtype=dt, count=end - start, offset=start * dt.itemsize)
    with fs.open_read(segment.tokens_path) as fh:
        fh.seek(start * dt.itemsize)
        return np.frombuffer(fh.read((end - start) * dt.itemsize), dtype=dt)


def read_segment_docs(segment: Segment) -> pa.Table:
    """The segment's ``doc_id`` and ``tokens`` (per document, EOT included) columns."""
    with fs.open_read(segment.docs_path) as source:
        return ipc.open_file(source).read_all()
