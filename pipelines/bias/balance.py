"""Source balancing: cap every source's share of the output characters by down-sampling it.

Given each source's character total ``c_s`` and a cap ``f`` (``BiasConfig.max_source_fraction``), find
keep probabilities ``p_s`` so that the expected kept characters ``k_s = p_s * c_s`` satisfy
``k_s <= f * sum(k)`` while keeping as much text as possible. Capping a source lowers the total, which
lowers the cap, so the solution is a water level ``C``: sources larger than ``C`` keep ``C`` characters,
the others keep everything, and ``C = f * (sum of uncapped c_s + n_capped * C)``, i.e.
``C = f * S_uncapped / (1 - f * n_capped)``. Sources are capped largest first until the next one fits.

With ``n`` sources no cap below ``1/n`` can be met; then every source is cut to the smallest source's
size (equal shares, the closest feasible point) and the plan says ``feasible=False``.

Documents are kept by a hash of (seed, source, id) compared with ``p_s``, so the choice is
deterministic and independent of order and partitioning; realised shares match the plan in
expectation (large sources: closely).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.hashing import hash_unit


@dataclass(frozen=True)
class BalancePlan:
    probabilities: dict[str, float]  # source -> keep probability
    expected_chars: dict[str, float]  # source -> expected kept characters
    cap_chars: float | None  # water level C (None when nothing is capped)
    feasible: bool

    @property
    def expected_fractions(self) -> dict[str, float]:
        total = sum(self.expected_chars.values())
        return {s: (k / total if total else 0.0) for s, k in self.expected_chars.items()}


def plan_balance(char_totals: Mapping[str, int | float], max_fraction: float) -> BalancePlan:
    """Keep probabilities that bring every source to at most ``max_fraction`` of the output."""
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be within (0, 1], not {max_fraction}")
    for source, chars in char_totals.items():
        if chars < 0:
            raise ValueError(f"source {source!r} has a negative character total {chars}")
    totals = {s: float(c) for s, c in char_totals.items()}
    probs = dict.fromkeys(totals, 1.0)
    positive = sorted((s for s in totals if totals[s] > 0), key=lambda s: (-totals[s], s))
    if max_fraction >= 1.0 or not positive:
        return BalancePlan(probs, dict(totals), None, True)
    rest = sum(totals[s] for s in positive)  # characters of the sources not capped so far
    cap: float | None = None
    feasible = False
    for n_capped, source in enumerate(positive):
        denom = 1.0 - max_fraction * n_capped
        if denom <= 0:
            break
        level = max_fraction * rest / denom
        if totals[source] <= level:
            cap, feasible = (level if n_capped else None), True
            break
        rest -= totals[source]
    if not feasible:  # cap below 1/n (or rounding at exactly 1/n): equal shares
        cap = totals[positive[-1]]
        feasible = max_fraction * len(positive) >= 1.0 - 1e-12
    if cap is not None:
        for s in positive:
            if totals[s] > cap:
                probs[s] = cap / totals[s]
    expected = {s: totals[s] * probs[s] for s in totals}
    return BalancePlan(probs, expected, cap, feasible)


def source_keep_probabilities(
    char_totals: Mapping[str, int | float], max_fraction: float
) -> dict[str, float]:
    """Source -> keep probability (see ``plan_balance``)."""
    return plan_balance(char_totals, max_fraction).probabilities


def keep_document(doc_id: str, source: str, probs: Mapping[str, float], seed: int) -> bool:
    """Deterministic keep decision for one document; unknown sources are kept."""
    p = probs.get(source, 1.0)
    if p >= 1.0:
        return True
    return hash_unit(b"", "balance", seed, source, doc_id) < p
