"""Heuristic quality rules of the cleaning stage: Gopher quality, Gopher repetition, C4 and FineWeb.

Each preset is one pure function of (text, language, config) returning a ``Verdict``: every signal is computed (so a run can
annotate without filtering), ``reason`` names the first failing rule as ``"<preset>:<rule>"`` and
``detail`` says "value X vs threshold Y (min|max)". Thresholds come from the config dataclasses (the
Gopher paper / datatrove defaults, C4 as FineWeb runs it); a threshold set to None disables its rule,
and ``cfg.enabled = False`` keeps the signals but never gives a reason.

CJK text (zh/ja/ko, or unknown language with >= 30 % CJK letters) is measured per character: a
character is a word for word counts, stop words and n-grams (n scaled by ``cjk_ngram_scale``), mean
word length is not judged, short lines are half as long, and sentences end at 。！？… as well.

Every preset takes an optional ``analysis`` (:class:`~pipelines.text.analysis.TextAnalysis` of the same
text and language): the cleaning engine passes one shared analysis per document, so words and lines
are computed once; without it the preset analyses the text itself.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import filterfalse
from typing import Any

import numpy as np

from pipelines.config import C4Config, FineWebConfig, GopherQualityConfig, GopherRepetitionConfig
from pipelines.text.analysis import TextAnalysis
from pipelines.text.stopwords import stop_words_for
from pipelines.text.words import CJK_CHAR_CLASS, count_sentences, ends_with_terminal_punct, tokenize_words

__all__ = [
    "Verdict",
    "gopher_quality",
    "gopher_repetition",
    "c4_clean",
    "fineweb_quality",
    "quality_score",
    "BULLETS",
    "POLICY_PHRASES",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Signals of one preset, the first failing rule (``"<preset>:<rule>"``, None = kept) and why."""

    signals: dict[str, float]
    reason: str | None
    detail: str

    @property
    def passed(self) -> bool:
        return self.reason is None


# (rule, value, threshold or None = rule off, "min" | "max")
_Check = tuple[str, float, float | None, str]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _verdict(preset: str, signals: dict[str, float], checks: Sequence[_Check], enabled: bool) -> Verdict:
    if enabled:
        for rule, value, limit, kind in checks:
            if limit is None:
                continue
            if (value < limit) if kind == "min" else (value > limit):
                detail = f"value {_fmt(value)} vs threshold {_fmt(limit)} ({kind})"
                return Verdict(signals, f"{preset}:{rule}", detail)
    return Verdict(signals, None, "")


