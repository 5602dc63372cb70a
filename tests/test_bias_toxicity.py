"""Lexical toxicity score and the document / line policy (pipelines/bias/toxicity.py)."""

from __future__ import annotations

import pytest

from pipelines.bias.toxicity import REASON_ALL_LINES, REASON_DOCUMENT, apply_policy, score_document
from pipelines.config import BiasConfig

CLEAN = "the cat sat on the mat and looked at the garden"  # 11 words


def words(n: int) -> str:
    return " ".join(["word"] * n)


def test_score_is_weighted_terms_per_thousand_words():
    res = score_document("fuck this shit " + words(7), "en")  # 10 words, 2 x profanity (1.0)
    assert res.units == 10
    assert res.weighted == pytest.approx(2.0)
    assert res.score == pytest.approx(200.0)
    assert res.terms == {"fuck": 1, "shit": 1}
    assert res.categories == {"profanity": pytest.approx(2.0)}


def test_category_weights_apply():
    res = score_document("sex education for teens, and a slur: nigger", "en")  # 8 words
    assert res.weighted == pytest.approx(0.25 + 2.0)
    assert res.categories == {"descriptive": pytest.approx(0.25), "slur": pytest.approx(2.0)}
    assert res.score == pytest.approx(1000 * 2.25 / 8)


def test_clean_text_scores_zero():
    res = score_document(CLEAN + "\n" + "Scunthorpe is a classic town.", "en")
    assert res.weighted == 0.0 and res.score == 0.0 and res.lines == () and res.n_lines == 2


def test_chinese_score_counts_characters():
    res = score_document("你他妈的傻逼", "zh")  # 6 CJK characters, 他妈的 + 傻逼
    assert res.units == 6
    assert res.terms == {"他妈的": 1, "傻逼": 1}
    assert res.score == pytest.approx(1000 * 2 / 6)


def test_per_line_scores():
    text = "A clean first line.\nWhat the fuck is this shit\n\nsex ed"
    res = score_document(text, "en")
    assert [ls.index for ls in res.lines] == [1, 3]
    line1, line3 = res.lines
    assert line1.terms == ("fuck", "shit") and line1.weighted == pytest.approx(2.0) and line1.units == 6
    assert line1.per_1000 == pytest.approx(2000 / 6)
    assert line3.terms == ("sex",) and line3.weighted == pytest.approx(0.25)
    assert res.flagged_line_indices == {1, 3}
    assert res.n_lines == 4


# --------------------------------------------------------------------------------------------------
# policy


def test_document_policy_threshold_is_strict():
    cfg = BiasConfig(toxicity_policy="document", doc_threshold=5.0, doc_min_weighted=0.0)
    at_threshold = "fuck " + words(199)  # 1 / 200 words = 5.0 per 1,000
    text, reason, detail, signals = apply_policy(at_threshold, "en", cfg)
    assert text == at_threshold and reason is None and detail == ""
    assert signals["toxicity.score"] == pytest.approx(5.0)
    above = "fuck " + words(198)  # 1 / 199 words > 5.0
    text, reason, detail, signals = apply_policy(above, "en", cfg)
    assert text is None and reason == REASON_DOCUMENT
    assert "fuckx1" in detail and "> 5" in detail
    assert "toxicity.removed_lines" not in signals


def test_one_stray_match_never_drops_a_short_document():
    cfg = BiasConfig(toxicity_policy="document")  # threshold 5 per 1,000, at least weight 2
    short = "fuck " + words(20)  # score 47.6 but weight 1
    assert apply_policy(short, "en", cfg)[1] is None
    assert apply_policy("fuck shit " + words(20), "en", cfg)[1] == REASON_DOCUMENT  # weight 2
    assert apply_policy("全国体操比赛今天在北京开幕，运动员们表现出色。", "zh", cfg)[1] is None


def test_removed_lines_leave_no_run_of_blank_lines():
    cfg = BiasConfig(toxicity_policy="lines", doc_threshold=1000.0)
    text = "fuck this shit\n\nFirst real paragraph here.\n\nfuck that shit\n\nLast paragraph."
    new, reason, _, _ = apply_policy(text, "en", cfg)
    assert reason is None and new == "First real paragraph here.\n\nLast paragraph."


def test_document_policy_keeps_flagged_lines():
    cfg = BiasConfig(toxicity_policy="document", doc_threshold=50.0)
    text = words(100) + "\nfuck shit\n" + words(100)
    new, reason, _, signals = apply_policy(text, "en", cfg)
    assert new == text and reason is None and signals["toxicity.flagged_lines"] == 1.0


def test_lines_policy_removes_lines_above_line_threshold_only():
    cfg = BiasConfig(toxicity_policy="lines", doc_threshold=50.0, line_threshold=1.0)
    lines = [words(100), "fuck this shit", "what the fuck", words(100)]  # weights 2.0 and 1.0
    new, reason, detail, signals = apply_policy("\n".join(lines), "en", cfg)
    assert reason is None
    assert new == "\n".join([lines[0], lines[2], lines[3]])  # weight 1.0 is not above 1.0
    assert signals["toxicity.removed_lines"] == 1.0
    assert signals["toxicity.flagged_lines"] == 2.0
    assert "removed 1 of 4 lines" in detail


def test_lines_policy_drops_the_document_above_doc_threshold_first():
    cfg = BiasConfig(toxicity_policy="lines", doc_threshold=5.0, line_threshold=1.0)
    new, reason, _, _ = apply_policy("fuck this shit\n" + words(10), "en", cfg)
    assert new is None and reason == REASON_DOCUMENT


def test_lines_policy_drops_document_when_no_line_remains():
    cfg = BiasConfig(toxicity_policy="lines", doc_threshold=1e9, line_threshold=1.0)
    new, reason, _, signals = apply_policy("fuck this shit\n\n  \nbitch whore", "en", cfg)
    assert new is None and reason == REASON_ALL_LINES
    assert signals["toxicity.removed_lines"] == 2.0


def test_lines_policy_without_flagged_lines_returns_text_unchanged():
    cfg = BiasConfig(toxicity_policy="lines")
    new, reason, detail, signals = apply_policy(CLEAN, "en", cfg)
    assert new == CLEAN and reason is None and detail == "" and signals["toxicity.removed_lines"] == 0.0


def test_lines_policy_on_chinese():
    cfg = BiasConfig(toxicity_policy="lines", doc_threshold=100.0, line_threshold=1.0)
    clean = "今天天气很好，我们一起去公园散步，看到了很多花和树。" * 4
    text = f"{clean}\n你他妈的傻逼\n{clean}"
    new, reason, _, signals = apply_policy(text, "zh", cfg)
    assert reason is None and new == f"{clean}\n{clean}"
    assert signals["toxicity.removed_lines"] == 1.0


def test_policy_accepts_a_precomputed_result_and_rejects_unknown_policy():
    text = "fuck shit " + words(8)
    res = score_document(text, "en")
    cfg = BiasConfig(toxicity_policy="document", doc_threshold=50.0)
    assert apply_policy(text, "en", cfg, result=res)[1] == REASON_DOCUMENT
    with pytest.raises(ValueError, match="toxicity_policy"):
        apply_policy(text, "en", BiasConfig(toxicity_policy="spans"))
