"""Shingling: normalisation, word vs CJK character n-grams, short texts."""

import pytest

from pipelines.dedup.shingles import (
    canonical_body,
    is_cjk_char,
    normalize_for_shingles,
    segments,
    shingle_layout,
    shingles,
)


def test_normalisation_nfkc_casefold_punctuation_whitespace():
    assert normalize_for_shingles("  Hello,\tWORLD!!  ｆｕｌｌ－ｗｉｄｔｈ\n") == "hello world full width"
    assert normalize_for_shingles("《天下》，大势。「分久」必合！") == "天下 大势 分久 必合"
    assert normalize_for_shingles("snake_case Straße") == "snake case strasse"
    assert normalize_for_shingles("!!! ... ---") == ""


def test_word_ngrams_of_english():
    got = shingles("The quick brown fox jumps over", ngram=3, cjk_ngram=3)
    assert got == {"the quick brown", "quick brown fox", "brown fox jumps", "fox jumps over"}


def test_punctuation_and_case_do_not_change_shingles():
    a = shingles("To be, or not to be: that is the question.", 3, 3)
    b = shingles("to BE or NOT to be -- that is the question", 3, 3)
    assert a == b


def test_cjk_character_ngrams_ignore_punctuation_and_line_breaks():
    got = shingles("天下大势，\n分久必合。", ngram=5, cjk_ngram=3)
    assert got == {"天下大", "下大势", "大势分", "势分久", "分久必", "久必合"}
    # Re-wrapping Chinese text does not change its shingles.
    assert shingles("天下大势分久必合", 5, 3) == shingles("天下大\n势分久 必合", 5, 3)


def test_short_texts_give_one_shingle_of_the_whole_text():
    assert shingles("Hello world", ngram=5, cjk_ngram=5) == {"hello world"}
    assert shingles("你好", ngram=5, cjk_ngram=5) == {"你好"}
    assert shingles("", 5, 5) == set()
    assert shingles("。，！", 5, 5) == set()
    # Exactly n tokens give exactly one n-gram.
    assert shingles("a b c d e", 5, 5) == {"a b c d e"}
    assert shingles("一二三四五", 5, 5) == {"一二三四五"}


def test_mixed_text_latin_embedded_in_chinese_belongs_to_the_run():
    words, runs = segments("我有3个苹果。Then some English words follow here.")
    assert runs == ["我有3个苹果"]
    assert words == ["then", "some", "english", "words", "follow", "here"]
    words, runs = segments("中文 one two three four five 中文")
    assert runs == ["中文", "中文"]  # more than EMBED_MAX_TOKENS latin tokens split the run
    assert words == ["one", "two", "three", "four", "five"]


def test_one_changed_chinese_character_only_breaks_nearby_shingles():
    base = "子曰学而时习之不亦说乎有朋自远方来不亦乐乎人不知而不愠不亦君子乎"
    edited = base.replace("朋", "友")
    a, b = shingles(base, 5, 5), shingles(edited, 5, 5)
    assert len(a - b) == 5  # exactly the five 5-grams that contain the changed character
    assert len(a & b) == len(a) - 5


def test_cjk_char_check():
    assert is_cjk_char("中") and is_cjk_char("の") and is_cjk_char("カ")
    assert not is_cjk_char("a") and not is_cjk_char("。") and not is_cjk_char("한")


def test_invalid_ngram_rejected():
    with pytest.raises(ValueError):
        shingles("x", 0, 5)


def test_layout_spans_are_the_shingles_and_body_is_canonical():
    text = "Hello, World! 天下大势，分久必合。 one two three four five six 中文"
    words, runs = segments(text)
    layout = shingle_layout(words, runs, 3, 2)
    spans = {layout.body[a:b] for a, b in zip(layout.starts.tolist(), layout.ends.tolist(), strict=True)}
    assert spans == shingles(text, 3, 2)
    assert layout.body == canonical_body(words, runs)
    assert layout.body.split("\n")[0] == " ".join(words) and layout.body.split("\n")[1:] == runs
    # reformatting that does not change words or runs gives the same body
    same = shingle_layout(
        *segments("hello world\n\n天下 大势 分久必合 ONE two three four five six，中文"), 3, 2
    )
    assert same.body == layout.body


def test_layout_of_empty_and_short_inputs():
    empty = shingle_layout([], [], 5, 5)
    assert empty.body == "" and empty.starts.size == 0
    short = shingle_layout(["a", "b"], ["天"], 5, 5)
    assert [short.body[a:b] for a, b in zip(short.starts, short.ends, strict=True)] == ["a b", "天"]
    with pytest.raises(ValueError):
        shingle_layout(["a"], [], 0, 5)
