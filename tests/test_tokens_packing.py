"""Packing rule on hand-made token counts: shard plans, windows, document pieces, exactly-once."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.tokens.packing import Segment, doc_pieces, plan_shards, split_summary, to_windows


def seg(key: str, tokens: int, documents: int = 1, split: str = "train") -> Segment:
    return Segment(
        split, key, f"/nowhere/{key}.tokens", f"/nowhere/{key}.docs", tokens, documents, tokens * 3
    )


def test_plan_cuts_global_stream_in_key_order():
    # W=4, S=2 -> 8 tokens per shard; segments given out of order, total 14 tokens -> 4 windows, 2 shards
    tasks = plan_shards([seg("00002", 3), seg("00000", 5), seg("00001", 6)], window=4, sequences_per_shard=2)
    assert [(t.index, t.token_start, t.token_end) for t in tasks] == [(0, 0, 8), (1, 8, 14)]
    assert [(p.segment.key, p.offset, p.start, p.end) for p in tasks[0].parts] == [
        ("00000", 0, 0, 5),
        ("00001", 5, 0, 3),
    ]
    assert [(p.segment.key, p.offset, p.start, p.end) for p in tasks[1].parts] == [
        ("00001", 5, 3, 6),
        ("00002", 11, 0, 3),
    ]
    s = tasks[0].summary
    assert (s["tokens"], s["sequences"], s["shards"], s["padding"]) == (14, 4, 2, 2)


def test_plan_exact_multiple_has_no_padding_and_no_empty_shard():
    tasks = plan_shards([seg("a", 8)], window=4, sequences_per_shard=2)
    assert [(t.token_start, t.token_end) for t in tasks] == [(0, 8)]
    assert tasks[0].summary["padding"] == 0


def test_plan_rejects_mixed_or_duplicate_segments():
    with pytest.raises(ValueError, match="share an upstream shard key"):
        plan_shards([seg("a", 3), seg("a", 4)], 4, 2)
    with pytest.raises(ValueError, match="one split"):
        plan_shards([seg("a", 3), seg("b", 4, split="val")], 4, 2)
    assert plan_shards([], 4, 2) == []


def test_split_summary_merges_languages():
    a = Segment("train", "a", "", "", 10, 2, 30, {"en": {"documents": 2, "bytes": 30, "tokens": 10}})
    b = Segment("train", "b", "", "", 5, 1, 9, {"en": {"documents": 1, "bytes": 9, "tokens": 5}})
    s = split_summary([a, b], window=4, sequences_per_shard=10)
    assert s["languages"] == {"en": {"documents": 3, "bytes": 39, "tokens": 15}}
    assert (s["tokens"], s["documents"], s["sequences"], s["shards"]) == (15, 3, 4, 1)


def test_to_windows_pads_only_the_tail():
    w = to_windows(np.arange(2, 12, dtype=np.uint16), window=4, pad_id=1)
    assert w.dtype == np.uint16
    assert w.tolist() == [[2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 1, 1]]
    assert to_windows(np.arange(8, dtype=np.uint32), 4, 1).shape == (2, 4)


def test_doc_pieces_hand_computed():
    # documents of 3, 5, 2 tokens (EOT included) in windows of 4: d0 [0,3) d1 [3,8) d2 [8,10)
    rows = doc_pieces(np.array([3, 5, 2]), 0, 0, 10, window=4)
    got = list(
        zip(
            *(rows[k].tolist() for k in ("doc", "sequence", "doc_token_start", "window_start", "length")),
            strict=True,
        )
    )
    assert got == [(0, 0, 0, 0, 3), (1, 0, 0, 3, 1), (1, 1, 1, 0, 4), (2, 2, 0, 0, 2)]


def test_doc_pieces_restricted_to_a_shard_range_and_offset():
    # same documents placed at stream offset 6; shard covers [8, 12) only
    rows = doc_pieces(np.array([3, 5, 2]), 6, 8, 12, window=4)
    got = list(
        zip(*(rows[k].tolist() for k in ("doc", "sequence", "doc_token_start", "length")), strict=True)
    )
    # d0 [6,9) -> piece [8,9); d1 [9,14) -> [9,12)
    assert got == [(0, 2, 2, 1), (1, 2, 0, 3)]


def test_doc_pieces_long_document_spans_many_windows():
    rows = doc_pieces(np.array([1, 11]), 0, 0, 12, window=3)
    assert rows["doc"].tolist() == [0, 1, 1, 1, 1]
    assert rows["sequence"].tolist() == [0, 0, 1, 2, 3]
    assert rows["length"].tolist() == [1, 2, 3, 3, 3]
    assert rows["doc_token_start"].tolist() == [0, 0, 2, 5, 8]


def test_every_token_exactly_once_random_plans():
    rng = np.random.default_rng(7)
    for _ in range(25):
        window, per_shard = int(rng.integers(2, 9)), int(rng.integers(1, 4))
        doc_lengths = [
            rng.integers(1, 20, size=int(rng.integers(1, 6))) for _ in range(int(rng.integers(1, 5)))
        ]
        segments = [seg(f"{i:05d}", int(d.sum()), len(d)) for i, d in enumerate(doc_lengths)]
        stream = np.arange(sum(s.tokens for s in segments))  # token value = its stream position
        windows, pieces = [], 0
        for task in plan_shards(segments[::-1], window, per_shard):
            flat = np.concatenate([stream[p.offset + p.start : p.offset + p.end] for p in task.parts])
            windows.append(to_windows(flat, window, pad_id=-1))
            for p in task.parts:
                lengths = doc_lengths[int(p.segment.key)]
                r = doc_pieces(lengths, p.offset, task.token_start, task.token_end, window)
                pieces += int(r["length"].sum())
                assert ((r["window_start"] + r["length"]) <= window).all()
        out = np.concatenate(windows).reshape(-1)
        assert out[out >= 0].tolist() == stream.tolist()
        assert (out[len(stream) :] == -1).all() and len(out) - len(stream) < window
        assert pieces == len(stream)  # document pieces cover every token once
