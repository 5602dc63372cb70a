"""Lexical toxicity score of a document and the document / line removal policy.

Score definitions (weights from ``categories.yaml``; units from ``lexicon.count_units``: whitespace
words, each CJK character counting as one unit):

* ``weighted`` — sum of the category weights of the flagged terms found;
* ``score`` — ``1000 * weighted / units``: weighted flagged terms per 1,000 words (CJK: characters);
* a line has the same two numbers computed over the line alone.

Policy (``BiasConfig``): a document whose ``score`` is above ``doc_threshold`` is dropped
(``toxicity:document``). Under policy ``lines``, a document at or below that threshold loses every line
whose ``weighted`` is above ``line_threshold`` (the count is the signal ``toxicity.removed_lines``), and is
dropped as ``toxicity:all-lines`` when no non-blank line remains.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate

from pipelines.bias.lexicon import Match, Scan, count_units, flagged_matcher
from pipelines.config import BiasConfig

_BLANK_RUNS = re.compile(r"\n(?:[ \t]*\n){2,}")

REASON_DOCUMENT = "toxicity:document"
REASON_ALL_LINES = "toxicity:all-lines"


@dataclass(frozen=True)
class LineScore:
    """Flagged terms of one line (only lines with at least one flagged term are reported)."""

    index: int  # 0-based line number (lines are separated by "\n")
    units: int
    weighted: float
    per_1000: float
    terms: tuple[str, ...]  # in order of appearance


@dataclass(frozen=True)
class ToxicityResult:
    units: int
    n_lines: int
    weighted: float
    score: float  # weighted flagged terms per 1,000 units
    terms: dict[str, int] = field(default_factory=dict)  # flagged term -> occurrences
    categories: dict[str, float] = field(default_factory=dict)  # category -> weighted total
    lines: tuple[LineScore, ...] = ()  # lines with flagged terms; every other line scores 0

    @property
    def flagged_line_indices(self) -> frozenset[int]:
        return frozenset(line.index for line in self.lines)

    def top_terms(self, k: int = 5) -> list[tuple[str, int]]:
        """The ``k`` most frequent flagged terms (ties by term), for report details."""
        return sorted(self.terms.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _per_1000(weighted: float, units: int) -> float:
    return 1000.0 * weighted / max(units, 1)


def line_starts(lowered: str) -> list[int]:
    """Offsets at which each "\\n"-separated line of ``lowered`` starts."""
    return [0, *accumulate(len(line) + 1 for line in lowered.split("\n")[:-1])]


def _score_hits(text: str, lowered: str, hits: list[Match], info: dict) -> ToxicityResult:
    units = count_units(text)
    n_lines = text.count("\n") + 1
    if not hits:
        return ToxicityResult(units=units, n_lines=n_lines, weighted=0.0, score=0.0)
    starts = line_starts(lowered)
    lines = text.split("\n")
    by_line: dict[int, list[str]] = {}
    for hit in hits:
        by_line.setdefault(bisect_right(starts, hit.start) - 1, []).append(hit.term)
    terms: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    line_scores = []
    for index in sorted(by_line):
        found = by_line[index]
        weighted = 0.0
        for term in found:
            category, weight = info[term]
            weighted += weight
            categories[category] += weight
        terms.update(found)
        line_units = count_units(lines[index])
        line_scores.append(
            LineScore(index, line_units, weighted, _per_1000(weighted, line_units), tuple(found))
        )
    total = sum(ls.weighted for ls in line_scores)
    return ToxicityResult(
        units=units,
        n_lines=n_lines,
        weighted=total,
        score=_per_1000(total, units),
        terms=dict(terms),
        categories=dict(categories),
        lines=tuple(line_scores),
    )


def score_document(text: str, lang: str | None, *, scan: Scan | None = None) -> ToxicityResult:
    """Flagged terms of ``text`` (LDNOOBW list of ``lang`` plus English), overall and per line.

    ``scan`` may pass ``document_matcher(lang).scan(text.lower())`` to reuse a one-pass scan.
    """
    matcher = flagged_matcher(lang)
    if scan is None:
        lowered = text.lower()
        return _score_hits(text, lowered, matcher.find(lowered), matcher.info)
    return _score_hits(text, scan.lowered, scan.flagged, matcher.info)


def _terms_detail(result: ToxicityResult) -> str:
    return ", ".join(f"{term}x{n}" for term, n in result.top_terms())


def apply_policy(
    text: str, lang: str | None, cfg: BiasConfig, result: ToxicityResult | None = None
) -> tuple[str | None, str | None, str, dict[str, float]]:
    """Apply the toxicity policy of ``cfg``; returns (new text or None, reason or None, detail, signals).

    ``result`` may pass a score already computed for ``text``. Signals: ``toxicity.score``,
    ``toxicity.weighted``, ``toxicity.flagged_terms``, ``toxicity.flagged_lines`` and, under policy
    ``lines``, ``toxicity.removed_lines``.
    """
    if cfg.toxicity_policy not in ("document", "lines"):
        raise ValueError(f"bias.toxicity_policy must be 'document' or 'lines', not {cfg.toxicity_policy!r}")
    res = result if result is not None else score_document(text, lang)
    signals = {
        "toxicity.score": res.score,
        "toxicity.weighted": res.weighted,
        "toxicity.flagged_terms": float(sum(res.terms.values())),
        "toxicity.flagged_lines": float(len(res.lines)),
    }
    if res.score > cfg.doc_threshold and res.weighted >= cfg.doc_min_weighted:
        detail = (
            f"score {res.score:.2f} > {cfg.doc_threshold:g} per 1,000 units "
            f"(weighted {res.weighted:g} in {res.units} units; {_terms_detail(res)})"
        )
        return None, REASON_DOCUMENT, detail, signals
    if cfg.toxicity_policy == "document":
        return text, None, "", signals
    drop = {line.index for line in res.lines if line.weighted > cfg.line_threshold}
    signals["toxicity.removed_lines"] = float(len(drop))
    if not drop:
        return text, None, "", signals
    kept = [line for i, line in enumerate(text.split("\n")) if i not in drop]
    detail = (
        f"removed {len(drop)} of {res.n_lines} lines with line weight > {cfg.line_threshold:g} "
        f"({_terms_detail(res)})"
    )
    if not any(line.strip() for line in kept):
        return None, REASON_ALL_LINES, detail, signals
    # a removed paragraph leaves no run of blank lines behind (cleaning allows at most one)
    return _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n"), None, detail, signals
