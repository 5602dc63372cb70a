"""Packing rule of the token dataset (pure functions over token counts and arrays).

Per split, the token stream is the concatenation, in a fixed order, of every document's tokens
followed by one ``<|endoftext|>``. The order is: upstream shard order (the manifest's), then row
order inside the shard. The stream is cut into consecutive, non-overlapping windows of
``window = seq_len + 1`` tokens; documents run across window (and upstream shard) boundaries; only
the very last window of a split is padded with ``pad_id``, so every token is kept exactly once and
the trainer must ignore ``pad_id`` targets in the loss. Output shard ``k`` holds windows
``[k * sequences_per_shard, (k + 1) * sequences_per_shard)``.

Because the order depends only on the upstream manifest and the documents, and each encoder works
on whole upstream row groups (keyed ``<shard>-<row group>``), the packed output is identical for any
number of Beam workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Segment:
    """The encoded documents of one split from one upstream row group (token and doc files on disk)."""

    split: str
    key: str  # "<upstream shard>-<row group>"; segments are packed in key order
    tokens_path: str
    docs_path: str
    tokens: int  # including one EOT per document
    documents: int
    bytes: int
    langs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentPart:
    """Tokens ``[start, end)`` of ``segment``, whose first token is at ``offset`` of the split stream."""

    segment: Segment
    offset: int
    start: int
    end: int


@dataclass(frozen=True)
class ShardTask:
    """Output shard ``index`` of ``split``: stream tokens ``[token_start, token_end)``."""

    split: str
    index: int
    token_start: int
    token_end: int
    parts: tuple[SegmentPart, ...]
    summary: Mapping[str, Any]


def split_summary(segments: Iterable[Segment], window: int, sequences_per_shard: int) -> dict[str, Any]:
    """Totals of one split: tokens, documents, bytes, sequences, shards, per-language counts."""
    segs = list(segments)
    tokens = sum(s.tokens for s in segs)
    sequences = math.ceil(tokens / window)
    langs: dict[str, dict[str, int]] = {}
    for s in segs:
        for lang, c in s.langs.items():
            acc = langs.setdefault(lang, {"documents": 0, "bytes": 0, "tokens": 0})
            for k in acc:
                acc[k] += int(c.get(k, 0))
    return {
        "tokens": tokens,
        "documents": sum(s.documents for s in segs),
        "bytes": sum(s.bytes for s in segs),
        "sequences": sequences,
        "shards": math.ceil(sequences / sequences_per_shard),
        "padding": sequences * window - tokens,
        "segments": len(segs),
        "languages": dict(sorted(langs.items())),
    }


def plan_shards(
    segments: Iterable[Segment],
    window: int,
    sequences_per_shard: int,
    first_sequence: int = 0,
    first_index: int = 0,
) -> list[ShardTask]:
    """Cut one split's segments (any order in, key order used) into output shard tasks.

    ``first_sequence`` / ``first_index``: an appended batch continues the split's stream after the
    windows and shards already there (its own last window is padded)."""
    segs = sorted(segments, key=lambda s: s.key)
    if len({s.key for s in segs}) != len(segs):
        raise ValueError("two segments of one split share an upstream shard key")
    if len({s.split for s in segs}) > 1:
        raise ValueError("plan_shards takes the segments of one split")
    summary = split_summary(segs, window, sequences_per_shard)
    base = first_sequence * window
    offsets = (base + np.concatenate([[0], np.cumsum([s.tokens for s in segs], dtype=np.int64)])).tolist()
    total, per_shard = base + summary["tokens"], sequences_per_shard * window
    tasks = []
    for k in range(summary["shards"]):
        lo, hi = base + k * per_shard, min(base + (k + 1) * per_shard, total)
        parts = tuple(
            SegmentPart(s, off, max(lo, off) - off, min(hi, end) - off)
            for s, off, end in zip(segs, offsets[:-1], offsets[1:], strict=True)
            if off < hi and end > lo
        )
        tasks.append(ShardTask(segs[0].split, first_index + k, lo, hi, parts, summary))
    return tasks


def to_windows(tokens: np.ndarray, window: int, pad_id: int) -> np.ndarray:
    """``(n, window)`` array of ``tokens``; the last row is completed with ``pad_id``."""
    n = math.ceil(len(tokens) / window)
    out = np.full(n * window, pad_id, dtype=tokens.dtype)
    out[: len(tokens)] = tokens
    return out.reshape(n, window)


def doc_pieces(lengths: np.ndarray, first_start: int, lo: int, hi: int, window: int) -> dict[str, np.ndarray]:
    """Where documents land in windows, for the stream range ``[lo, hi)``.

    ``lengths`` are consecutive documents' token counts (EOT included), the first starting at
    stream position ``first_start``. Returns one row per (document, window) piece, in stream order:
    ``doc`` (index into ``lengths``), ``sequence`` (global window), ``doc_token_start`` (offset of
    the piece inside its document), ``window_start`` (offset inside the window) and ``length``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = first_start + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ends = starts + lengths
    docs = np.nonzero((ends > lo) & (starts < hi) & (lengths > 0))[0]
    a = np.maximum(starts[docs], lo)
    b = np.minimum(ends[docs], hi)
    w0, w1 = a // window, (b - 1) // window
    counts = w1 - w0 + 1
    rep = np.repeat(np.arange(len(docs)), counts)
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    seq = w0[rep] + (np.arange(len(rep)) - first_row[rep])
    piece_start = np.maximum(a[rep], seq * window)
    piece_end = np.minimum(b[rep], (seq + 1) * window)
    return {
        "doc": docs[rep],
        "sequence": seq,
        "doc_token_start": piece_start - starts[docs][rep],
        "window_start": piece_start - seq * window,
        "length": piece_end - piece_start,
    }
