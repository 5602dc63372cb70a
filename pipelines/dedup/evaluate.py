"""Clustering quality against ground truth: pairwise precision/recall/F1 and adjusted Rand index.

Everything is computed from the contingency table of (predicted cluster, true cluster) counts, so
the cost is O(n) in documents, never O(n^2) in pairs. A pair is *predicted* when both documents
share a predicted cluster and *true* when they share a ground-truth cluster.

Conventions: precision is 1.0 when no pair is predicted and recall is 1.0 when no pair is true
(nothing claimed / nothing to find); F1 is their harmonic mean (0.0 when both are 0). ARI is 1.0
when both labellings are identical (including the all-singletons case that makes the usual formula
0/0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Mapping
from typing import Any


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _pair_counts(pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable], docs: Collection[Any]):
    cells = Counter((pred[d], truth[d]) for d in docs)
    rows = Counter(pred[d] for d in docs)
    cols = Counter(truth[d] for d in docs)
    same_both = sum(_pairs(c) for c in cells.values())
    same_pred = sum(_pairs(c) for c in rows.values())
    same_true = sum(_pairs(c) for c in cols.values())
    return same_both, same_pred, same_true


def pairwise_scores(
    pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable], subset: Collection[Any] | None = None
) -> dict[str, float]:
    """Pairwise precision/recall/F1 (+ pair counts) of ``pred`` vs ``truth`` (doc -> cluster label).

    With ``subset``, only pairs with at least one document in ``subset`` count (the rest of the
    corpus still provides the partners), which scores a slice such as one edit kind without
    ignoring its false merges with other documents.
    """
    if set(pred) != set(truth):
        raise ValueError("pred and truth must label the same documents")
    tp, npred, ntrue = _pair_counts(pred, truth, pred.keys())
    if subset is not None:
        inside = set(subset)
        outside = [d for d in pred if d not in inside]
        o_tp, o_pred, o_true = _pair_counts(pred, truth, outside)
        tp, npred, ntrue = tp - o_tp, npred - o_pred, ntrue - o_true
    precision = tp / npred if npred else 1.0
    recall = tp / ntrue if ntrue else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_pairs": ntrue,
        "predicted_pairs": npred,
        "correct_pairs": tp,
    }


def adjusted_rand_index(pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable]) -> float:
    """Hubert-Arabie adjusted Rand index of two labellings of the same documents."""
    if set(pred) != set(truth):
        raise ValueError("pred and truth must label the same documents")
    n = len(pred)
    if n < 2:
        return 1.0
    index, sum_rows, sum_cols = _pair_counts(pred, truth, pred.keys())
    total = _pairs(n)
    expected = sum_rows * sum_cols / total
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:  # both labellings trivial (all singletons or one cluster) and equal
        return 1.0
    return (index - expected) / (maximum - expected)


def clustering_report(
    pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable], subset: Collection[Any] | None = None
) -> dict[str, float]:
    """Pairwise scores plus ARI (ARI over ``subset`` alone when it is given)."""
    scores = pairwise_scores(pred, truth, subset)
    if subset is None:
        scores["ari"] = adjusted_rand_index(pred, truth)
    else:
        keep = set(subset)
        scores["ari"] = adjusted_rand_index(
            {d: c for d, c in pred.items() if d in keep}, {d: c for d, c in truth.items() if d in keep}
        )
    return scores
