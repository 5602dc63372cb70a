"""Id-hash decisions pinned to values recorded once: they must not change across processes, Python
versions or refactors, or documents silently move between train/val, samples and filters."""

from __future__ import annotations

from pipelines.bias.balance import keep_document
from pipelines.bias.cda import select_for_cda
from pipelines.tokens.splits import hash_unit, in_sample, split_of

IDS = [f"doc-{i}" for i in range(100)]


def picked(rule) -> list[int]:
    return [i for i, d in enumerate(IDS) if rule(d)]


def test_train_val_split_is_pinned():
    assert hash_unit(b"corpusforge-split", "doc-0") == 0.7167206401374554
    assert picked(lambda d: split_of(d, 0.1) == "val") == [7, 11, 30, 52, 66, 79]


def test_tokenizer_sample_is_pinned():
    expected = [1, 2, 3, 5, 6, 8, 10, 12, 16, 17, 19, 25, 29, 44, 46, 47, 49, 52, 55, 57, 59]
    assert [i for i in picked(lambda d: in_sample(d, 1, 0.3)) if i < 60] == expected


def test_cda_selection_and_source_balancing_are_pinned():
    cda = [0, 6, 7, 10, 14, 23, 24, 25, 32, 35, 46, 49, 50, 52, 57, 58, 59]
    assert [i for i in picked(lambda d: select_for_cda(d, 0.25, seed=7)) if i < 60] == cda
    kept = [3, 4, 8, 13, 16, 19, 20, 26, 27, 28, 29, 34, 36, 40, 41, 44, 48, 49, 52, 53, 55, 56, 58]
    assert [i for i in picked(lambda d: keep_document(d, "web", {"web": 0.5}, seed=1)) if i < 60] == kept
