"""Language-aware words, lines, paragraphs and sentences for the heuristic quality rules.

Spaced languages are split on whitespace with surrounding punctuation stripped. CJK text has no
spaces between words, so every Han, Kana and Hangul character counts as one word; runs of other
characters inside CJK text (Latin words, numbers) are split as spaced text. All scanning is done by
compiled regular expressions, never by a Python loop over characters.
"""

from __future__ import annotations

import re
import unicodedata

# Han (incl. extensions and compatibility ideographs, 々〆〇), Kana and Hangul.
_CJK_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3041, 0x309F),  # Hiragana
    (0x30A1, 0x30FF),  # Katakana
    (0x3131, 0x318E),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xD7B0, 0xD7FF),  # Hangul Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
    (0x30000, 0x323AF),  # CJK extensions G-H
)
# Outside the BMP only whole symbol blocks count as punctuation: a regex character class tests
# non-BMP ranges one by one, so the scattered marks of historic scripts are left out for speed.
_SMP_SYMBOL_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x1D000, 0x1D24F),  # Byzantine and Western musical symbols
    (0x1F000, 0x1FBFF),  # tiles, cards, enclosed alphanumerics, emoji, pictographs, arrows, legacy computing
)


def _is_punct_or_symbol(cp: int) -> bool:
    return unicodedata.category(chr(cp))[0] in "PS"


def _ranges_to_class(ranges: list[tuple[int, int]]) -> str:
    parts = []
    for lo, hi in ranges:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


