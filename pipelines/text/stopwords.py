"""Stop words per language for the Gopher "enough stop words" rule.

English is the Gopher paper's set of eight. CJK text is tokenised one character per word, so the
Chinese, Japanese and Korean sets are single characters: function words and particles that occur in
almost any running text. The Chinese set covers modern Mandarin and classical (wenyan) function
words, in simplified and traditional forms, so that pre-modern books are not judged by modern usage.
"""

from __future__ import annotations

from pipelines.text.words import base_lang

ENGLISH_GOPHER: frozenset[str] = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})

_ZH_MODERN = "的了是在不和有也这我你他她它们就都着或与及但把被让从对很还又要会能说那吗呢吧啊没个一上"
_ZH_MODERN_TRADITIONAL = "這們與對還會說嗎讓從沒個"
_ZH_CLASSICAL = "之乎者矣焉哉其以于於而则則乃曰所为為兮亦夫若何故且然盖蓋耳已諸诸"
CHINESE: frozenset[str] = frozenset(_ZH_MODERN + _ZH_MODERN_TRADITIONAL + _ZH_CLASSICAL)

JAPANESE: frozenset[str] = frozenset("のにはをたがでてとしれさもなかるいう")
KOREAN: frozenset[str] = frozenset("이가은는을를의에와과도로고다하서")

_BY_LANG: dict[str, frozenset[str]] = {"en": ENGLISH_GOPHER, "zh": CHINESE, "ja": JAPANESE, "ko": KOREAN}


def stop_words_for(lang: str | None) -> frozenset[str] | None:
    """Stop words of a language code ('en', 'zh-Hant', 'cmn', ...), or None when the language has none."""
    base = base_lang(lang)
    return _BY_LANG.get(base) if base else None