def _frac(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _dup_stats(items: Sequence[str]) -> tuple[int, int]:
    """(number, characters) of items equal to an earlier item: every occurrence after the first."""
    unique = set(items)
    return len(items) - len(unique), sum(map(len, items)) - sum(map(len, unique))


def _analysis(text: str, lang: str | None, analysis: TextAnalysis | None) -> TextAnalysis:
    """The caller's shared analysis of (text, lang), or a new one."""
    return analysis if analysis is not None else TextAnalysis(text, lang)


# --------------------------------------------------------------------------------------------------
# Gopher quality

BULLETS: tuple[str, ...] = ("•", "-", "*", "●", "○", "◦", "▪", "■", "‣", "・")
"""Line starts that count as a bullet (Gopher: '•' and '-'; plus common list markers)."""
_ELLIPSIS_LINE_ENDS = ("...", "…", "⋯")
_ELLIPSIS_RE = re.compile(r"\.{3,}|[…⋯]+")  # one ellipsis per run: "……" is one Chinese ellipsis
_LETTER_RE = re.compile(r"[^\W\d_]")


def gopher_quality(
    text: str, lang: str | None, cfg: GopherQualityConfig, analysis: TextAnalysis | None = None
) -> Verdict:
    """Gopher quality rules (Rae et al. 2021, App. A), in datatrove's order.

    word_count: words in [min_words, max_words]; mean_word_length in [min, max] (spaced text only);
    hash_ratio / ellipsis_ratio: '#' and ellipsis runs per word <= max_symbol_word_ratio; bullet_lines:
    share of lines starting with a bullet <= max; ellipsis_lines: share of lines ending in an ellipsis
    <= max; alpha_words: share of words with a letter >= min; stop_words: distinct stop words of the
    language >= min_stop_words (skipped, with ``stop_words_checked = 0``, for a language without a list).
    """
    p = "gopher_quality"
    a = _analysis(text, lang, analysis)
    cjk, words, lines = a.cjk, a.words, a.lines
    n_words = len(words)
    n_lines = len(lines)
    # fully alphabetic words (most, and every CJK character) are tested in C; the rest by regex
    no_letter = sum(1 for w in filterfalse(str.isalpha, words) if not _LETTER_RE.search(w))
    has_ellipsis = "..." in text or "…" in text or "⋯" in text
    signals = {
        f"{p}.cjk": float(cjk),
        f"{p}.word_count": float(n_words),
        f"{p}.mean_word_length": _frac(len("".join(words)), n_words),
        f"{p}.hash_ratio": text.count("#") / max(n_words, 1),
        f"{p}.ellipsis_ratio": (len(_ELLIPSIS_RE.findall(text)) if has_ellipsis else 0) / max(n_words, 1),
        f"{p}.bullet_line_frac": _frac(sum(1 for s in lines if s.startswith(BULLETS)), n_lines),
        f"{p}.ellipsis_line_frac": _frac(sum(1 for s in lines if s.endswith(_ELLIPSIS_LINE_ENDS)), n_lines),
        f"{p}.alpha_word_frac": _frac(n_words - no_letter, n_words),
    }
    stops = stop_words_for(lang)
    signals[f"{p}.stop_words_checked"] = float(stops is not None)
    if stops is not None:
        present = stops.intersection(map(str.lower, words)) if not cjk else stops.intersection(words)
        signals[f"{p}.stop_words"] = float(len(present))
    word_len_min = None if cjk else cfg.min_avg_word_length
    word_len_max = None if cjk else cfg.max_avg_word_length
    s = signals
    checks: list[_Check] = [
        ("word_count", s[f"{p}.word_count"], cfg.min_words, "min"),
        ("word_count", s[f"{p}.word_count"], cfg.max_words, "max"),
        ("mean_word_length", s[f"{p}.mean_word_length"], word_len_min, "min"),
        ("mean_word_length", s[f"{p}.mean_word_length"], word_len_max, "max"),
        ("hash_ratio", s[f"{p}.hash_ratio"], cfg.max_symbol_word_ratio, "max"),
        ("ellipsis_ratio", s[f"{p}.ellipsis_ratio"], cfg.max_symbol_word_ratio, "max"),
        ("bullet_lines", s[f"{p}.bullet_line_frac"], cfg.max_bullet_lines_ratio, "max"),
        ("ellipsis_lines", s[f"{p}.ellipsis_line_frac"], cfg.max_ellipsis_lines_ratio, "max"),
        ("alpha_words", s[f"{p}.alpha_word_frac"], cfg.min_alpha_words_ratio, "min"),
    ]
    if stops is not None:
        checks.append(("stop_words", s[f"{p}.stop_words"], cfg.min_stop_words, "min"))
    return _verdict(p, signals, checks, cfg.enabled)


# --------------------------------------------------------------------------------------------------
# Gopher repetition


def _ngram_thresholds(table: Mapping) -> list[tuple[int, float]]:
    """Config n-gram table with int or str keys ({2: 0.2} or {"2": 0.2}) as sorted (n, threshold)."""
    return sorted((int(n), float(v)) for n, v in table.items())


# One level of n-gram grouping keeps only the positions whose n-gram occurs at least twice: the
# positions (ascending), a group id each (equal id = equal n-gram), whether each is its group's first
# occurrence, and per group its count and first position.
_Level = tuple[Any, Any, Any, list[int], list[int]]
_NUMPY_MIN = 128  # below this many positions a dict beats numpy's per-call overhead


def _unigram_level(ids: np.ndarray) -> _Level:
    """Level n = 1 without sorting: word ids are numbered in order of first appearance."""
    n_words = ids.size
    counts = np.bincount(ids)
    is_new = np.empty(n_words, dtype=bool)
    is_new[0] = True
    np.greater(ids[1:], np.maximum.accumulate(ids)[:-1], out=is_new[1:])
    first_occurrence = np.flatnonzero(is_new)  # of word id g at index g
    repeated = counts >= 2
    keep = repeated[ids]
    first = is_new[keep]
    return (
        np.flatnonzero(keep),
        ids[keep],
        first,
        counts[repeated].tolist(),
        first_occurrence[repeated].tolist(),
    )


def _level_numpy(pos: np.ndarray, key: np.ndarray) -> _Level:
    m = key.size
    if m == 0:
        return pos, pos, np.empty(0, dtype=bool), [], []
    order = np.argsort(key, kind="stable")  # stable: positions stay ascending inside a group
    new = np.empty(m, dtype=bool)
    new[0] = True
    sorted_key = key[order]
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    counts = np.empty(starts.size, dtype=np.int64)
    counts[:-1] = starts[1:] - starts[:-1]
    counts[-1] = m - starts[-1]
    repeated = counts >= 2
    keep, group, first = np.empty(m, dtype=bool), np.empty(m, dtype=np.int64), np.empty(m, dtype=bool)
    keep[order] = np.repeat(repeated, counts)
    group[order] = np.cumsum(new) - 1
    first[order] = new
    first_pos = pos[order[starts[repeated]]]
    return pos[keep], group[keep], first[keep], counts[repeated].tolist(), first_pos.tolist()


def _level_python(pairs: list[tuple[int, int]]) -> _Level:
    buckets: dict[int, list[int]] = {}
    for p, k in pairs:
        bucket = buckets.get(k)
        if bucket is None:
            buckets[k] = [p]
        else:
            bucket.append(p)
    pos, group, first = [], [], []
    for p, k in pairs:
        bucket = buckets[k]
        if len(bucket) > 1:
            pos.append(p)
            group.append(bucket[0])  # the first position names the group and keeps ids small
            first.append(bucket[0] == p)
    repeated = [b for b in buckets.values() if len(b) > 1]
    return pos, group, first, [len(b) for b in repeated], [b[0] for b in repeated]


def _greedy_dup_chars(pos: Any, group: Any, first: Any, cum: list[int], n: int) -> int:
    """Characters in duplicated n-grams, scanning left to right and jumping past each duplicate.

    Same result as datatrove's visit of every position, but only repeated n-grams are looked at:
    an n-gram occurring once can never be found in the seen set, so it cannot change the scan.
    """
    if isinstance(pos, np.ndarray):
        later, pos, group = np.flatnonzero(~first).tolist(), pos.tolist(), group.tolist()
    else:
        later = [j for j, is_first in enumerate(first) if not is_first]
    seen: set[int] = set()
    start = next_pos = chars = 0  # start: first index of pos not yet added to seen
    for j in later:
        k = pos[j]
        if k < next_pos:  # inside a duplicate already counted
            continue
        seen.update(group[bisect_left(pos, next_pos, start, j) : j])
        if group[j] in seen:
            chars += cum[k + n] - cum[k]
            next_pos = k + n
        else:
            seen.add(group[j])
            next_pos = k + 1
        start = j + 1
    return chars


def _word_ids(words: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """(id per word, length per word, id bound, whether ids number words by first appearance)."""
    n_words = len(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    longer = np.flatnonzero(lengths != 1)
    if longer.size * 4 > n_words:  # mostly multi-character words: a dictionary numbers them
        index = {w: i for i, w in enumerate(dict.fromkeys(words))}
        return np.fromiter(map(index.__getitem__, words), np.int64, n_words), lengths, len(index), True
    # mostly single characters (CJK): the code point is the id, read in C from the joined text;
    # the few longer words (Latin words, numbers) get ids above the Unicode range
    starts = np.zeros(n_words, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ids = np.frombuffer("".join(words).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)[starts].astype(
        np.int64
    )
    if longer.size:
        long_words = [words[i] for i in longer.tolist()]
        index = {w: 0x110000 + i for i, w in enumerate(dict.fromkeys(long_words))}
        ids[longer] = np.fromiter(map(index.__getitem__, long_words), np.int64, longer.size)
    return ids, lengths, int(ids.max()) + 1, False


def _ngram_char_stats(
    words: Sequence[str], top_ns: Sequence[int], dup_ns: Sequence[int], spaced: bool
) -> tuple[dict[int, int], dict[int, int]]:
    """Characters of the most frequent n-gram times its count (top_ns) and in duplicated n-grams (dup_ns).

    n-grams are grouped exactly for n = 1, 2, ... from (group of the (n-1)-gram, next word id); only
    positions whose n-gram repeats are carried to n + 1, so the work shrinks fast (numpy sorting for
    large levels, a dict for small ones). A spaced n-gram's length includes its n-1 separating spaces
    for the top rule, as datatrove joins words with " " there and with "" for the duplicate rule.
    """
    top = dict.fromkeys(top_ns, 0)
    dup = dict.fromkeys(dup_ns, 0)
    n_words = len(words)
    max_n = min(max((*top_ns, *dup_ns), default=0), n_words)
    if max_n < 1:
        return top, dup
    ids, lengths, vocab, by_appearance = _word_ids(words)
    cum_arr = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(lengths, out=cum_arr[1:])
    cum = cum_arr.tolist()
    ids_list: list[int] = []
    if by_appearance:
        pos, group, first, counts, first_pos = _unigram_level(ids)
    else:
        pos, group, first, counts, first_pos = _level_numpy(np.arange(n_words), ids)
    for n in range(1, max_n + 1):
        if n > 1 and len(pos) >= _NUMPY_MIN:
            room = pos <= n_words - n
            pos, group = pos[room], group[room]
            pos, group, first, counts, first_pos = _level_numpy(pos, group * vocab + ids[pos + n - 1])
        elif n > 1 and len(pos):
            if isinstance(pos, np.ndarray):
                pos, group, ids_list = pos.tolist(), group.tolist(), ids_list or ids.tolist()
            limit = n_words - n
            pairs = [
                (p, g * vocab + ids_list[p + n - 1]) for p, g in zip(pos, group, strict=True) if p <= limit
            ]
            pos, group, first, counts, first_pos = _level_python(pairs)
        elif n > 1:
            counts = first_pos = []
        if n in top:
            best = max(counts, default=1)
            i = min((fp for c, fp in zip(counts, first_pos, strict=True) if c == best), default=0)
            top[n] = (cum[i + n] - cum[i] + (n - 1 if spaced else 0)) * best  # ties: first seen, as Counter
        if n in dup and len(pos):
            dup[n] = _greedy_dup_chars(pos, group, first, cum, n)
    return top, dup


def gopher_repetition(
    text: str, lang: str | None, cfg: GopherRepetitionConfig, analysis: TextAnalysis | None = None
) -> Verdict:
    """Gopher repetition rules (Rae et al. 2021, Table A1) as datatrove defines them.

    dup_para_frac / dup_line_frac: share of paragraphs / lines equal to an earlier one; the *_char_frac
    variants: their characters over len(text); top_{n}gram: characters of the most frequent word n-gram
    times its count over len(text); dup_{n}gram: characters of n-grams repeating an earlier n-gram
    (non-overlapping scan) over len(text). CJK: n-grams of characters with n * cjk_ngram_scale; rule
    and signal names keep the configured n.
    """
    p = "gopher_repetition"
    a = _analysis(text, lang, analysis)
    cjk, words, lines = a.cjk, a.words, a.lines
    n_chars = len(text)
    paragraphs = a.paragraphs
    dup_paras, dup_para_chars = _dup_stats(paragraphs)
    dup_lines, dup_line_chars = _dup_stats(lines)
    signals = {
        f"{p}.dup_para_frac": _frac(dup_paras, len(paragraphs)),
        f"{p}.dup_para_char_frac": _frac(dup_para_chars, n_chars),
        f"{p}.dup_line_frac": _frac(dup_lines, len(lines)),
        f"{p}.dup_line_char_frac": _frac(dup_line_chars, n_chars),
    }
    checks: list[_Check] = [
        ("dup_para_frac", signals[f"{p}.dup_para_frac"], cfg.max_dup_para_frac, "max"),
        ("dup_para_char_frac", signals[f"{p}.dup_para_char_frac"], cfg.max_dup_para_char_frac, "max"),
        ("dup_line_frac", signals[f"{p}.dup_line_frac"], cfg.max_dup_line_frac, "max"),
        ("dup_line_char_frac", signals[f"{p}.dup_line_char_frac"], cfg.max_dup_line_char_frac, "max"),
    ]
    scale = max(int(cfg.cjk_ngram_scale), 1) if cjk else 1
    top_table = _ngram_thresholds(cfg.top_ngram_max_frac or {})
    dup_table = _ngram_thresholds(cfg.dup_ngram_max_frac or {})
    top, dup = _ngram_char_stats(
        words, [n * scale for n, _ in top_table], [n * scale for n, _ in dup_table], spaced=not cjk
    )
    for kind, table, chars in (("top", top_table, top), ("dup", dup_table, dup)):
        for n, limit in table:
            key = f"{kind}_{n}gram"
            signals[f"{p}.{key}_frac"] = _frac(chars[n * scale], n_chars)
            checks.append((key, signals[f"{p}.{key}_frac"], limit, "max"))
    return _verdict(p, signals, checks, cfg.enabled)


# --------------------------------------------------------------------------------------------------
# C4

POLICY_PHRASES: tuple[str, ...] = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
    "隐私政策", "隱私政策", "隐私权政策", "隱私權政策", "使用条款", "使用條款", "服务条款", "服務條款",
    "用户协议", "用戶協議", "使用cookie", "cookie政策",
)  # fmt: skip
"""Lower-case substrings marking a policy/boilerplate line (C4's list plus Chinese equivalents)."""
_POLICY_RE = re.compile("|".join(map(re.escape, POLICY_PHRASES)))
_CITATION_RE = re.compile(r"\[(?:\d*|edit|citation needed|编辑|編輯|来源请求|來源請求|需要引用)\]")
_C4_LINE_RULES = ("long_word", "empty", "no_terminal_punct", "min_words", "javascript", "policy")


@lru_cache(maxsize=16)
def _long_word_re(max_len: int, cjk: bool) -> re.Pattern[str]:
    # In CJK text a run of characters without spaces is a sentence, not a word: only non-CJK runs count.
    if cjk:
        return re.compile(rf"[^\s{CJK_CHAR_CLASS}]{{{max_len + 1},}}")
    return re.compile(rf"\S{{{max_len + 1},}}")


def _c4_line_rule(line: str, cjk: bool, cfg: C4Config, long_word: re.Pattern[str] | None) -> str | None:
    if long_word is not None and long_word.search(line):
        return "long_word"
    if not line:
        return "empty"
    if cfg.filter_no_terminal_punct and (not ends_with_terminal_punct(line) or line.endswith("...")):
        return "no_terminal_punct"
    if cfg.min_words_per_line > 0 and len(tokenize_words(line, cjk)) < cfg.min_words_per_line:
        return "min_words"
    lower = line.lower()
    if cfg.filter_javascript_lines and "javascript" in lower:
        return "javascript"
    if cfg.filter_policy_lines and _POLICY_RE.search(lower):
        return "policy"
    return None


def c4_clean(
    text: str, lang: str | None, cfg: C4Config, analysis: TextAnalysis | None = None
) -> tuple[str, Verdict]:
    """C4 line cleaning and page rules (TFDS c4_utils / datatrove C4QualityFilter); returns (text, verdict).

    Lines (stripped, citations such as [1] and [edit] removed when remove_citations) are dropped when:
    a word is longer than max_word_length (CJK: a run of non-CJK characters), nothing is left after
    citation removal, filter_no_terminal_punct and the line does not end in terminal punctuation (or
    ends in "..."), it has fewer than min_words_per_line words, it mentions javascript, or it holds a
    policy phrase. Kept lines are joined by newlines, with a blank line wherever the original had a
    paragraph break between them. Page rules, in order: lorem_ipsum ('lorem ipsum' anywhere),
    curly_bracket ('{' anywhere, when enabled), removed_char_frac (characters of removed lines over
    characters of all lines > max_removed_line_frac), min_sentences (sentences in the kept lines,
    ending at . ! ? or 。！？…, < min_sentences).
    """
    p = "c4"
    a = _analysis(text, lang, analysis)
    cjk = a.cjk
    long_word = (
        _long_word_re(cfg.max_word_length, cjk) if cfg.max_word_length and cfg.max_word_length > 0 else None
    )
    removed = dict.fromkeys(_C4_LINE_RULES, 0)
    parts: list[str] = []
    n_lines = total_chars = removed_chars = sentences = citations = 0
    paragraph_break = False
    for raw in text.splitlines():
        original = raw.strip()
        if not original:
            paragraph_break = paragraph_break or bool(parts)
            continue
        n_lines += 1
        total_chars += len(original)
        line = original
        if cfg.remove_citations and "[" in line:
            line, k = _CITATION_RE.subn("", line)
            citations += k
            line = line.strip()
        rule = _c4_line_rule(line, cjk, cfg, long_word)
        if rule is not None:
            removed[rule] += 1
            removed_chars += len(original)
            continue
        if parts:
            parts.append("\n\n" if paragraph_break else "\n")
        parts.append(line)
        paragraph_break = False
        sentences += count_sentences(line)
    lower = a.lower
    signals = {
        f"{p}.lines": float(n_lines),
        f"{p}.removed_lines": float(sum(removed.values())),
        f"{p}.removed_char_frac": _frac(removed_chars, total_chars),
        f"{p}.sentences": float(sentences),
        f"{p}.citations": float(citations),
        f"{p}.lorem_ipsum": float("lorem ipsum" in lower),
        f"{p}.curly_bracket": float("{" in text),
    }
    signals.update({f"{p}.removed_{rule}": float(k) for rule, k in removed.items()})
    checks: list[_Check] = [
        ("lorem_ipsum", signals[f"{p}.lorem_ipsum"], 0.0 if cfg.filter_lorem_ipsum else None, "max"),
        ("curly_bracket", signals[f"{p}.curly_bracket"], 0.0 if cfg.filter_curly_bracket else None, "max"),
        ("removed_char_frac", signals[f"{p}.removed_char_frac"], cfg.max_removed_line_frac, "max"),
        ("min_sentences", signals[f"{p}.sentences"], cfg.min_sentences, "min"),
    ]
    if not cfg.enabled:
        return text, _verdict(p, signals, checks, enabled=False)
    return "".join(parts), _verdict(p, signals, checks, enabled=True)


# --------------------------------------------------------------------------------------------------
# FineWeb


def fineweb_quality(
    text: str, lang: str | None, cfg: FineWebConfig, analysis: TextAnalysis | None = None
) -> Verdict:
    """FineWeb's own rules (datatrove FineWebQualityFilter).

    empty: no non-blank line; terminal_punct: share of lines ending in terminal punctuation (ASCII or
    CJK) < min; short_lines: share of lines of at most short_line_chars characters (CJK: half) > max;
    dup_line_chars: characters of lines repeating an earlier line over non-newline characters > max;
    newline_ratio: newlines per word > max.
    """
    p = "fineweb"
    a = _analysis(text, lang, analysis)
    cjk, words, lines = a.cjk, a.words, a.lines
    n_lines = len(lines)
    short_len = cfg.short_line_chars / 2 if cjk else cfg.short_line_chars
    n_newlines = text.count("\n")
    n_words = len(words)
    signals = {
        f"{p}.lines": float(n_lines),
        f"{p}.terminal_punct_line_frac": _frac(sum(map(ends_with_terminal_punct, lines)), n_lines),
        f"{p}.short_line_frac": _frac(sum(1 for s in lines if len(s) <= short_len), n_lines),
        f"{p}.dup_line_char_frac": _frac(_dup_stats(lines)[1], len(text) - n_newlines),
        f"{p}.newline_word_ratio": n_newlines / max(n_words, 1),
    }
    s = signals
    checks: list[_Check] = [
        ("empty", s[f"{p}.lines"], 1.0, "min"),
        ("terminal_punct", s[f"{p}.terminal_punct_line_frac"], cfg.min_terminal_punct_line_frac, "min"),
        ("short_lines", s[f"{p}.short_line_frac"], cfg.max_short_line_frac, "max"),
        ("dup_line_chars", s[f"{p}.dup_line_char_frac"], cfg.max_dup_line_char_frac, "max"),
        ("newline_ratio", s[f"{p}.newline_word_ratio"], cfg.max_newline_word_ratio, "max"),
    ]
    return _verdict(p, signals, checks, cfg.enabled)


# --------------------------------------------------------------------------------------------------
# combined score

_SCORE_TERMS: tuple[tuple[str, float, bool], ...] = (
    ("fineweb.terminal_punct_line_frac", 0.4, False),
    ("gopher_repetition.dup_line_char_frac", 0.3, True),
    ("c4.removed_char_frac", 0.3, True),
)


def quality_score(signals: Mapping[str, float]) -> float:
    """A document quality score in [0, 1] for choosing the surviving duplicate; higher is better.

    score = sum(w_i * t_i) / sum(w_i) over the terms present in signals, with
      t = fineweb.terminal_punct_line_frac                (w = 0.4; prose ends its lines in punctuation)
      t = 1 - gopher_repetition.dup_line_char_frac        (w = 0.3; fewer repeated lines)
      t = 1 - c4.removed_char_frac                        (w = 0.3; less boilerplate removed)
    each clamped to [0, 1]; 0.0 when none is present. Monotone in every signal it reads.
    """
    total = weight = 0.0
    for key, w, inverted in _SCORE_TERMS:
        value = signals.get(key)
        if value is None or value != value:  # absent or NaN
            continue
        term = min(max(float(value), 0.0), 1.0)
        total += w * (1.0 - term if inverted else term)
        weight += w
    return total / weight if weight else 0.0
