"""The per-document text analysis that every cleaning rule shares.

A :class:`TextAnalysis` is made once per (text, language) by the cleaning engine and handed to each
rule in turn; each view (CJK flag, words, lines, paragraphs, lower-cased text) is computed on first
use and then reused, so the presets never tokenise the same text twice. A rule that rewrites the text
gets a fresh analysis for the rules after it. Pure: no I/O, no global state.
"""

from __future__ import annotations

from functools import cached_property

from pipelines.text.words import is_cjk, split_lines, split_paragraphs, tokenize_words

__all__ = ["TextAnalysis"]


class TextAnalysis:
    """Lazily computed views of ``text`` in language ``lang`` (None = not identified).

    The lists are shared between rules: read them, never mutate them.
    """

    def __init__(self, text: str, lang: str | None = None, lang_score: float = 0.0) -> None:
        self.text = text
        self.lang = lang
        self.lang_score = lang_score

    def __repr__(self) -> str:
        return f"TextAnalysis({self.text[:40]!r}..., lang={self.lang!r})"

    @cached_property
    def cjk(self) -> bool:
        """Whether the text is measured per character (zh/ja/ko, or >= 30 % CJK letters when unknown)."""
        return is_cjk(self.text, self.lang)

    @cached_property
    def words(self) -> list[str]:
        """Words (CJK: one per Han/Kana/Hangul character)."""
        return tokenize_words(self.text, self.cjk)

    @cached_property
    def lines(self) -> list[str]:
        """Non-blank lines, stripped."""
        return split_lines(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        """Paragraphs (separated by blank lines), stripped."""
        return split_paragraphs(self.text)

    @cached_property
    def lower(self) -> str:
        """The text lower-cased."""
        return self.text.lower()
