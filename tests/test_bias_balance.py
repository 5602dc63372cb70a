"""Source balancing by water-filling (pipelines/bias/balance.py)."""

from __future__ import annotations

import random

import pytest

from pipelines.bias.balance import keep_document, plan_balance, source_keep_probabilities


def test_one_dominant_source_is_capped():
    plan = plan_balance({"web": 1000, "books": 100, "wiki": 100}, 0.5)
    assert plan.probabilities == {"web": pytest.approx(0.2), "books": 1.0, "wiki": 1.0}
    assert plan.cap_chars == pytest.approx(200.0)
    assert plan.expected_fractions == {
        "web": pytest.approx(0.5),
        "books": pytest.approx(0.25),
        "wiki": pytest.approx(0.25),
    }
    assert plan.feasible


def test_capping_cascades_to_the_next_largest_source():
    # C = 0.3 * 200 / (1 - 0.3 * 2) = 150: a and b keep 150 each, c and d keep everything (total 500)
    plan = plan_balance({"a": 1000, "b": 500, "c": 100, "d": 100}, 0.3)
    assert plan.cap_chars == pytest.approx(150.0)
    assert plan.probabilities == {"a": pytest.approx(0.15), "b": pytest.approx(0.3), "c": 1.0, "d": 1.0}
    assert plan.expected_fractions["a"] == pytest.approx(0.3)
    assert plan.expected_fractions["b"] == pytest.approx(0.3)


def test_no_cap_when_every_source_fits_or_cap_is_off():
    assert source_keep_probabilities({"a": 100, "b": 90, "c": 80}, 0.4) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert source_keep_probabilities({"a": 10_000, "b": 1}, 1.0) == {"a": 1.0, "b": 1.0}
    assert source_keep_probabilities({}, 0.5) == {}
    assert source_keep_probabilities({"a": 0, "b": 10}, 0.5) == {"a": 1.0, "b": 1.0}


def test_infeasible_cap_equalises_sources():
    plan = plan_balance({"a": 1000, "b": 300, "c": 100}, 0.2)  # 3 sources cannot each be <= 20 %
    assert not plan.feasible
    assert plan.expected_chars == {"a": pytest.approx(100), "b": pytest.approx(100), "c": pytest.approx(100)}
    exact = plan_balance({"a": 1000, "b": 300, "c": 100}, 1 / 3)
    assert exact.feasible and exact.expected_fractions["a"] == pytest.approx(1 / 3)


def test_random_totals_satisfy_the_cap_and_water_filling():
    rng = random.Random(3)
    for _ in range(300):
        n = rng.randint(1, 8)
        totals = {f"s{i}": rng.choice([0, rng.randint(1, 10), rng.randint(1, 10_000)]) for i in range(n)}
        positive = [s for s, c in totals.items() if c > 0]
        f = rng.uniform(1 / max(len(positive), 1), 1.0)
        plan = plan_balance(totals, f)
        assert plan.feasible
        assert max(plan.expected_fractions.values(), default=0.0) <= f + 1e-9
        capped = [s for s in positive if plan.probabilities[s] < 1.0]
        for s in capped:  # every capped source keeps exactly the water level, above every uncapped one
            assert plan.expected_chars[s] == pytest.approx(plan.cap_chars)
            assert totals[s] > plan.cap_chars
        for s in set(positive) - set(capped):
            assert plan.cap_chars is None or totals[s] <= plan.cap_chars + 1e-9


def test_keep_document_is_deterministic_and_realises_the_plan():
    sources = {"web": 3000, "books": 500, "wiki": 500}  # documents of equal size
    probs = source_keep_probabilities(sources, 0.5)
    kept = {s: 0 for s in sources}
    for source, n in sources.items():
        for i in range(n):
            decision = keep_document(f"{source}-{i}", source, probs, seed=1)
            assert decision == keep_document(f"{source}-{i}", source, probs, seed=1)
            kept[source] += decision
    assert kept["books"] == 500 and kept["wiki"] == 500
    assert abs(kept["web"] / sum(kept.values()) - 0.5) < 0.03
    assert keep_document("x", "unknown-source", probs, seed=1)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="max_fraction"):
        plan_balance({"a": 1}, 0.0)
    with pytest.raises(ValueError, match="negative"):
        plan_balance({"a": -1}, 0.5)
