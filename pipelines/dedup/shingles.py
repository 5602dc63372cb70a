"""Shingling for near-duplicate detection: word n-grams for space-delimited text, character
n-grams for CJK runs.

Normalisation (``normalize_for_shingles``): NFKC, casefold, every punctuation or symbol character
(Unicode ``P*``/``S*``, CJK punctuation such as 。、「」《》 included, and ``_``) becomes a space,
whitespace runs collapse to one space.

Segmentation (``segments``): the normalised text is split into CJK runs (Han, kana, bopomofo;
whitespace between CJK characters is ignored, so re-wrapped Chinese lines compare equal) and
words (everything else, split on whitespace). Up to ``EMBED_MAX_TOKENS`` non-CJK tokens that sit
between two CJK runs ("我有3个苹果", "使用 Python 编程") belong to the run. Hangul is treated as
space-delimited: Korean separates words with spaces.

Shingles (``shingles``): word ``ngram``-grams over the words (joined by one space) and character
``cjk_ngram``-grams inside each CJK run; a word sequence or CJK run shorter than its n gives one
shingle holding all of it. Empty or punctuation-only text gives the empty set.
"""

from __future__ import annotations

import re
import unicodedata

# Han (incl. radicals, compatibility and extension blocks), kana, bopomofo, iteration marks.
_CJK_RANGES = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
)
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_PUNCT_OR_SYMBOL = re.compile(r"[^\w\s]|_")
_TOKEN = re.compile(rf"([{_CJK_RANGES}]+)|([^\s{_CJK_RANGES}]+)")

EMBED_MAX_TOKENS = 3
"""At most this many non-CJK tokens between two CJK runs are absorbed into the run."""


def is_cjk_char(ch: str) -> bool:
    """True for a Han, kana or bopomofo character (not Hangul, not CJK punctuation)."""
    return bool(_CJK_CHAR.match(ch))


def _unpunctuated(text: str) -> str:
    return _PUNCT_OR_SYMBOL.sub(" ", unicodedata.normalize("NFKC", text).casefold())


def normalize_for_shingles(text: str) -> str:
    """NFKC, casefold, punctuation/symbols to spaces, whitespace collapsed, stripped."""
    return " ".join(_unpunctuated(text).split())


def segments(text: str) -> tuple[list[str], list[str]]:
    """(words, cjk_runs) of the normalised ``text``; see the module docstring for the rules."""
    norm = _unpunctuated(text)
    if not _CJK_CHAR.search(norm):
        return norm.split(), []
    words: list[str] = []
    runs: list[str] = []
    run: list[str] = []  # pieces of the CJK run being built
    pending: list[str] = []  # non-CJK tokens seen since the last CJK token of ``run``
    for cjk, other in _TOKEN.findall(norm):
        if cjk:
            if run and len(pending) <= EMBED_MAX_TOKENS:
                run.extend(pending)
            else:
                if run:
                    runs.append("".join(run))
                    run = []
                words.extend(pending)
            pending = []
            run.append(cjk)
        elif run:
            pending.append(other)
        else:
            words.append(other)
    if run:
        runs.append("".join(run))
    words.extend(pending)
    return words, runs


def _word_ngrams(words: list[str], n: int) -> set[str]:
    """``n``-grams of ``words`` joined by one space, sliced out of the joined text."""
    if len(words) < n:
        return {" ".join(words)} if words else set()
    joined = " ".join(words)
    starts = [0]
    for w in words[:-1]:
        starts.append(starts[-1] + len(w) + 1)
    ends = [st + len(w) for st, w in zip(starts, words, strict=True)]
    return {joined[a:b] for a, b in zip(starts[: len(words) - n + 1], ends[n - 1 :], strict=True)}


def shingles(text: str, ngram: int = 5, cjk_ngram: int = 5) -> set[str]:
    """The shingle set of ``text``: word ``ngram``-grams plus character ``cjk_ngram``-grams of CJK runs."""
    if ngram < 1 or cjk_ngram < 1:
        raise ValueError(f"n-gram sizes must be >= 1, got ngram={ngram}, cjk_ngram={cjk_ngram}")
    words, runs = segments(text)
    out = _word_ngrams(words, ngram)
    for run in runs:
        if len(run) >= cjk_ngram:
            out.update([run[i : i + cjk_ngram] for i in range(len(run) - cjk_ngram + 1)])
        else:
            out.add(run)
    return out