def _collect_ranges(codepoints: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for cp in codepoints:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


def _build_classes() -> tuple[str, str]:
    cjk_ranges: list[tuple[int, int]] = []
    for lo, hi in _CJK_BLOCKS:
        if hi < 0x10000:  # drop the few punctuation marks inside the BMP blocks (e.g. katakana middle dot)
            cjk_ranges.extend(
                _collect_ranges([cp for cp in range(lo, hi + 1) if not _is_punct_or_symbol(cp)])
            )
        else:
            cjk_ranges.append((lo, hi))
    punct = _collect_ranges([cp for cp in range(0x10000) if _is_punct_or_symbol(cp)])
    return _ranges_to_class(cjk_ranges), _ranges_to_class(punct + list(_SMP_SYMBOL_BLOCKS))


_CJK, _PUNCT = _build_classes()
CJK_CHAR_CLASS: str = _CJK
"""The CJK characters as the body of a regex character class, for building patterns elsewhere."""
PUNCT_CHAR_CLASS: str = _PUNCT
"""Punctuation and symbols (Unicode P*, S* in the BMP; emoji and musical blocks) as a class body."""

_CJK_CHAR_RE = re.compile(f"[{_CJK}]")
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
# A word: a maximal run of non-space, non-punctuation characters, possibly joined by inner punctuation
# ("don't", "e.g", "3.14", "state-of-the-art"). This equals "split on whitespace, strip surrounding
# punctuation, drop what is left empty" in one compiled pass.
_SPACED_WORD_RE = re.compile(rf"[^\s{_PUNCT}]+(?:[{_PUNCT}]+[^\s{_PUNCT}]+)*")
_CJK_WORD_RE = re.compile(rf"[{_CJK}]|[^\s{_PUNCT}{_CJK}]+(?:[{_PUNCT}]+[^\s{_PUNCT}{_CJK}]+)*")
_BLANK_LINE_RE = re.compile(r"\n\s*\n")

TERMINAL_PUNCT: tuple[str, ...] = (
    ".", "!", "?", '"', "'", "”", "’",  # ASCII and curly quotes closing a sentence
    "。", "｡", "．", "！", "？", "…", "⋯", "」", "』", "＂", "＇",  # CJK full-width, ellipsis, corner brackets
)  # fmt: skip
"""Line endings that count as the end of a sentence (C4 / FineWeb terminal punctuation, CJK-aware)."""
CLOSING_BRACKETS = ")）]】〕"
"""Closing brackets that may follow the terminal punctuation of a sentence."""

# A sentence ends at a CJK full stop / exclamation / question mark / ellipsis, or at ASCII . ! ? that
# is followed by whitespace or the end of the text; closing quotes and brackets stay with the sentence.
_SENTENCE_END_RE = re.compile(r"(?:[。｡．！？]+|[…⋯]+|(?:[.!?]+(?=[\"'”’」』)）]*(?:\s|$))))[\"'”’」』)）]*")
_WORD_CHAR_RE = re.compile(r"\w")

_CJK_LANGS = {"zh", "ja", "ko"}
_LANG_ALIASES = {
    "zho": "zh", "chi": "zh", "cmn": "zh", "yue": "zh", "wuu": "zh", "lzh": "zh", "gan": "zh",
    "hak": "zh", "nan": "zh", "cdo": "zh", "jpn": "ja", "kor": "ko", "eng": "en",
}  # fmt: skip
CJK_DOC_THRESHOLD = 0.3
"""Share of CJK characters among letters above which a document of unknown language is CJK."""


def base_lang(lang: str | None) -> str | None:
    """Primary language subtag, lower-cased, with Chinese varieties folded into 'zh' ('zh-Hant' -> 'zh')."""
    if not lang:
        return None
    primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    return _LANG_ALIASES.get(primary, primary) or None


def is_cjk_char(ch: str) -> bool:
    """True for one Han, Kana or Hangul character (CJK punctuation is not a CJK character)."""
    return len(ch) == 1 and _CJK_CHAR_RE.match(ch) is not None


def count_cjk_chars(text: str) -> int:
    """Number of Han, Kana and Hangul characters in text."""
    return len(text) - len(_CJK_RUN_RE.sub("", text))


def cjk_fraction(text: str) -> float:
    """Share of CJK characters among the letters of text (0.0 when it has no letter)."""
    n_cjk = count_cjk_chars(text)
    if not n_cjk:
        return 0.0
    letters = sum(map(str.isalpha, text))  # C-level iteration; Han, Kana and Hangul are letters
    return min(n_cjk / letters, 1.0) if letters else 0.0


def is_cjk(text: str, lang: str | None) -> bool:
    """Whether text is segmented by characters: lang is zh/ja/ko, or lang is unknown and CJK dominates."""
    base = base_lang(lang)
    if base is not None:
        return base in _CJK_LANGS
    n_cjk = count_cjk_chars(text)
    if n_cjk >= CJK_DOC_THRESHOLD * len(text) > 0:  # letters <= len(text): no need to count them
        return True
    return n_cjk > 0 and cjk_fraction(text) >= CJK_DOC_THRESHOLD


def tokenize_words(text: str, cjk: bool) -> list[str]:
    """Words of text: whitespace-split with surrounding punctuation stripped; with cjk, each CJK char is a word."""
    return (_CJK_WORD_RE if cjk else _SPACED_WORD_RE).findall(text)


def split_lines(text: str) -> list[str]:
    """Non-blank lines of text, stripped of surrounding whitespace."""
    return [s for line in text.splitlines() if (s := line.strip())]


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of text (separated by one or more blank lines), stripped; empty ones dropped."""
    return [s for p in _BLANK_LINE_RE.split(text) if (s := p.strip())]


def ends_with_terminal_punct(line: str) -> bool:
    """Whether the line ends like a sentence, in ASCII or CJK punctuation.

    Trailing whitespace and closing brackets are ignored, so "(see the note.)" and the Chinese
    annotation style "（《艺文志》。）" end a sentence, while "(see the note)" does not.
    """
    line = line.rstrip()
    return line.endswith(TERMINAL_PUNCT) or line.rstrip(CLOSING_BRACKETS).endswith(TERMINAL_PUNCT)


def count_sentences(text: str) -> int:
    """Sentences in text: pieces between sentence-ending marks that contain a word character.

    CJK marks (。！？…) always end a sentence; ASCII . ! ? only before whitespace or the end, so
    "3.14" and "e.g.x" do not split. A trailing fragment without a final mark counts as a sentence.
    """
    return sum(1 for piece in _SENTENCE_END_RE.split(text) if _WORD_CHAR_RE.search(piece))
