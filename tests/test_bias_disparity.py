"""Removal-rate disparity by identity axis (pipelines/bias/disparity.py)."""

from __future__ import annotations

import math

import pytest

from pipelines.bias.disparity import (
    ANY_AXIS,
    ANY_RULE,
    accumulator_from_json,
    accumulator_to_json,
    add_document,
    add_text,
    disparity_rows,
    merge_accumulators,
    new_accumulator,
)


def corpus() -> list[tuple[str, set[str], str | None]]:
    """Stage 'clean': 10 docs mention religion (3 removed by c4:badwords, 1 by c4:lorem),
    20 mention nothing (2 removed by c4:badwords, 1 by gopher:words); stage 'dedup': 4 docs."""
    docs: list[tuple[str, set[str], str | None]] = []
    docs += [("clean", {"religion"}, "c4:badwords")] * 3
    docs += [("clean", {"religion"}, "c4:lorem")]
    docs += [("clean", {"religion"}, None)] * 6
    docs += [("clean", set(), "c4:badwords")] * 2
    docs += [("clean", set(), "gopher:words")]
    docs += [("clean", set(), None)] * 17
    docs += [("dedup", {"gender", "age"}, "dedup:near"), ("dedup", {"gender"}, None)]
    docs += [("dedup", set(), None)] * 2
    return docs


def counts(row) -> tuple[int, int, int, int]:
    """(docs_mention, removed_mention, docs_no_mention, removed_no_mention) of a row."""
    return row["docs_mention"], row["removed_mention"], row["docs_no_mention"], row["removed_no_mention"]


def rows_by_key(rows):
    return {(r["stage"], r["rule"], r["axis"]): r for r in rows}


def build(docs):
    acc = new_accumulator()
    for stage, axes, reason in docs:
        add_document(acc, stage, axes, reason)
    return acc


def test_rates_ratio_and_counts_on_a_constructed_corpus():
    rows = rows_by_key(disparity_rows(build(corpus())))
    r = rows[("clean", "c4:badwords", "religion")]
    assert (r["docs_mention"], r["docs_no_mention"]) == (10, 20)
    assert (r["removed_mention"], r["removed_no_mention"]) == (3, 2)
    assert r["rate_mention"] == pytest.approx(0.3) and r["rate_no_mention"] == pytest.approx(0.1)
    assert r["ratio"] == pytest.approx(3.0) and r["difference"] == pytest.approx(0.2)
    # any removal: 4/10 vs 3/20
    r = rows[("clean", ANY_RULE, "religion")]
    assert r["rate_mention"] == pytest.approx(0.4) and r["rate_no_mention"] == pytest.approx(0.15)
    assert r["ratio"] == pytest.approx(0.4 / 0.15)
    # prefix group c4:* (two c4 reasons), none for gopher (one reason)
    r = rows[("clean", "c4:*", "religion")]
    assert (r["removed_mention"], r["removed_no_mention"]) == (4, 2)
    assert ("clean", "gopher:*", "religion") not in rows
    # the rule removes nothing that mentions religion
    r = rows[("clean", "gopher:words", "religion")]
    assert r["rate_mention"] == 0.0 and r["rate_no_mention"] == pytest.approx(1 / 20) and r["ratio"] == 0.0


def test_axes_without_mentions_and_the_any_axis():
    rows = rows_by_key(disparity_rows(build(corpus())))
    r = rows[("clean", "c4:badwords", "gender")]
    assert r["docs_mention"] == 0 and r["rate_mention"] is None and r["ratio"] is None and r["z"] is None
    assert r["rate_no_mention"] == pytest.approx(5 / 30)
    assert rows[("clean", "c4:badwords", ANY_AXIS)]["rate_mention"] == pytest.approx(0.3)
    # dedup stage is counted on its own documents
    r = rows[("dedup", "dedup:near", "gender")]
    assert counts(r) == (2, 1, 2, 0)
    assert r["rate_mention"] == 0.5 and r["rate_no_mention"] == 0.0 and r["ratio"] is None
    assert rows[("dedup", "dedup:near", ANY_AXIS)]["docs_mention"] == 2  # gender+age doc counted once


def test_z_statistic_matches_the_pooled_formula():
    r = rows_by_key(disparity_rows(build(corpus())))[("clean", "c4:badwords", "religion")]
    pooled = 5 / 30
    expected = (0.3 - 0.1) / math.sqrt(pooled * (1 - pooled) * (1 / 10 + 1 / 20))
    assert r["z"] == pytest.approx(expected)


def test_accumulators_merge_to_the_same_rows_in_any_split():
    docs = corpus()
    whole = disparity_rows(build(docs))
    parts = [build(docs[i::3]) for i in range(3)]
    assert disparity_rows(merge_accumulators(*parts)) == whole
    assert disparity_rows(merge_accumulators(parts[2], merge_accumulators(parts[0], parts[1]))) == whole


def test_add_text_uses_representation_mention_detection():
    acc = new_accumulator()
    add_text(acc, "bias", "The Muslim community met.", "en", "toxicity:document")
    add_text(acc, "bias", "A black cat.", "en", None)
    add_text(acc, "bias", "她是穆斯林。", "zh", None)
    rows = rows_by_key(disparity_rows(acc))
    r = rows[("bias", "toxicity:document", "religion")]
    assert counts(r) == (2, 1, 1, 0)


def test_per_shard_accumulators_survive_json_and_merge_to_the_whole():
    import json

    docs = corpus()
    parts = [build(docs[:15]), build(docs[15:])]
    restored = [accumulator_from_json(json.loads(json.dumps(accumulator_to_json(p)))) for p in parts]
    assert disparity_rows(merge_accumulators(*restored)) == disparity_rows(build(docs))


def test_raw_chinese_documents_without_a_language_still_count_their_identity_mentions():
    from pipelines.bias.report import scan_document

    doc = {"id": "r1", "text": "她是一名穆斯林女性，也是残疾人权益的倡导者。", "lang": None}
    counts, axes = scan_document(doc, counts=False, axes=True)
    assert counts is None and axes is not None
    assert {"religion", "gender", "disability"} <= set(axes)
