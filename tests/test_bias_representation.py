"""Representation counts and their combiner (pipelines/bias/representation.py)."""

from __future__ import annotations

import pytest

from pipelines.bias.lexicon import AXES
from pipelines.bias.representation import (
    analyze,
    axes_from_signals,
    axis_signals,
    count_representation,
    empty_counts,
    mentioned_axes,
    merge_counts,
    summarize,
)

EN_DOC = (
    "He told his mother that she was right.\n"
    "The women and the men met a Muslim teacher.\n"
    "Fuck the gay people."
)
ZH_DOC = "她和她们说：他是中国人。\n其他人不知道。\n他妈的王八蛋！"


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def test_english_counts_by_hand():
    counts = count_representation(EN_DOC, "en")
    assert nonzero(counts) == {
        "docs": 1,
        "units": 21,  # 8 + 9 + 4 words
        "lines": 3,
        "lines.flagged": 1,
        "pronoun.male": 2,  # He, his
        "pronoun.female": 1,  # she
        "noun.male": 1,  # men
        "noun.female": 2,  # mother, women
        "axis.gender": 2,  # women, men
        "axis.religion": 1,  # Muslim
        "axis.sexual_orientation": 1,  # gay
        "docs.pronoun.male": 1,
        "docs.pronoun.female": 1,
        "docs.noun.male": 1,
        "docs.noun.female": 1,
        "docs.axis.gender": 1,
        "docs.axis.religion": 1,
        "docs.axis.sexual_orientation": 1,
        "lines.axis.gender": 1,
        "lines.axis.religion": 1,
        "lines.axis.sexual_orientation": 1,
        "lines.axis.sexual_orientation.flagged": 1,  # "gay" shares its line with "fuck"
    }
    assert set(counts) == set(empty_counts())  # stable keys, zeros included


def test_chinese_counts_by_hand():
    counts = count_representation(ZH_DOC, "zh")
    assert nonzero(counts) == {
        "docs": 1,
        "units": 22,  # 10 + 6 + 6 CJK characters
        "lines": 3,
        "lines.flagged": 1,  # 他妈的王八蛋
        "pronoun.male": 1,  # 他 (not 其他, not 他妈的)
        "pronoun.female": 2,  # 她, 她们
        "axis.nationality_ethnicity": 1,  # 中国人
        "docs.pronoun.male": 1,
        "docs.pronoun.female": 1,
        "docs.axis.nationality_ethnicity": 1,
        "lines.axis.nationality_ethnicity": 1,
    }


def test_merge_counts_sums_and_is_associative_and_commutative():
    a = count_representation(EN_DOC, "en")
    b = count_representation(ZH_DOC, "zh")
    c = count_representation("The elderly woman and her son.", "en", per_term=True)
    assert merge_counts(merge_counts(a, b), c) == merge_counts(a, merge_counts(b, c))
    assert merge_counts(a, b) == merge_counts(b, a)
    total = merge_counts(merge_counts(a, b), c)
    assert total["docs"] == 3
    assert total["pronoun.female"] == 1 + 2 + 1
    assert total["docs.axis.age"] == 1 and total["term.axis.age.elderly"] == 1
    assert a["docs"] == 1  # inputs untouched


def test_per_term_counts_and_mentioned_axes_agree_with_counts():
    counts = count_representation(EN_DOC, "en", per_term=True)
    assert counts["term.axis.gender.women"] == 1 and counts["term.noun.female.women"] == 1
    assert counts["term.pronoun.male.he"] == 1 and counts["term.pronoun.male.his"] == 1
    for text, lang in [(EN_DOC, "en"), (ZH_DOC, "zh"), ("A black cat sat there.", "en"), ("", "en")]:
        counts = count_representation(text, lang)
        assert mentioned_axes(text, lang) == {a for a in AXES if counts[f"docs.axis.{a}"]}
    assert mentioned_axes("A black cat and a white house.", "en") == frozenset()
    assert mentioned_axes("Black people and white people.", "en") == {"nationality_ethnicity"}


def test_axis_signals_round_trip():
    axes = mentioned_axes(EN_DOC, "en")
    signals = axis_signals(axes)
    assert set(signals) == {f"identity.{a}" for a in AXES}
    assert signals["identity.religion"] == 1.0 and signals["identity.age"] == 0.0
    assert axes_from_signals(signals) == axes
    assert axes_from_signals(None) == frozenset()


def test_analyze_returns_the_same_score_as_score_document():
    from pipelines.bias.toxicity import score_document

    tox, counts = analyze(EN_DOC, "en")
    assert tox == score_document(EN_DOC, "en")
    assert counts == count_representation(EN_DOC, "en")


def test_summarize_shares():
    total = merge_counts(count_representation(EN_DOC, "en"), count_representation(ZH_DOC, "zh"))
    s = summarize(total)
    assert s["he_she_ratio"] == pytest.approx(3 / 3)
    assert s["pronoun_share.male"] == pytest.approx(3 / 6)
    assert s["doc_share.axis.religion"] == pytest.approx(1 / 2)
    assert s["flagged_line_rate.sexual_orientation"] == pytest.approx(1.0)
    assert s["flagged_line_rate.all"] == pytest.approx(2 / 6)
    assert s["flagged_line_rate.disability"] is None
