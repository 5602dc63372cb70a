"""Survivor rule and exact-duplicate grouping (pure and Beam)."""

import itertools
import math

import pytest

from pipelines.config import DedupConfig
from pipelines.dedup.exact import exact_duplicates_local, exact_key
from pipelines.dedup.survivor import choose_survivor, decision, survivor_key


def test_highest_quality_wins_then_longest_then_smallest_id():
    assert choose_survivor([("a", 0.2, 900), ("b", 0.9, 10), ("c", 0.5, 5000)]) == "b"
    assert choose_survivor([("a", 0.5, 100), ("b", 0.5, 300), ("c", 0.5, 200)]) == "b"
    assert choose_survivor([("d", 0.5, 100), ("b", 0.5, 100), ("c", 0.5, 100)]) == "b"


def test_missing_or_nan_quality_counts_lowest():
    assert choose_survivor([("a", None, 10_000), ("b", 0.0, 1)]) == "b"
    assert choose_survivor([("a", math.nan, 10_000), ("b", -5.0, 1)]) == "b"
    assert choose_survivor([("b", None, 5), ("a", math.nan, 5)]) == "a"  # both lowest: length, then id
    assert survivor_key("x", None, 3) == survivor_key("x", math.nan, 3)


def test_survivor_independent_of_member_order():
    members = [("e", 0.7, 50), ("a", 0.7, 50), ("c", None, 80), ("b", 0.7, 49), ("d", 0.1, 500)]
    winners = {choose_survivor(p) for p in itertools.permutations(members)}
    assert winners == {"a"}


def test_empty_members_rejected():
    with pytest.raises(ValueError):
        choose_survivor([])


def test_decision_marks_only_the_survivor_kept():
    assert decision("a", "a", "near", 1.0)["kept"] is True
    assert decision("b", "a", "near", 0.8) == {
        "doc_id": "b",
        "cluster_id": "a",
        "kept": False,
        "kind": "near",
        "similarity": 0.8,
    }


def test_exact_key_options():
    assert exact_key("Hello,  World!") == exact_key("hello world")
    assert exact_key("Hello,  World!", lowercase=False) != exact_key("hello world", lowercase=False)
    assert exact_key("Hello,  World!", strip_punct=False) != exact_key("hello world", strip_punct=False)
    assert exact_key("Hello,  World!", strip_punct=False) == exact_key("hello,\nworld!", strip_punct=False)
    assert exact_key("天下，大势。") == exact_key("天下大势")  # punctuation dropped
    assert exact_key("ＡＢＣ") == exact_key("abc")  # NFKC folds full-width forms
    assert exact_key("abc") != exact_key("abd")
    assert len(exact_key("abc")) == 16


DOCS = [
    ("d1", "Hello world.", 0.5),
    ("d2", "hello   WORLD", 0.9),  # same text after normalisation, higher quality
    ("d3", "Hello world!!", None),
    ("d4", "天下大势，分久必合。", 0.1),
    ("d5", "天下大势分久必合", 0.1),  # equal quality: the longer original text wins
    ("d6", "something else", 0.3),
]
EXPECTED = [
    decision("d1", "d2", "exact", 1.0),
    decision("d2", "d2", "exact", 1.0),
    decision("d3", "d2", "exact", 1.0),
    decision("d4", "d4", "exact", 1.0),
    decision("d5", "d4", "exact", 1.0),
    decision("d6", "d6", "unique", 1.0),
]


def test_exact_duplicates_local():
    assert exact_duplicates_local(DOCS) == EXPECTED
    assert exact_duplicates_local(list(reversed(DOCS))) == EXPECTED


def test_punctuation_or_emoji_only_texts_are_not_copies_of_each_other():
    from pipelines.dedup.exact import exact_duplicates_local
    from pipelines.dedup.sketch import DocumentSketcher

    texts = ["!!! ??? ...", "😀😂🎉🔥👍", "→ ← ↑ ↓ ⇒", "+-*/=<>", "hello world", "Hello, World!"]
    assert exact_key(texts[0]) is None and exact_key(texts[1], strip_punct=False) is not None
    decisions = exact_duplicates_local([(f"d{i}", t, 0.5) for i, t in enumerate(texts)])
    removed = [d["doc_id"] for d in decisions if not d["kept"]]
    assert removed == ["d5"] or removed == ["d4"]  # only the real pair; every symbol-only text stays
    keys = [k for k, _ in DocumentSketcher(DedupConfig()).sketch(texts)]
    assert keys[:4] == [None, None, None, None] and keys[4] == keys[5] is not None
