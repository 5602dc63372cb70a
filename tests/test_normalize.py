"""normalize_text and normalize_for_hash on hand-made English and Chinese cases."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.config import NormalizeConfig
from pipelines.text.normalize import normalize_for_hash, normalize_text

CFG = NormalizeConfig()
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def norm(text: str, **overrides: object) -> str:
    return normalize_text(text, replace(CFG, **overrides) if overrides else CFG)


# --- mojibake --------------------------------------------------------------------------------------


def test_latin1_mojibake_is_repaired() -> None:
    assert norm("cafÃ©") == "café"
    assert norm("Ã…ngstrÃ¶m") == "Ångström"


def test_chinese_mojibake_is_repaired() -> None:
    original = "数据清洗"
    garbled = original.encode("utf-8").decode("latin-1")
    assert garbled != original
    assert norm(f"标题：{garbled}") == f"标题：{original}"


def test_double_encoded_quote_is_repaired() -> None:
    assert norm("ItÃ¢â‚¬â„¢s") == "It\u2019s"


def test_mojibake_kept_when_fix_disabled() -> None:
    assert norm("cafÃ©", fix_mojibake=False) == "cafÃ©"


def test_ftfy_does_not_rewrite_ordinary_text() -> None:
    text = "\u201cQuotes\u201d, &amp; entities, the \ufb01 ligature, ＡＢＣ１２３ and 中文——引号“好”……"
    assert norm(text) == text


# --- Unicode form ----------------------------------------------------------------------------------


def test_nfc_composes() -> None:
    out = norm("Cafe\u0301 re\u0301sume\u0301")
    assert out == "Café résumé"
    assert len(out) == len("Café résumé")


def test_unicode_form_options() -> None:
    assert norm("e\u0301", unicode_form="") == "e\u0301"
    assert norm("ＡＢＣ ﬁ", unicode_form="NFKC") == "ABC fi"
    assert norm("ＡＢＣ ﬁ") == "ＡＢＣ ﬁ"  # NFC keeps full-width and ligatures


# --- invisible characters --------------------------------------------------------------------------


def test_controls_removed_but_tab_and_newline_kept() -> None:
    assert norm("a\x00b\x07c\x1fd\x7fe\tf\ng") == "abcde\tf\ng"


def test_ansi_escapes_removed_from_ascii_text() -> None:
    assert norm("\x1b[1;31mred\x1b[0m text") == "red text"


def test_format_characters_removed() -> None:
    text = "zero\u200bwidth soft\u00adhyphen word\u2060joiner bom\ufeffinside \u202eevil\u202c"
    assert norm(text) == "zerowidth softhyphen wordjoiner bominside evil"


def test_controls_kept_when_strip_disabled() -> None:
    assert norm("a\x00b\u200bc", strip_control=False) == "a\x00b\u200bc"


def test_zwj_kept_inside_emoji_sequence_only() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert norm(f"{family} \u200dstray\u200d end") == f"{family} stray end"
    assert norm("می\u200cخواهم") == "می\u200cخواهم"  # Persian ZWNJ between letters


def test_leading_bom_stripped() -> None:
    assert norm("\ufeff\ufeffHello") == "Hello"
    assert norm("\ufeff第一回", strip_control=False) == "第一回"


def test_lone_surrogate_never_survives() -> None:
    # ftfy marks it as a decoding error; without ftfy the control stripping removes it
    assert norm("bad\ud800surrogate") == "bad\ufffdsurrogate"
    assert norm("bad\ud800surrogate", fix_mojibake=False) == "badsurrogate"
    norm("\udc80x").encode("utf-8")


# --- line endings and whitespace -------------------------------------------------------------------


def test_line_endings() -> None:
    assert norm("a\r\nb\rc\u2028d\u2029e\x0bf\x0cg") == "a\nb\nc\nd\ne\nf\ng"


def test_horizontal_whitespace_collapsed_including_nbsp() -> None:
    assert norm("a  b\u00a0\u00a0c\u2003\u2009d \u00a0 e") == "a b c d e"


def test_ideographic_space_kept_as_indent() -> None:
    text = "\u3000\u3000第一段。\n\u3000\u3000第二段，有\u3000\u3000两个全角空格。"
    assert norm(text) == text.lstrip("\u3000")


def test_trailing_whitespace_stripped_per_line() -> None:
    assert norm("one  \ntwo\t\nthree\u3000\u3000\nfour\u00a0") == "one\ntwo\nthree\nfour"


@pytest.mark.parametrize(("max_blank", "expected"), [(0, "a\nb"), (1, "a\n\nb"), (2, "a\n\n\nb")])
def test_blank_lines_collapsed(max_blank: int, expected: str) -> None:
    assert norm("a\n\n \n\t\n\u3000\n\nb", max_blank_lines=max_blank) == expected


def test_single_blank_line_kept() -> None:
    assert norm("a\n\nb") == "a\n\nb"


def test_document_stripped() -> None:
    assert norm("\n\n  hello world  \n\n") == "hello world"
    assert norm("") == ""
    assert norm(" \n\t\u3000 ") == ""


def test_chinese_text_untouched() -> None:
    text = "子曰：「學而時習之，不亦說乎？」\n有朋自遠方來，不亦樂乎！（《論語·學而》）１２３"
    assert norm(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "cafÃ©\r\n\r\n\r\nx  y",
        "\ufeff\u3000\u3000段落。  \n\n\n\n下一段\u200b",
        "a\u00a0\tb \u200d c",
        "plain ascii",
    ],
)
def test_idempotent(text: str) -> None:
    once = norm(text)
    assert norm(once) == once


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not available")
def test_real_chinese_books() -> None:
    books = sorted((SHARED_DATA / "zh-classics" / "books").rglob("*.txt"))
    if not books:
        pytest.skip("zh-classics books not present")
    for path in random.Random(3).sample(books, 8):
        raw = path.read_bytes()[:200_000].decode("utf-8", errors="replace")
        out = norm(raw)
        assert "\r" not in out and "\ufeff" not in out and "\n\n\n" not in out
        assert not any(line != line.rstrip() for line in out.split("\n"))
        # Han characters are never touched: same multiset of CJK ideographs before and after.
        han = lambda s: sorted(c for c in s if "\u4e00" <= c <= "\u9fff")  # noqa: E731
        assert han(out) == han(raw)
        # paragraph indents made of U+3000 survive (except on the first line, stripped with the document)
        indented = sum(line.startswith("\u3000\u3000") for line in raw.splitlines()[1:])
        assert sum(line.startswith("\u3000\u3000") for line in out.split("\n")) >= indented - 1


# --- normalize_for_hash ----------------------------------------------------------------------------


def test_hash_key_ignores_case_punctuation_and_spacing() -> None:
    a = normalize_for_hash("Hello,   World!\n\nIt's  fine.")
    b = normalize_for_hash("hello world -- its FINE")
    assert a == b == "hello world its fine"


def test_hash_key_folds_full_width_and_cjk_punctuation() -> None:
    assert normalize_for_hash("你好，世界！《书》") == normalize_for_hash("你好,世界!书") == "你好世界书"
    assert normalize_for_hash("ＡＢＣ１２３") == "abc123"


def test_hash_key_drops_symbols_and_format_characters() -> None:
    assert normalize_for_hash("price: $5 © 2024 \u200b→ ok ✓") == "price 5 2024 ok"


def test_hash_key_options() -> None:
    assert normalize_for_hash("Hello,  World!", lowercase=False, strip_punct=False) == "Hello, World!"
    assert normalize_for_hash("Hello,  World!", lowercase=True, strip_punct=False) == "hello, world!"
    assert normalize_for_hash("Hello,  World!", lowercase=False, strip_punct=True) == "Hello World"


def test_hash_key_keeps_combining_marks_and_digits() -> None:
    assert normalize_for_hash("हिन्दी 42") == "हिन्दी 42"
    assert normalize_for_hash("Cafe\u0301") == normalize_for_hash("CAFÉ")
