"""Clustering quality against ground truth: pairwise precision/recall/F1 and adjusted Rand index.

Everything is computed from the contingency table of (predicted cluster, true cluster) counts, so
the cost is O(n) in documents, never O(n^2) in pairs. A pair is *predicted* when both documents
share a predicted cluster and *true* when they share a ground-truth cluster.

Conventions: precision is 1.0 when no pair is predicted and recall is 1.0 when no pair is true
(nothing claimed / nothing to find); F1 is their harmonic mean (0.0 when both are 0). ARI is 1.0
when both labellings are identical (including the all-singletons case that makes the usual formula
0/0).

"Don't care" pairs (``ignore``): pairs whose ground truth is ambiguous can be left out of the scores;
each one is removed from whichever pair count it falls in (TP, FP, FN or neither), so it is neither
rewarded nor penalised. They are corrected for one by one (O(len(ignore))); with ``ignore=None``
(the default) the results are exactly those of the contingency-table formulas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any

Pair = tuple[Any, Any]


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


def _scored_pairs(
    ignore: Iterable[Pair], labelled: Collection[Any], subset: Collection[Any] | None = None
) -> set[frozenset]:
    """The distinct ignored pairs that are scored: with ``subset``, those with at least one end in it;
    (a, b) and (b, a) are one pair. Both ends must be labelled documents."""
    pairs: set[frozenset] = set()
    for pair in ignore:
        a, b = pair
        if a == b:
            raise ValueError(f"an ignored pair needs two documents, got {pair!r}")
        if a not in labelled or b not in labelled:
            raise ValueError(f"ignored pair {pair!r} names a document that is not labelled")
        if subset is None or a in subset or b in subset:
            pairs.add(frozenset((a, b)))
    return pairs


def _ignored_counts(
    pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable], pairs: set[frozenset]
) -> tuple[int, int, int]:
    """(same cluster in both, same predicted cluster, same true cluster) counts of ``pairs``."""
    both = same_pred = same_true = 0
    for pair in pairs:
        a, b = tuple(pair)
        p, t = pred[a] == pred[b], truth[a] == truth[b]
        both += p and t
        same_pred += p
        same_true += t
    return both, same_pred, same_true


def pairwise_scores(
    pred: Mapping[Any, Hashable],
    truth: Mapping[Any, Hashable],
    subset: Collection[Any] | None = None,
    ignore: Iterable[Pair] | None = None,
) -> dict[str, float]:
    """Pairwise precision/recall/F1 (+ pair counts) of ``pred`` vs ``truth`` (doc -> cluster label).

    With ``subset``, only pairs with at least one document in ``subset`` count (the rest of the
    corpus still provides the partners), which scores a slice such as one edit kind without
    ignoring its false merges with other documents. ``ignore``: "don't care" pairs ``(a, b)`` (order
    irrelevant, each counted once) that are neither TP nor FP nor FN; with it the result also has
    ``ignored_pairs``, how many of them fell in the scored pairs.
    """
    if set(pred) != set(truth):
        raise ValueError("pred and truth must label the same documents")
    tp, npred, ntrue = _pair_counts(pred, truth, pred.keys())
    inside = set(subset) if subset is not None else None
    if inside is not None:
        outside = [d for d in pred if d not in inside]
        o_tp, o_pred, o_true = _pair_counts(pred, truth, outside)
        tp, npred, ntrue = tp - o_tp, npred - o_pred, ntrue - o_true
    extra: dict[str, int] = {}
    if ignore is not None:
        pairs = _scored_pairs(ignore, pred, inside)
        i_tp, i_pred, i_true = _ignored_counts(pred, truth, pairs)
        tp, npred, ntrue = tp - i_tp, npred - i_pred, ntrue - i_true
        extra["ignored_pairs"] = len(pairs)
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
        **extra,
    }


def adjusted_rand_index(
    pred: Mapping[Any, Hashable], truth: Mapping[Any, Hashable], ignore: Iterable[Pair] | None = None
) -> float:
    """Hubert-Arabie adjusted Rand index of two labellings of the same documents.

    With ``ignore`` (non-empty), its pair-counting form ``2(ad - bc) / ((a+b)(b+d) + (a+c)(c+d))``
    (a: pairs together in both, b: only predicted, c: only true, d: neither; equal to Hubert-Arabie
    over all pairs) over the pairs that are not ignored; 1.0 when that is 0/0.
    """
    if set(pred) != set(truth):
        raise ValueError("pred and truth must label the same documents")
    n = len(pred)
    if n < 2:
        return 1.0
    index, sum_rows, sum_cols = _pair_counts(pred, truth, pred.keys())
    total = _pairs(n)
    pairs = _scored_pairs(ignore, pred) if ignore is not None else set()
    if pairs:
        i_a, i_rows, i_cols = _ignored_counts(pred, truth, pairs)
        a = index - i_a
        b = sum_rows - index - (i_rows - i_a)
        c = sum_cols - index - (i_cols - i_a)
        d = total - len(pairs) - a - b - c
        den = (a + b) * (b + d) + (a + c) * (c + d)
        return 2 * (a * d - b * c) / den if den else 1.0
    expected = sum_rows * sum_cols / total
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:  # both labellings trivial (all singletons or one cluster) and equal
        return 1.0
    return (index - expected) / (maximum - expected)


def clustering_report(
    pred: Mapping[Any, Hashable],
    truth: Mapping[Any, Hashable],
    subset: Collection[Any] | None = None,
    ignore: Iterable[Pair] | None = None,
) -> dict[str, float]:
    """Pairwise scores plus ARI (ARI over ``subset`` alone when it is given); ``ignore`` as in
    ``pairwise_scores`` (for the ARI over ``subset``, the ignored pairs inside it)."""
    ignore = list(ignore) if ignore is not None else None
    scores = pairwise_scores(pred, truth, subset, ignore)
    if subset is None:
        scores["ari"] = adjusted_rand_index(pred, truth, ignore)
    else:
        keep = set(subset)
        inside = [p for p in ignore if p[0] in keep and p[1] in keep] if ignore is not None else None
        scores["ari"] = adjusted_rand_index(
            {d: c for d, c in pred.items() if d in keep},
            {d: c for d, c in truth.items() if d in keep},
            inside,
        )
    return scores
