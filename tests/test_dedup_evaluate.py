"""Pairwise P/R/F1 and ARI from contingency counts vs brute-force pair enumeration."""

import itertools
import random

import pytest

from pipelines.dedup.evaluate import adjusted_rand_index, clustering_report, pairwise_scores


def _brute_pairs(pred, truth, subset=None):
    tp = npred = ntrue = 0
    for x, y in itertools.combinations(sorted(pred), 2):
        if subset is not None and x not in subset and y not in subset:
            continue
        same_p, same_t = pred[x] == pred[y], truth[x] == truth[y]
        tp += same_p and same_t
        npred += same_p
        ntrue += same_t
    return tp, npred, ntrue


def _brute_ari(pred, truth):
    a = b = c = d = 0
    for x, y in itertools.combinations(sorted(pred), 2):
        same_p, same_t = pred[x] == pred[y], truth[x] == truth[y]
        a += same_p and same_t
        b += same_p and not same_t
        c += same_t and not same_p
        d += not same_p and not same_t
    return 2 * (a * d - b * c) / ((a + b) * (b + d) + (a + c) * (c + d))


def _random_labels(rng, n):
    docs = [f"d{i}" for i in range(n)]
    truth = {d: rng.randrange(n // 3 + 1) for d in docs}
    pred = {d: (truth[d] if rng.random() < 0.8 else rng.randrange(n)) for d in docs}
    return pred, truth


def test_pairwise_scores_equal_brute_force_on_random_labellings():
    rng = random.Random(1)
    for _ in range(40):
        pred, truth = _random_labels(rng, rng.randint(2, 60))
        subset = set(rng.sample(sorted(pred), rng.randint(1, len(pred))))
        for sub in (None, subset):
            s = pairwise_scores(pred, truth, sub)
            tp, npred, ntrue = _brute_pairs(pred, truth, sub)
            assert (s["correct_pairs"], s["predicted_pairs"], s["true_pairs"]) == (tp, npred, ntrue)
            assert s["precision"] == (tp / npred if npred else 1.0)
            assert s["recall"] == (tp / ntrue if ntrue else 1.0)


def test_ari_equals_pair_counting_formula():
    rng = random.Random(2)
    checked = 0
    for _ in range(40):
        pred, truth = _random_labels(rng, rng.randint(4, 50))
        try:
            expected = _brute_ari(pred, truth)
        except ZeroDivisionError:
            continue
        assert adjusted_rand_index(pred, truth) == pytest.approx(expected)
        checked += 1
    assert checked > 30


def test_perfect_and_degenerate_cases():
    truth = {"a": 1, "b": 1, "c": 2, "d": 3}
    assert pairwise_scores(truth, truth)["f1"] == 1.0
    assert adjusted_rand_index(truth, truth) == 1.0
    singletons = {d: d for d in truth}
    s = pairwise_scores(singletons, truth)
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 0.0, 0.0)
    assert adjusted_rand_index(singletons, truth) == 0.0
    assert adjusted_rand_index(singletons, singletons) == 1.0
    merged = {d: 0 for d in truth}
    assert pairwise_scores(merged, truth)["precision"] == pytest.approx(1 / 6)


def test_report_and_label_mismatch():
    pred = {"a": 1, "b": 1, "c": 1}
    truth = {"a": 1, "b": 1, "c": 2}
    rep = clustering_report(pred, truth)
    assert rep["precision"] == pytest.approx(1 / 3) and rep["recall"] == 1.0
    assert clustering_report(pred, truth, subset={"c"})["precision"] == 0.0
    with pytest.raises(ValueError):
        pairwise_scores({"a": 1}, {"b": 1})
