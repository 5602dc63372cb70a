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
shingle holding all of it. Empty or punctuation-only text gives the empty set. ``shingle_layout``
gives the same shingles as spans of one canonical string, so they can be hashed without building
one Python string per shingle (``minhash.MinHasher.signatures_of_layouts``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import numpy as np

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

_NO_SPANS = np.zeros(0, dtype=np.int64)


class ShingleLayout(NamedTuple):
    """A document's canonical text and its shingles as ``body[starts[i]:ends[i]]``."""

    body: str
    starts: np.ndarray
    ends: np.ndarray


def is_cjk_char(ch: str) -> bool:
    """True for a Han, kana or bopomofo character (not Hangul, not CJK punctuation)."""
    return bool(_CJK_CHAR.match(ch))


def _unpunctuated(text: str) -> str:
    # ASCII is NFKC-stable and its casefold is lower(): skip the Unicode passes for it
    folded = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT_OR_SYMBOL.sub(" ", folded)


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


def canonical_body(words: list[str], runs: list[str]) -> str:
    """Words joined by one space, then each CJK run after a newline (determines ``(words, runs)``)."""
    return " ".join(words) + "".join("\n" + run for run in runs)


def shingle_layout(words: list[str], runs: list[str], ngram: int = 5, cjk_ngram: int = 5) -> ShingleLayout:
    """The shingles of ``(words, runs)`` as ``[start, end)`` spans of one string.

    The string (``body``) is the words joined by one space, then each CJK run preceded by a newline;
    it determines ``(words, runs)`` uniquely, so it is also the canonical form hashed by exact dedup.
    Spans: word ``ngram``-grams (all the words when there are fewer), character ``cjk_ngram``-grams of
    each run (the whole run when it is shorter). The same shingle may appear more than once.
    """
    if ngram < 1 or cjk_ngram < 1:
        raise ValueError(f"n-gram sizes must be >= 1, got ngram={ngram}, cjk_ngram={cjk_ngram}")
    joined = " ".join(words)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    if words:
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        word_end = np.cumsum(lens + 1) - 1
        word_start = word_end - lens
        if len(words) < ngram:
            starts.append(np.zeros(1, dtype=np.int64))
            ends.append(word_end[-1:])
        else:
            starts.append(word_start[: len(words) - ngram + 1])
            ends.append(word_end[ngram - 1 :])
    offset = len(joined)
    for run in runs:
        offset += 1  # the newline before the run
        count = max(len(run) - cjk_ngram + 1, 1)
        first = np.arange(offset, offset + count, dtype=np.int64)
        starts.append(first)
        ends.append(first + min(cjk_ngram, len(run)))
        offset += len(run)
    body = canonical_body(words, runs)
    if not starts:
        return ShingleLayout(body, _NO_SPANS, _NO_SPANS)
    return ShingleLayout(body, np.concatenate(starts), np.concatenate(ends))


def shingles(text: str, ngram: int = 5, cjk_ngram: int = 5) -> set[str]:
    """The shingle set of ``text``: word ``ngram``-grams plus character ``cjk_ngram``-grams of CJK runs."""
    words, runs = segments(text)
    layout = shingle_layout(words, runs, ngram, cjk_ngram)
    body = layout.body
    return {body[a:b] for a, b in zip(layout.starts.tolist(), layout.ends.tolist(), strict=True)}
