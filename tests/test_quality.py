"""Tests for pipelines.text.quality: every rule just inside and just outside its threshold, English and
Chinese, boilerplate removal, real Chinese books and Shakespeare (skipped without ../shared)."""

from __future__ import annotations

import collections
import random
import re
from dataclasses import replace
from fractions import Fraction
from functools import cache
from itertools import islice, product
from pathlib import Path

import pytest

from pipelines.config import C4Config, FineWebConfig, GopherQualityConfig, GopherRepetitionConfig
from pipelines.text.quality import (
    c4_clean,
    fineweb_quality,
    gopher_quality,
    gopher_repetition,
    quality_score,
)
from pipelines.text.stopwords import CHINESE, ENGLISH_GOPHER
from pipelines.text.words import is_cjk, split_paragraphs, tokenize_words

GQ, GR, C4, FW = GopherQualityConfig(), GopherRepetitionConfig(), C4Config(), FineWebConfig()
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ENGLISH_PROSE = """The town library opened its doors in the spring of 1923, and for most of the century it was \
the only place where people could borrow books without paying a fee. Its first librarian kept a handwritten \
ledger of every loan, and the pages show how reading habits changed with the seasons: farming manuals in late \
winter, novels in the long evenings of autumn.

When the old building became too small, the council decided to move the collection to a converted grain \
store near the river. Volunteers carried the books in wooden crates over a single weekend. Several of them \
later said that the move was the first time they had understood how much the town had read.

Today the library lends more audiobooks than atlases, but the ledger is still on display in a glass case by \
the entrance. Visitors often stop to look for the names of their grandparents, and many of them find one."""

CHINESE_PROSE = """每年秋天，城东的小公园都会举办一次旧书市集。附近的居民把家里读过的书搬出来，摆在长椅和草地上，\
价格通常只有几块钱，讨价还价的声音此起彼伏。

来逛市集的人并不都是为了买书。有的老人带着孙子慢慢走，一边翻看连环画，一边讲起自己小时候的故事；\
也有刚毕业的学生，想在这里找到一本便宜的词典，或者一套旧版的习题集。

市集结束的时候，卖不完的书会被送到社区图书室。管理员说，这些书虽然旧了，却常常比新书更受欢迎，\
因为书页上留着前一位读者的笔记和折痕，好像有人陪着一起读。"""

CLASSICAL_CHINESE = """子曰：“学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？”

有子曰：“其为人也孝弟，而好犯上者，鲜矣；不好犯上，而好作乱者，未之有也。君子务本，本立而道生。孝弟也者，\
其为仁之本与！”"""


# --------------------------------------------------------------------------------------------------
# document builders: exact sizes, so each edge sits exactly on a threshold


@cache
def _word_pool(length: int, seed: int) -> tuple[str, ...]:
    shapes = ["bcdfghjklmnprstvz" if i % 2 == 0 else "aeiou" for i in range(length)]
    pool = [w for w in ("".join(t) for t in islice(product(*shapes), 20_000)) if w not in ENGLISH_GOPHER]
    random.Random(seed).shuffle(pool)
    return tuple(pool)


def words_of_length(length: int, n: int, seed: int = 0) -> list[str]:
    """n distinct pseudo-words of exactly `length` letters, none a stop word."""
    pool = _word_pool(length, seed)
    assert len(pool) >= n
    return list(pool[:n])


