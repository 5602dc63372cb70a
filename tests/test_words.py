"""Tests for pipelines.text.words: CJK detection, word/line/paragraph splitting, sentence ends."""

from __future__ import annotations

import random
import unicodedata

import pytest

from pipelines.text.stopwords import CHINESE, ENGLISH_GOPHER, stop_words_for
from pipelines.text.words import (
    CJK_DOC_THRESHOLD,
    TERMINAL_PUNCT,
    base_lang,
    cjk_fraction,
    count_cjk_chars,
    count_sentences,
    ends_with_terminal_punct,
    is_cjk,
    is_cjk_char,
    split_lines,
    split_paragraphs,
    tokenize_words,
)


@pytest.mark.parametrize("ch", ["中", "國", "の", "カ", "ー", "한", "々", "〇", "𠀀", "ｶ"])
def test_cjk_chars(ch: str) -> None:
    assert is_cjk_char(ch)


@pytest.mark.parametrize("ch", ["a", "Z", "1", "。", "、", "・", "「", "！", "Ａ", "é", " ", "中文"])
def test_not_cjk_chars(ch: str) -> None:
    assert not is_cjk_char(ch)


def test_cjk_fraction_counts_letters_only() -> None:
    assert cjk_fraction("中文ab") == 0.5
    assert cjk_fraction("中文，。123 ab!") == 0.5  # punctuation, digits and spaces are not letters
    assert cjk_fraction("") == 0.0
    assert cjk_fraction("12345 !!") == 0.0
    assert cjk_fraction("ひらがなとカタカナと한국어") == 1.0
    assert count_cjk_chars("我用Python写代码。") == 5


def test_is_cjk_uses_language_when_known() -> None:
    english = "The quick brown fox jumps over the lazy dog."
    chinese = "天下大事，必作于细。"
    for lang in ("zh", "zh-Hant", "zh_CN", "cmn", "yue", "ja", "ko-KR"):
        assert is_cjk(english, lang)
    assert not is_cjk(chinese, "en")
    assert is_cjk(chinese, None) and is_cjk(chinese, "")
    assert not is_cjk(english, None)


def test_is_cjk_threshold_edge_for_unknown_language() -> None:
    at = "中" * 30 + "a" * 70
    below = "中" * 29 + "a" * 71
    assert cjk_fraction(at) == CJK_DOC_THRESHOLD == 0.3
    assert is_cjk(at, None)
    assert not is_cjk(below, None)
    # spaces and punctuation do not dilute the letter share
    assert is_cjk(" ".join("中" * 3 + "a" * 7) + " ...!!!", None)


def test_base_lang() -> None:
    assert base_lang("zh-Hant-TW") == "zh"
    assert base_lang("EN_us") == "en"
    assert base_lang("jpn") == "ja"
    assert base_lang(None) is None and base_lang("") is None


def test_tokenize_spaced_strips_surrounding_punctuation() -> None:
    text = 'Hello, world! It\'s state-of-the-art... "quoted" (x) -- 3.14 #tag ## ... e.g.'
    assert tokenize_words(text, cjk=False) == [
        "Hello", "world", "It's", "state-of-the-art", "quoted", "x", "3.14", "tag", "e.g",
    ]  # fmt: skip
    assert tokenize_words("  \n\t ", cjk=False) == []
    assert tokenize_words("—— ... !!! 😀", cjk=False) == []


def _reference_spaced(text: str) -> list[str]:
    def strip(word: str) -> str:
        start, end = 0, len(word)
        while start < end and unicodedata.category(word[start])[0] in "PS":
            start += 1
        while end > start and unicodedata.category(word[end - 1])[0] in "PS":
            end -= 1
        return word[start:end]

    return [s for w in text.split() if (s := strip(w))]


def test_tokenize_spaced_equals_split_and_strip_on_random_text() -> None:
    alphabet = "abcXYZé09'-.,!?\"()#…。，“”「」—  \n\t😀¥+"
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert tokenize_words(text, cjk=False) == _reference_spaced(text), text


def test_tokenize_cjk_one_word_per_character() -> None:
    text = "我用Python写代码，“很好”！2023年。テスト、한국어 입니다 state-of-the-art."
    assert tokenize_words(text, cjk=True) == [
        "我", "用", "Python", "写", "代", "码", "很", "好", "2023", "年", "テ", "ス", "ト",
        "한", "국", "어", "입", "니", "다", "state-of-the-art",
    ]  # fmt: skip
    # spaced mode keeps a CJK run as one token
    assert tokenize_words("我用Python写代码。", cjk=False) == ["我用Python写代码"]


def test_split_lines_and_paragraphs() -> None:
    text = "  first line \n\n\tsecond\r\nthird  \n \n\n fourth\n"
    assert split_lines(text) == ["first line", "second", "third", "fourth"]
    assert split_paragraphs(text) == ["first line", "second\r\nthird", "fourth"]
    assert split_lines("") == [] and split_paragraphs("\n\n \n") == []


def test_terminal_punct_covers_ascii_and_cjk() -> None:
    for mark in (".", "!", "?", '"', "。", "！", "？", "…", "」", "』", "”"):
        assert mark in TERMINAL_PUNCT
    for line in (
        "He left.",
        "Really?  ",
        "他走了。",
        "“走吧！”",
        "「好。」",
        "他想了想……",
        "(see the note.)",
        "（《艺文志》。）",
    ):
        assert ends_with_terminal_punct(line), line
    for line in ("A heading", "他说：", "(see the note)", "列表，", ""):
        assert not ends_with_terminal_punct(line), line


def test_count_sentences_ascii_and_cjk() -> None:
    assert count_sentences("Pi is 3.14 today. Is it? Yes! And a fragment") == 4
    assert count_sentences("子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？") == 2
    assert count_sentences("他说：“走吧。”然后离开了。") == 2
    assert count_sentences("等等……再说吧") == 2
    assert count_sentences("。。。 ... !!!") == 0
    assert count_sentences("") == 0


def test_stop_word_lists() -> None:
    assert {"the", "be", "to", "of", "and", "that", "have", "with"} == ENGLISH_GOPHER
    assert set("的了是在不和有也这我之而其以于者曰乎矣") <= CHINESE
    assert all(len(w) == 1 for w in CHINESE)  # CJK words are single characters
    assert stop_words_for("zh-Hant") is CHINESE and stop_words_for("en-GB") is ENGLISH_GOPHER
    assert stop_words_for("fr") is None and stop_words_for(None) is None
