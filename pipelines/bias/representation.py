"""Demographic representation counts of documents (Llama 2 §4.1-style data-card statistics).

``count_representation`` returns a flat ``dict[str, int]`` per document, so corpus totals are plain sums
(``merge_counts``; the bias report sums them per shard, then over shards). Pure: no Beam, no I/O.
Keys:

* ``docs``, ``units``, ``lines``, ``lines.flagged`` — document, unit (word / CJK character), line counts,
  and lines with at least one flagged (toxicity) term;
* ``pronoun.<male|female|neutral>``, ``noun.<male|female>`` — occurrences of gendered words;
* ``axis.<axis>`` — occurrences of identity terms of each axis;
* ``docs.pronoun.<class>``, ``docs.noun.<class>``, ``docs.axis.<axis>`` — 1 if the document has any;
* ``lines.axis.<axis>`` — lines mentioning the axis; ``lines.axis.<axis>.flagged`` — of those, lines that
  also hold a flagged term (co-occurrence of identity terms and flagged terms in one line);
* with ``per_term=True`` also ``term.<label>.<term>`` — occurrences of each matched term.

``analyze(text, lang)`` returns the toxicity result (``toxicity.score_document``) and these counts from
one scan of the text; a stage that needs both should call it and pass the result on to
``toxicity.apply_policy(..., result=...)``.

Gender mentions are identity terms of the gender axis (woman, transgender, 女性 ...); pronouns and
gendered nouns are counted separately and do not by themselves mark the gender axis as mentioned.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping

from pipelines.bias.lexicon import (
    AXES,
    NOUN_CLASSES,
    PRONOUN_CLASSES,
    Match,
    document_matcher,
    identity_matcher,
)
from pipelines.bias.toxicity import ToxicityResult, line_starts, score_document

_LABELS = (
    *(f"pronoun.{c}" for c in PRONOUN_CLASSES),
    *(f"noun.{c}" for c in NOUN_CLASSES),
    *(f"axis.{a}" for a in AXES),
)


def _axes_of(hits: Iterable[Match], info: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset(label[5:] for hit in hits for label in info[hit.term] if label.startswith("axis."))


def mentioned_axes(text: str, lang: str | None) -> frozenset[str]:
    """Identity axes that ``text`` mentions (at least one identity term of the axis).

    Uses the same scan as ``analyze``, so it agrees with the ``docs.axis.*`` counts.
    """
    return _axes_of(document_matcher(lang).scan(text.lower()).identity, identity_matcher(lang).info)


def axis_signals(axes: Iterable[str]) -> dict[str, float]:
    """Mentioned axes as document signals (``identity.<axis>`` = 1.0 or 0.0 for every axis), so later
    stages and the disparity report can reuse a detection without scanning the text again."""
    axes = set(axes)
    return {f"identity.{axis}": 1.0 if axis in axes else 0.0 for axis in AXES}


def axes_from_signals(signals: Mapping[str, float] | None) -> frozenset[str]:
    """Inverse of ``axis_signals`` (missing signals count as not mentioned)."""
    signals = signals or {}
    return frozenset(axis for axis in AXES if signals.get(f"identity.{axis}", 0.0) > 0.0)


def empty_counts() -> dict[str, int]:
    """Every fixed key at zero (``term.*`` keys are added only when seen)."""
    keys = ["docs", "units", "lines", "lines.flagged", *_LABELS, *(f"docs.{label}" for label in _LABELS)]
    for axis in AXES:
        keys += [f"lines.axis.{axis}", f"lines.axis.{axis}.flagged"]
    return dict.fromkeys(keys, 0)


def count_representation(text: str, lang: str | None, *, per_term: bool = False) -> dict[str, int]:
    """Representation counts of one document (keys in the module docstring); see also ``analyze``."""
    return analyze(text, lang, per_term=per_term)[1]


def analyze(text: str, lang: str | None, *, per_term: bool = False) -> tuple[ToxicityResult, dict[str, int]]:
    """Toxicity score and representation counts of one document from a single scan of its text."""
    scan = document_matcher(lang).scan(text.lower())
    tox = score_document(text, lang, scan=scan)
    info = identity_matcher(lang).info
    flagged = tox.flagged_line_indices
    counts = empty_counts()
    counts["docs"] = 1
    counts["units"] = tox.units
    counts["lines"] = sum(1 for line in text.split("\n") if line.strip())  # blank lines hold no terms
    counts["lines.flagged"] = len(flagged)
    axis_lines: dict[str, set[int]] = {}
    starts: list[int] | None = None
    for hit in scan.identity:
        for label in info[hit.term]:
            counts[label] += 1
            counts[f"docs.{label}"] = 1
            if per_term:
                key = f"term.{label}.{hit.term}"
                counts[key] = counts.get(key, 0) + 1
            if label.startswith("axis."):
                if starts is None:
                    starts = line_starts(scan.lowered)
                axis_lines.setdefault(label[5:], set()).add(bisect_right(starts, hit.start) - 1)
    for axis, lines in axis_lines.items():
        counts[f"lines.axis.{axis}"] = len(lines)
        counts[f"lines.axis.{axis}.flagged"] = len(lines & flagged)
    return tox, counts


def merge_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Key-wise sum of two count dicts (associative and commutative; inputs are not modified)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def summarize(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Shares for a data card: pronoun shares, share of documents per axis, flagged-line rates.

    ``flagged_line_rate.<axis>`` is the share of lines mentioning the axis that also hold a flagged
    term, to compare with ``flagged_line_rate.all``. A share is None when its denominator is 0.
    """

    def share(num: int, den: int) -> float | None:
        return num / den if den else None

    out: dict[str, float | None] = {}
    pronouns = sum(counts.get(f"pronoun.{c}", 0) for c in PRONOUN_CLASSES)
    for c in PRONOUN_CLASSES:
        out[f"pronoun_share.{c}"] = share(counts.get(f"pronoun.{c}", 0), pronouns)
        out[f"doc_share.pronoun.{c}"] = share(counts.get(f"docs.pronoun.{c}", 0), counts.get("docs", 0))
    out["he_she_ratio"] = share(counts.get("pronoun.male", 0), counts.get("pronoun.female", 0))
    for axis in AXES:
        out[f"doc_share.axis.{axis}"] = share(counts.get(f"docs.axis.{axis}", 0), counts.get("docs", 0))
        out[f"flagged_line_rate.{axis}"] = share(
            counts.get(f"lines.axis.{axis}.flagged", 0), counts.get(f"lines.axis.{axis}", 0)
        )
    out["flagged_line_rate.all"] = share(counts.get("lines.flagged", 0), counts.get("lines", 0))
    return out