def filler(n: int, seed: int = 0) -> list[str]:
    """n distinct lower-case pseudo-words of 4 to 7 letters."""
    per = -(-n // 4)
    pools = [words_of_length(length, per, seed) for length in (4, 5, 6, 7)]
    return [pools[i % 4][i // 4] for i in range(n)]


HAN = [chr(c) for c in range(0x4E00, 0x9FA6) if chr(c) not in CHINESE]


def han(n: int, start: int = 0) -> str:
    """n distinct Han characters, none a Chinese stop word."""
    assert start + n <= len(HAN)
    return "".join(HAN[start : start + n])


def en_doc(n_words: int, stops: tuple[str, ...] = ("the", "of")) -> str:
    return " ".join([*stops, *filler(n_words - len(stops))]) + "."


def pad_english(words: list[str], total_chars: int) -> str:
    """Join words with spaces and append a "qqq..." word (unlike any other) so that len(text) == total."""
    text = " ".join(words)
    assert total_chars - len(text) - 1 >= 1, "document too long for the requested size"
    return f"{text} " + "q" * (total_chars - len(text) - 1)


def pad_chinese(text: str, total_chars: int, start: int = 3000) -> str:
    out = text + han(total_chars - len(text), start)
    assert len(out) == total_chars
    return out


def exact_total(chars: int, threshold: float, max_k: int = 60) -> tuple[int, int]:
    """Smallest k >= 1 with chars * k / threshold an integer: (k, total)."""
    for k in range(1, max_k):
        total = Fraction(chars * k) / Fraction(str(threshold))
        if total.denominator == 1:
            assert chars * k / int(total) == threshold
            return k, int(total)
    raise AssertionError("no exact size found")


# --------------------------------------------------------------------------------------------------
# typical good documents pass every preset


@pytest.mark.parametrize(
    ("text", "lang"),
    [(ENGLISH_PROSE, "en"), (CHINESE_PROSE, "zh"), (CHINESE_PROSE, None), (CLASSICAL_CHINESE, "zh")],
)
def test_good_prose_passes_all_presets(text: str, lang: str | None) -> None:
    cleaned, c4 = c4_clean(text, lang, C4)
    for v in (
        gopher_quality(text, lang, GQ),
        gopher_repetition(text, lang, GR),
        fineweb_quality(text, lang, FW),
        c4,
    ):
        assert v.passed, (v.reason, v.detail)
    assert cleaned == "\n\n".join(p.strip() for p in split_paragraphs(text))
    assert c4.signals["c4.removed_lines"] == 0


def test_chinese_is_measured_per_character() -> None:
    v = gopher_quality(CHINESE_PROSE, "zh", GQ)
    assert v.signals["gopher_quality.cjk"] == 1.0
    assert v.signals["gopher_quality.mean_word_length"] == 1.0  # not judged for CJK
    assert v.signals["gopher_quality.word_count"] == len(re.findall(r"[\u4e00-\u9fff]", CHINESE_PROSE))
    assert v.signals["gopher_quality.stop_words"] >= 5
    # the same text judged as English words would be a handful of very long "words"
    english = gopher_quality(CHINESE_PROSE, "en", GQ)
    assert english.reason == "gopher_quality:word_count"


def test_verdict_detail_and_signal_prefixes() -> None:
    v = gopher_quality(en_doc(49), "en", GQ)
    assert v.reason == "gopher_quality:word_count"
    assert v.detail == "value 49 vs threshold 50 (min)"
    for fn, cfg, prefix in ((gopher_quality, GQ, "gopher_quality."), (gopher_repetition, GR, "gopher_repetition."),
                            (fineweb_quality, FW, "fineweb.")):  # fmt: skip
        assert all(k.startswith(prefix) for k in fn(ENGLISH_PROSE, "en", cfg).signals)
    assert all(k.startswith("c4.") for k in c4_clean(ENGLISH_PROSE, "en", C4)[1].signals)


def test_disabled_preset_keeps_signals_but_no_reason() -> None:
    v = gopher_quality(en_doc(10), "en", replace(GQ, enabled=False))
    assert v.passed and v.signals["gopher_quality.word_count"] == 10
    text = "lorem ipsum dolor.\nPlease enable JavaScript."
    cleaned, c4 = c4_clean(text, "en", replace(C4, enabled=False))
    assert cleaned == text and c4.passed and c4.signals["c4.removed_javascript"] == 1


# --------------------------------------------------------------------------------------------------
# Gopher quality


def test_word_count_edges_english() -> None:
    assert gopher_quality(en_doc(50), "en", GQ).passed
    assert gopher_quality(en_doc(49), "en", GQ).reason == "gopher_quality:word_count"
    cfg = replace(GQ, max_words=60)
    assert gopher_quality(en_doc(60), "en", cfg).passed
    v = gopher_quality(en_doc(61), "en", cfg)
    assert v.reason == "gopher_quality:word_count" and v.detail == "value 61 vs threshold 60 (max)"


def test_word_count_edges_chinese_counts_characters() -> None:
    assert gopher_quality("之而" + han(48) + "。", "zh", GQ).passed
    v = gopher_quality("之而" + han(47) + "。", "zh", GQ)
    assert v.reason == "gopher_quality:word_count" and v.signals["gopher_quality.word_count"] == 49


def test_mean_word_length_edges() -> None:
    three = ["the", "and", *words_of_length(3, 58)]
    assert gopher_quality(" ".join(three), "en", GQ).signals["gopher_quality.mean_word_length"] == 3.0
    assert gopher_quality(" ".join(three), "en", GQ).passed
    shorter = [*three[:-1], "ox"]
    assert gopher_quality(" ".join(shorter), "en", GQ).reason == "gopher_quality:mean_word_length"
    ten = ["the", "and", *words_of_length(17, 2), *words_of_length(10, 56)]  # (6 + 34 + 560) / 60 = 10
    assert gopher_quality(" ".join(ten), "en", GQ).signals["gopher_quality.mean_word_length"] == 10.0
    assert gopher_quality(" ".join(ten), "en", GQ).passed
    longer = [*ten[:-1], ten[-1] + "a"]
    assert gopher_quality(" ".join(longer), "en", GQ).reason == "gopher_quality:mean_word_length"


def test_symbol_ratios_edges() -> None:
    words = ["the", "of", *filler(48)]
    for symbol, rule in (("#", "hash_ratio"), ("...", "ellipsis_ratio"), ("…", "ellipsis_ratio")):
        at = " ".join(words[:25] + [symbol] * 5 + words[25:]) + "."
        above = " ".join(words[:25] + [symbol] * 6 + words[25:]) + "."
        assert gopher_quality(at, "en", GQ).passed, symbol
        assert gopher_quality(above, "en", GQ).reason == f"gopher_quality:{rule}", symbol


def test_chinese_ellipsis_counts_each_run_once() -> None:
    chars = "之而" + han(98)
    at = "".join(c + ("……" if i % 10 == 5 else "") for i, c in enumerate(chars))  # 10 "……" in 100 chars
    v = gopher_quality(at, "zh", GQ)
    assert v.signals["gopher_quality.ellipsis_ratio"] == 0.1 and v.passed
    above = at + "……"
    assert gopher_quality(above, "zh", GQ).reason == "gopher_quality:ellipsis_ratio"


def _lines(n: int, words_per_line: int = 6) -> list[str]:
    words = ["the", "of", *filler(n * words_per_line - 2)]
    return [" ".join(words[i * words_per_line : (i + 1) * words_per_line]) for i in range(n)]


def test_bullet_lines_edges() -> None:
    lines = _lines(10)
    at = "\n".join(("- " + s if i < 9 else s) + "." for i, s in enumerate(lines))
    above = "\n".join("• " + s + "." for s in lines)
    assert gopher_quality(at, "en", GQ).signals["gopher_quality.bullet_line_frac"] == 0.9
    assert gopher_quality(at, "en", GQ).passed
    assert gopher_quality(above, "en", GQ).reason == "gopher_quality:bullet_lines"


def test_ellipsis_lines_edges_english_and_chinese() -> None:
    lines = _lines(10)
    at = "\n".join(s + ("..." if i < 3 else ".") for i, s in enumerate(lines))
    above = "\n".join(s + ("..." if i < 4 else ".") for i, s in enumerate(lines))
    assert gopher_quality(at, "en", GQ).passed
    assert gopher_quality(above, "en", GQ).reason == "gopher_quality:ellipsis_lines"
    zh_lines = ["之而" + han(10, 0)] + [han(12, 12 * i) for i in range(1, 10)]
    zh_at = "\n".join(s + ("……" if i < 3 else "。") for i, s in enumerate(zh_lines))
    zh_above = "\n".join(s + ("……" if i < 4 else "。") for i, s in enumerate(zh_lines))
    assert gopher_quality(zh_at, "zh", GQ).passed
    assert gopher_quality(zh_above, "zh", GQ).reason == "gopher_quality:ellipsis_lines"


def test_alpha_words_edges() -> None:
    numbers = [str(100 + 7 * i) for i in range(11)]
    at = " ".join(["the", "of", *filler(38), *numbers[:10]])
    above = " ".join(["the", "of", *filler(37), *numbers])
    assert gopher_quality(at, "en", GQ).signals["gopher_quality.alpha_word_frac"] == 0.8
    assert gopher_quality(at, "en", GQ).passed
    assert gopher_quality(above, "en", GQ).reason == "gopher_quality:alpha_words"


def test_stop_words_english_distinct_and_case_insensitive() -> None:
    assert gopher_quality(en_doc(60, ("The", "the", "OF")), "en", GQ).passed
    v = gopher_quality(en_doc(60, ("the", "the", "the")), "en", GQ)
    assert v.reason == "gopher_quality:stop_words" and v.signals["gopher_quality.stop_words"] == 1


def test_stop_words_chinese_modern_and_classical() -> None:
    assert gopher_quality("之" + han(30) + "而" + han(30, 30) + "。", "zh", GQ).passed
    assert gopher_quality("的" + han(30) + "了" + han(30, 30) + "。", "zh-Hans", GQ).passed
    v = gopher_quality("之" + han(30) + "之" + han(30, 30) + "。", "zh", GQ)
    assert v.reason == "gopher_quality:stop_words" and v.signals["gopher_quality.stop_words"] == 1


def test_stop_words_skipped_for_unknown_language() -> None:
    text = " ".join(filler(80)) + "."
    assert gopher_quality(text, "en", GQ).reason == "gopher_quality:stop_words"
    for lang in (None, "fr"):
        v = gopher_quality(text, lang, GQ)
        assert v.passed
        assert v.signals["gopher_quality.stop_words_checked"] == 0.0
        assert "gopher_quality.stop_words" not in v.signals


# --------------------------------------------------------------------------------------------------
# Gopher repetition


def _dup_blocks(n_unique: int, n_repeat: int, sep: str, chinese: bool) -> str:
    """n_unique distinct blocks interleaved with n_repeat copies of one short block."""
    if chinese:
        unique = [han(20, 20 * i) + "。" for i in range(n_unique)]
        repeated = "好的。"
    else:
        words = filler(8 * n_unique)
        unique = [" ".join(words[8 * i : 8 * i + 8]) + "." for i in range(n_unique)]
        repeated = "Indeed."
    blocks = []
    for i in range(max(n_unique, n_repeat)):
        if i < n_repeat:
            blocks.append(repeated)
        if i < n_unique:
            blocks.append(unique[i])
    return sep.join(blocks)


@pytest.mark.parametrize("chinese", [False, True])
@pytest.mark.parametrize(("sep", "rule"), [("\n\n", "dup_para_frac"), ("\n", "dup_line_frac")])
def test_duplicate_paragraph_and_line_fraction_edges(sep: str, rule: str, chinese: bool) -> None:
    lang = "zh" if chinese else "en"
    at = gopher_repetition(_dup_blocks(6, 4, sep, chinese), lang, GR)  # 3 duplicates of 10 blocks
    assert at.signals[f"gopher_repetition.{rule}"] == 0.3
    assert at.passed, at.reason
    above = gopher_repetition(_dup_blocks(8, 5, sep, chinese), lang, GR)  # 4 of 13
    assert above.reason == f"gopher_repetition:{rule}"


def _char_dup_doc(sep: str, total: int, chinese: bool) -> str:
    """Two copies of a 40-character block among unique blocks, padded to `total` characters."""
    if chinese:
        repeated = han(40, 2000)
        return pad_chinese(sep.join([han(30) + "。", repeated, han(30, 30) + "。", repeated, ""]), total)
    words = filler(12)
    repeated = words_of_length(40, 1)[0]  # one long token: a repeated line, but no repeated word n-gram
    head = sep.join([" ".join(words[:6]) + ".", repeated, " ".join(words[6:]) + ".", repeated, ""])
    out = head + "q" * (total - len(head))
    assert len(out) == total
    return out


@pytest.mark.parametrize("chinese", [False, True])
@pytest.mark.parametrize(("sep", "rule"), [("\n\n", "dup_para_char_frac"), ("\n", "dup_line_char_frac")])
def test_duplicate_character_fraction_edges(sep: str, rule: str, chinese: bool) -> None:
    lang = "zh" if chinese else "en"
    # A repeated Chinese line is also a run of repeated character n-grams, which the n-gram rules catch
    # as well; switch those off to see this rule alone.
    cfg = replace(GR, top_ngram_max_frac={}, dup_ngram_max_frac={}) if chinese else GR
    at = gopher_repetition(_char_dup_doc(sep, 200, chinese), lang, cfg)  # 40 / 200
    assert at.signals[f"gopher_repetition.{rule}"] == 0.2
    assert at.passed, at.reason
    above = gopher_repetition(_char_dup_doc(sep, 199, chinese), lang, cfg)
    assert above.reason == f"gopher_repetition:{rule}"


@pytest.mark.parametrize(("n", "threshold"), sorted(GR.top_ngram_max_frac.items()))
def test_top_ngram_edges_english(n: int, threshold: float) -> None:
    phrase = [w.upper() for w in words_of_length(5, n, seed=11)]  # unlike any filler word
    chars = 5 * n + (n - 1)  # datatrove measures the top n-gram with its spaces
    k, total = exact_total(chars, threshold)
    if k < 3:  # keep the phrase clearly the most frequent n-gram
        k, total = k * 3, total * 3
    seps = filler(k + 1, seed=5)
    words = [w for i in range(k) for w in (seps[i], *phrase)] + [seps[k]]
    at = gopher_repetition(pad_english(words, total), "en", GR)
    assert at.signals[f"gopher_repetition.top_{n}gram_frac"] == threshold
    assert at.passed, at.reason
    above = gopher_repetition(pad_english(words, total - 1), "en", GR)
    assert above.reason == f"gopher_repetition:top_{n}gram"


@pytest.mark.parametrize(("n", "threshold"), sorted(GR.top_ngram_max_frac.items()))
def test_top_ngram_edges_chinese_uses_scaled_character_ngrams(n: int, threshold: float) -> None:
    phrase = han(2 * n, 2500)  # n * cjk_ngram_scale characters
    k, total = exact_total(2 * n, threshold)
    if k < 3:
        k, total = k * 3, total * 3
    text = "".join(han(1, i) + phrase for i in range(k)) + "之而"
    at = gopher_repetition(pad_chinese(text, total), "zh", GR)
    assert at.signals[f"gopher_repetition.top_{n}gram_frac"] == threshold
    assert at.passed, at.reason
    above = gopher_repetition(pad_chinese(text, total - 1), "zh", GR)
    assert above.reason == f"gopher_repetition:top_{n}gram"


# A repeated n-gram is also a repeated shorter n-gram, which the top-n-gram rules (stricter per
# character) usually catch first; they are switched off to put each duplicated-n-gram edge alone.
NO_TOP = replace(GR, top_ngram_max_frac={})


@pytest.mark.parametrize(("n", "threshold"), sorted(GR.dup_ngram_max_frac.items()))
def test_duplicated_ngram_edges_english(n: int, threshold: float) -> None:
    phrase = [w.upper() for w in words_of_length(5, n, seed=13)]
    k, total = exact_total(5 * n, threshold)  # k duplicates of 5n characters (no spaces counted)
    seps = filler(k + 2, seed=6)
    words = [w for i in range(k + 1) for w in (seps[i], *phrase)] + [seps[k + 1]]
    at = gopher_repetition(pad_english(words, total), "en", NO_TOP)
    assert at.signals[f"gopher_repetition.dup_{n}gram_frac"] == threshold
    assert at.passed, at.reason
    above = gopher_repetition(pad_english(words, total - 1), "en", NO_TOP)
    assert above.reason == f"gopher_repetition:dup_{n}gram"


@pytest.mark.parametrize(("n", "threshold"), sorted(GR.dup_ngram_max_frac.items()))
def test_duplicated_ngram_edges_chinese(n: int, threshold: float) -> None:
    phrase = han(2 * n, 2500)
    k, total = exact_total(2 * n, threshold)
    text = "".join(han(1, i) + phrase for i in range(k + 1)) + "之而"
    at = gopher_repetition(pad_chinese(text, total), "zh", NO_TOP)
    assert at.signals[f"gopher_repetition.dup_{n}gram_frac"] == threshold
    assert at.passed, at.reason
    above = gopher_repetition(pad_chinese(text, total - 1), "zh", NO_TOP)
    assert above.reason == f"gopher_repetition:dup_{n}gram"


def test_duplicated_ngrams_are_counted_without_overlap() -> None:
    # "a b c d e" then "b c d e f" style overlaps must not be counted twice: a run of one repeated
    # word is scanned left to right, each duplicate 5-gram skipping its 5 words (datatrove's scan).
    text = " ".join(["w"] * 20)
    v = gopher_repetition(text, "en", GR)
    # positions 0..4 new; 5-gram at 1 equals it -> dup of 5 chars, jump to 6, 11 -> 3 x 5 = 15 chars
    assert v.signals["gopher_repetition.dup_5gram_frac"] == 15 / len(text)


def _reference_ngram_fracs(text: str, cjk: bool, scale: int) -> dict[str, float]:
    """The n-gram signals computed the plain way (datatrove's loops) over the same words."""
    words = tokenize_words(text, cjk)
    sep = "" if cjk else " "
    out = {}
    for n, _ in GR.top_ngram_max_frac.items():
        m = n * scale
        grams = [tuple(words[i : i + m]) for i in range(len(words) - m + 1)]
        if grams:
            gram, count = collections.Counter(grams).most_common(1)[0]
            out[f"top_{n}gram_frac"] = len(sep.join(gram)) * count / len(text)
        else:
            out[f"top_{n}gram_frac"] = 0.0
    for n, _ in GR.dup_ngram_max_frac.items():
        m, seen, chars, i = n * scale, set(), 0, 0
        while i < len(words) - m + 1:
            gram = tuple(words[i : i + m])
            if gram in seen:
                chars, i = chars + len("".join(gram)), i + m
            else:
                seen.add(gram)
                i += 1
        out[f"dup_{n}gram_frac"] = chars / len(text)
    return out


def test_ngram_signals_match_the_plain_definition_on_random_text() -> None:
    rng = random.Random(3)
    english_vocab = filler(12)
    for trial in range(40):
        cjk = trial % 2 == 1
        n_words = rng.choice([3, 30, 400, 1500])  # small documents and ones large enough for numpy
        vocab = (
            list(han(rng.choice([2, 5, 40]))) + ["2024", "GPU"]
            if cjk
            else english_vocab[: rng.choice([2, 5, 12])]
        )
        words = [rng.choice(vocab) for _ in range(n_words)]
        if trial % 4 == 0:  # long exact repeats, lightly mutated
            block = words[: rng.randint(3, 25)]
            words = (block * (n_words // len(block) + 1))[:n_words]
            for _ in range(n_words // 50):
                words[rng.randrange(n_words)] = rng.choice(vocab)
        text = ("" if cjk else " ").join(words) + ("。" if cjk else ".")
        signals = gopher_repetition(text, "zh" if cjk else "en", GR).signals
        for key, expected in _reference_ngram_fracs(text, cjk, 2 if cjk else 1).items():
            assert signals[f"gopher_repetition.{key}"] == pytest.approx(expected, abs=1e-12), (trial, key)


def test_ngram_table_accepts_string_keys() -> None:
    text = _dup_blocks(6, 4, "\n", chinese=False) + " " + " ".join(["w"] * 12)
    as_int = gopher_repetition(text, "en", GR)
    as_str = gopher_repetition(
        text,
        "en",
        replace(
            GR,
            top_ngram_max_frac={str(k): v for k, v in GR.top_ngram_max_frac.items()},
            dup_ngram_max_frac={str(k): v for k, v in GR.dup_ngram_max_frac.items()},
        ),
    )
    assert as_int == as_str


# --------------------------------------------------------------------------------------------------
# C4


def test_c4_removes_boilerplate_lines_and_keeps_the_rest() -> None:
    text = (
        "The museum reopened on Monday after a long renovation.[1]\n"
        "This website uses cookies to improve your experience.\n"
        "Please enable JavaScript to view the comments.\n"
        "[edit]\n"
        "Visitors can see the restored ceiling of the main hall.[citation needed]\n"
        "\n"
        "Read our Privacy Policy and Terms of Use.\n"
        "Tickets are free for children under twelve."
    )
    cleaned, v = c4_clean(text, "en", C4)
    assert cleaned == (
        "The museum reopened on Monday after a long renovation.\n"
        "Visitors can see the restored ceiling of the main hall.\n"
        "\n"
        "Tickets are free for children under twelve."
    )
    assert v.passed
    s = v.signals
    assert (s["c4.removed_policy"], s["c4.removed_javascript"], s["c4.removed_empty"]) == (2, 1, 1)
    assert s["c4.removed_lines"] == 4 and s["c4.lines"] == 7 and s["c4.citations"] == 3
    assert s["c4.sentences"] == 3


def test_c4_removes_chinese_boilerplate() -> None:
    text = (
        "博物馆在周一重新开放，修缮工作持续了两年。\n"
        "本网站使用Cookie来改善您的浏览体验。\n"
        "请启用JavaScript以查看评论。\n"
        "继续浏览即表示您同意我们的隐私政策和服务条款。\n"
        "儿童可以免费参观，周末还有讲解员带领导览。"
    )
    cleaned, v = c4_clean(text, "zh", C4)
    assert cleaned == "博物馆在周一重新开放，修缮工作持续了两年。\n儿童可以免费参观，周末还有讲解员带领导览。"
    assert v.passed and v.signals["c4.removed_lines"] == 3 and v.signals["c4.sentences"] == 2


def test_c4_lorem_ipsum_and_curly_bracket() -> None:
    assert c4_clean(ENGLISH_PROSE + "\nLorem ipsum dolor sit amet.", "en", C4)[1].reason == "c4:lorem_ipsum"
    assert c4_clean(ENGLISH_PROSE + "\nLorem ipsum.", "en", replace(C4, filter_lorem_ipsum=False))[1].passed
    code = ENGLISH_PROSE + "\nThe function returns {a: 1}."
    assert c4_clean(code, "en", C4)[1].passed  # off by default: C4's rule drops all code
    assert c4_clean(code, "en", replace(C4, filter_curly_bracket=True))[1].reason == "c4:curly_bracket"


def test_c4_removed_char_fraction_edges() -> None:
    kept = "Good line."  # 10 characters

    def doc(removed_chars: int) -> str:
        return kept + "\n" + "javascript " + "x" * (removed_chars - 11)

    at_text, at = c4_clean(doc(90), "en", C4)  # 90 / 100
    assert at.signals["c4.removed_char_frac"] == 0.9 and at.passed and at_text == kept
    assert c4_clean(doc(91), "en", C4)[1].reason == "c4:removed_char_frac"


def test_c4_min_sentences_edges_english_and_chinese() -> None:
    cfg = replace(C4, min_sentences=3)
    assert c4_clean("Pi is 3.14 exactly. Is it? Yes!", "en", cfg)[1].passed
    v = c4_clean("Pi is 3.14 exactly. Is it?", "en", cfg)[1]
    assert v.reason == "c4:min_sentences" and v.detail == "value 2 vs threshold 3 (min)"
    assert c4_clean("天下大事，必作于细。天下难事，必作于易！是以圣人终不为大？", "zh", cfg)[1].passed
    assert c4_clean("天下大事，必作于细。天下难事，必作于易！", "zh", cfg)[1].reason == "c4:min_sentences"
    # with the default (1) a document whose lines were all removed also fails on sentences
    assert c4_clean("", "en", C4)[1].reason == "c4:min_sentences"


def test_c4_terminal_punctuation_option_is_cjk_aware() -> None:
    text = "A Heading\nA real sentence here.\nTrailing off...\n他说：“走吧。”\n标题\n我想了想……\n（见《艺文志》。）"
    cleaned, v = c4_clean(text, "zh", replace(C4, filter_no_terminal_punct=True))
    assert cleaned.split("\n") == [
        "A real sentence here.",
        "他说：“走吧。”",
        "我想了想……",
        "（见《艺文志》。）",
    ]
    assert v.signals["c4.removed_no_terminal_punct"] == 3
    assert c4_clean(text, "zh", C4)[0] == text  # off by default (as FineWeb runs C4)


def test_c4_min_words_per_line_counts_chinese_characters() -> None:
    cfg = replace(C4, min_words_per_line=5)
    cleaned, _ = c4_clean(
        "One two three four five.\nOne two three four.\n天下大事。\n天下大事也。", "zh", cfg
    )
    assert cleaned == "One two three four five.\n天下大事也。"
    cleaned, _ = c4_clean("One two three four five.\nOne, two, three -- four.", "en", cfg)
    assert cleaned == "One two three four five."


def test_c4_long_word_rule_is_cjk_aware() -> None:
    long_zh_line = han(1500) + "。"
    cleaned, v = c4_clean("短句也。\n" + long_zh_line, "zh", C4)
    assert cleaned.endswith(long_zh_line) and v.signals["c4.removed_long_word"] == 0
    url_line = "见" + "a" * 1001 + "。"
    assert c4_clean("短句也。\n" + url_line, "zh", C4)[0] == "短句也。"
    assert c4_clean("Fine.\nsee " + "b" * 1000 + " ok", "en", C4)[0].endswith("ok")
    assert c4_clean("Fine.\nsee " + "b" * 1001 + " ok", "en", C4)[0] == "Fine."


# --------------------------------------------------------------------------------------------------
# FineWeb


def _fw_lines(n: int, words_per_line: int = 6) -> list[str]:
    words = ["the", "of", *words_of_length(6, n * words_per_line - 2, seed=21)]
    return [" ".join(words[i * words_per_line : (i + 1) * words_per_line]) for i in range(n)]


def test_fineweb_terminal_punct_edges_english_and_chinese() -> None:
    lines = _fw_lines(100)
    at = "\n".join(s + ("." if i < 12 else "") for i, s in enumerate(lines))
    above = "\n".join(s + ("." if i < 11 else "") for i, s in enumerate(lines))
    assert fineweb_quality(at, "en", FW).signals["fineweb.terminal_punct_line_frac"] == 0.12
    assert fineweb_quality(at, "en", FW).passed
    assert fineweb_quality(above, "en", FW).reason == "fineweb:terminal_punct"
    zh = [han(20, 20 * i) for i in range(100)]
    zh_at = "\n".join(s + ("。" if i < 12 else "") for i, s in enumerate(zh))
    zh_above = "\n".join(s + ("！" if i < 11 else "") for i, s in enumerate(zh))
    assert fineweb_quality(zh_at, "zh", FW).passed
    assert fineweb_quality(zh_above, "zh", FW).reason == "fineweb:terminal_punct"


def test_fineweb_short_line_edges_english() -> None:
    short = [" ".join(ws) + "." for ws in zip(*[iter(words_of_length(5, 4 * 68, seed=31))] * 4, strict=True)]
    assert all(len(s) == 24 for s in short)
    long = [s + "." for s in _fw_lines(33)]
    at = "\n".join(short[:67] + long)
    above = "\n".join(short[:68] + long[:32])
    assert fineweb_quality(at, "en", FW).signals["fineweb.short_line_frac"] == 0.67
    assert fineweb_quality(at, "en", FW).passed
    assert fineweb_quality(above, "en", FW).reason == "fineweb:short_lines"
    # a line of exactly short_line_chars is short, one more character is not
    edge = fineweb_quality("a" * 29 + ".\n" + "b" * 30 + ".", "en", FW)
    assert edge.signals["fineweb.short_line_frac"] == 0.5


def test_fineweb_short_line_length_is_halved_for_chinese() -> None:
    short = [han(14, 14 * i) + "。" for i in range(68)]  # 15 characters: short for CJK
    long = [han(15, 1000 + 15 * i) + "。" for i in range(33)]  # 16 characters: not short
    assert fineweb_quality("\n".join(short[:67] + long), "zh", FW).passed
    assert fineweb_quality("\n".join(short[:68] + long[:32]), "zh", FW).reason == "fineweb:short_lines"
    assert fineweb_quality("\n".join(long), "zh", FW).signals["fineweb.short_line_frac"] == 0.0


def test_fineweb_duplicate_line_chars_edges() -> None:
    repeated = "Same line again here."  # 21 characters
    body = [s + "." for s in _fw_lines(30)]

    def doc(total: int) -> str:
        lines = [repeated, *body, repeated]
        chars = sum(map(len, lines))
        lines[1] = lines[1][:-1] + "x" * (total - chars) + "."
        text = "\n".join(lines)
        assert len(text) - text.count("\n") == total
        return text

    at = fineweb_quality(doc(2100), "en", FW)  # 21 / 2100
    assert at.signals["fineweb.dup_line_char_frac"] == 0.01 and at.passed
    assert fineweb_quality(doc(2099), "en", FW).reason == "fineweb:dup_line_chars"


def test_fineweb_newline_ratio_edges() -> None:
    words = ["the", "of", *words_of_length(12, 28, seed=41)]
    text = "\n".join(" ".join(words[i : i + 3]) + "." for i in range(0, 30, 3))  # 9 newlines, 30 words
    assert fineweb_quality(text, "en", FW).signals["fineweb.newline_word_ratio"] == 0.3
    assert fineweb_quality(text, "en", FW).passed
    assert fineweb_quality(text + "\n", "en", FW).reason == "fineweb:newline_ratio"


def test_fineweb_empty() -> None:
    assert fineweb_quality("", "en", FW).reason == "fineweb:empty"
    assert fineweb_quality(" \n\t\n", None, FW).reason == "fineweb:empty"


# --------------------------------------------------------------------------------------------------
# quality score


def test_quality_score_is_bounded_and_monotone() -> None:
    base = {
        "fineweb.terminal_punct_line_frac": 0.5,
        "gopher_repetition.dup_line_char_frac": 0.1,
        "c4.removed_char_frac": 0.2,
    }
    s = quality_score(base)
    assert s == pytest.approx((0.4 * 0.5 + 0.3 * 0.9 + 0.3 * 0.8) / 1.0)
    assert quality_score({**base, "fineweb.terminal_punct_line_frac": 0.6}) > s
    assert quality_score({**base, "gopher_repetition.dup_line_char_frac": 0.2}) < s
    assert quality_score({**base, "c4.removed_char_frac": 0.3}) < s
    assert quality_score({}) == 0.0
    assert quality_score({"c4.removed_char_frac": 0.25}) == pytest.approx(0.75)  # missing terms left out
    assert quality_score({"fineweb.terminal_punct_line_frac": 7.0, "c4.removed_char_frac": -1.0}) == 1.0


def test_quality_score_prefers_clean_prose_over_boilerplate() -> None:
    def score(text: str) -> float:
        signals = {}
        for v in (
            gopher_repetition(text, "en", GR),
            fineweb_quality(text, "en", FW),
            c4_clean(text, "en", C4)[1],
        ):
            signals.update(v.signals)
        return quality_score(signals)

    noisy = ENGLISH_PROSE + "\nMenu\nMenu\nWe use cookies to track you.\nShare this page\nShare this page"
    assert 0.0 <= score(noisy) < score(ENGLISH_PROSE) <= 1.0


# --------------------------------------------------------------------------------------------------
# real text (skipped without ../shared)


def _chunks(text: str, size: int = 2000) -> list[str]:
    """~size-character documents cut on paragraph boundaries."""
    out, cur, n = [], [], 0
    for para in split_paragraphs(text):
        cur.append(para)
        n += len(para)
        if n >= size:
            out.append("\n\n".join(cur))
            cur, n = [], 0
    return out


def _judge(docs: list[str], lang_of) -> tuple[float, collections.Counter]:
    fails: collections.Counter = collections.Counter()
    passed = 0
    for doc in docs:
        lang = lang_of(doc)
        reasons = [
            v.reason
            for v in (
                gopher_quality(doc, lang, GQ),
                gopher_repetition(doc, lang, GR),
                fineweb_quality(doc, lang, FW),
            )
            if v.reason
        ]
        passed += not reasons
        fails.update(reasons)
    return passed / len(docs), fails


def test_real_chinese_books_mostly_pass() -> None:
    books = SHARED / "zh-classics" / "books"
    if not books.is_dir():
        pytest.skip("../shared/data/zh-classics is not available")
    docs = []
    for path in sorted(books.rglob("*.txt"))[::4]:  # every 4th of 284 books: classical and modern
        with path.open(encoding="utf-8-sig") as f:
            docs.extend(_chunks(f.read(16_000))[1:4])  # skip the title/contents chunk
    assert len(docs) >= 150
    # langid stand-in: a few chunks are English text quoted inside a Chinese book
    rate, fails = _judge(docs, lambda d: "zh" if is_cjk(d, None) else "en")
    print(f"\nzh-classics: {len(docs)} docs, pass rate {rate:.3f}, failing rules {fails.most_common()}")
    assert rate >= 0.9, fails.most_common()
    # no rule may reject Chinese systematically
    assert all(count <= 0.05 * len(docs) for count in fails.values()), fails.most_common()


def test_tinyshakespeare_fails_only_on_repeated_speaker_names() -> None:
    path = SHARED / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip("../shared/data/tinyshakespeare is not available")
    docs = _chunks(path.read_text(encoding="utf-8"))[::3]
    rate, fails = _judge(docs, lambda d: "en")
    print(f"\ntinyshakespeare: {len(docs)} docs, pass rate {rate:.3f}, failing rules {fails.most_common()}")
    # Play text repeats its speaker labels ("First Citizen:") on their own lines, which FineWeb's
    # duplicated-line rule (> 1 % of characters) rejects; the words themselves pass Gopher quality.
    assert fails.most_common(1)[0][0] == "fineweb:dup_line_chars"
    assert fails["gopher_quality:word_count"] == 0 and fails["gopher_quality:stop_words"] == 0
    without_labels = [re.sub(r"(?m)^[A-Z][A-Za-z ]*:\n", "", d) for d in docs]
    rate_without, fails_without = _judge(without_labels, lambda d: "en")
    print(
        f"tinyshakespeare without speaker lines: pass rate {rate_without:.3f}, {fails_without.most_common()}"
    )
    assert rate < 0.5 and rate_without >= 0.9
