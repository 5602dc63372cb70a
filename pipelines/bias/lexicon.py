"""Word lists of the bias stage and the compiled matchers built from them.

The lists live in ``pipelines/data/lexicons`` (see its README.md) and are read with
``importlib.resources``; every loader is cached, so a worker parses and compiles each list once.

Matching rules (shared by toxicity and representation counting):

* text is lower-cased with ``str.lower`` and entries are stored lower-case;
* spaced languages match whole words or phrases: a match may not touch a letter or digit of a non-CJK
  script on either side, so ``ass`` never matches inside "assessment";
* zh, ja and th match as substrings, except entries written wholly in ASCII, which match as words;
* at each position the longest entry wins and matches do not overlap;
* a match inside an allowlisted span does not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib.resources import files
from typing import Any, NamedTuple

import yaml

SUBSTRING_LANGS = frozenset({"zh", "ja", "th"})
FLAGGED_LANGS = ("en", "zh", "ja", "ko", "de", "fr", "es", "ru")
IDENTITY_LANGS = ("en", "zh")
AXES = ("gender", "religion", "nationality_ethnicity", "sexual_orientation", "disability", "age")
PRONOUN_CLASSES = ("male", "female", "neutral")
NOUN_CLASSES = ("male", "female")

# CJK ideographs (incl. extensions and compatibility forms), kana, bopomofo and radicals.
_CJK_CHARS = (
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
# A letter or digit of a non-CJK script: what a whole-word match may not touch.
_WORD_CHAR = f"[^\\W{_CJK_CHARS}]"
_CJK_CHAR_RE = re.compile(f"[{_CJK_CHARS}]")
# CJK characters plus CJK / full-width punctuation, replaced by spaces before counting words.
_CJK_OR_PUNCT_RE = re.compile(f"[{_CJK_CHARS}\u3000-\u303f\uff00-\uffef]+")


class LexiconError(ValueError):
    """A word-list file is malformed; the message names the file and the entry."""


class Match(NamedTuple):
    start: int
    end: int
    term: str


def normalize_lang(lang: str | None) -> str:
    """'zh-Hant' -> 'zh', 'EN_us' -> 'en', None -> ''."""
    if not lang:
        return ""
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]


def count_units(text: str) -> int:
    """Words plus CJK characters: each CJK character is one unit, other text counts whitespace words."""
    n_cjk = len(_CJK_CHAR_RE.findall(text))
    if n_cjk:
        text = _CJK_OR_PUNCT_RE.sub(" ", text)
    return n_cjk + len(text.split())


def has_cjk(text: str) -> bool:
    """True if the text contains a CJK character."""
    return _CJK_CHAR_RE.search(text) is not None


# --------------------------------------------------------------------------------------------------
# reading the data files


def _resource_text(*parts: str) -> str:
    return files("pipelines").joinpath("data", "lexicons", *parts).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load(_resource_text(name))
    if not isinstance(data, dict):
        raise LexiconError(f"{name}: expected a mapping at the top level")
    return data


def _strings(value: Any, where: str) -> list[str]:
    """A YAML list of entries, each checked to be a non-empty string, lower-cased and stripped."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise LexiconError(f"{where}: expected a list, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise LexiconError(f"{where}: entry {item!r} is not a non-empty string; quote it in the YAML")
        out.append(item.strip().lower())
    return out


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@lru_cache(maxsize=None)
def ldnoobw_terms(lang: str) -> tuple[str, ...]:
    """The unmodified LDNOOBW list of ``lang`` (lower-cased, de-duplicated, file order); () if none."""
    lang = normalize_lang(lang)
    if lang not in FLAGGED_LANGS:
        return ()
    lines = _resource_text("ldnoobw", lang).splitlines()
    return _dedupe(line.strip().lower() for line in lines if line.strip())


@lru_cache(maxsize=None)
def category_weights() -> dict[str, float]:
    """Category name -> weight, from categories.yaml."""
    weights = _yaml("categories.yaml").get("weights") or {}
    out = {}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise LexiconError(f"categories.yaml: weight of {name!r} must be a number >= 0, got {value!r}")
        out[str(name)] = float(value)
    default = _yaml("categories.yaml").get("default_category")
    if default not in out:
        raise LexiconError(f"categories.yaml: default_category {default!r} has no weight")
    return out


@lru_cache(maxsize=None)
def term_categories(lang: str) -> dict[str, tuple[str, float]]:
    """Every LDNOOBW entry of ``lang`` -> (category, weight); disabled entries have weight 0."""
    lang = normalize_lang(lang)
    data = _yaml("categories.yaml")
    weights = category_weights()
    default = data["default_category"]
    out = {term: (default, weights[default]) for term in ldnoobw_terms(lang)}
    for category, terms in (data.get(lang) or {}).items():
        if category not in weights:
            raise LexiconError(f"categories.yaml: {lang}.{category} is not a category with a weight")
        for term in _strings(terms, f"categories.yaml: {lang}.{category}"):
            if term not in out:
                raise LexiconError(f"categories.yaml: {lang}.{category}: {term!r} is not in ldnoobw/{lang}")
            out[term] = (category, weights[category])
    return out


@lru_cache(maxsize=None)
def allowlist(kind: str, lang: str) -> tuple[str, ...]:
    """Allowlisted spans for ``kind`` ('flagged' or 'identity') and ``lang``."""
    section = _yaml("allowlist.yaml").get(kind) or {}
    return _dedupe(_strings(section.get(normalize_lang(lang)), f"allowlist.yaml: {kind}.{lang}"))


@lru_cache(maxsize=None)
def identity_terms(lang: str) -> dict[str, tuple[str, ...]]:
    """Axis -> identity terms of ``lang`` (as listed, without plural forms)."""
    section = _yaml("identity_terms.yaml").get(normalize_lang(lang)) or {}
    unknown = sorted(set(section) - set(AXES))
    if unknown:
        raise LexiconError(f"identity_terms.yaml: {lang}: unknown axes {unknown}; use {AXES}")
    return {axis: _dedupe(_strings(section.get(axis), f"identity_terms.yaml: {lang}.{axis}")) for axis in AXES}


@lru_cache(maxsize=None)
def gendered_terms(lang: str) -> dict[str, tuple[str, ...]]:
    """'pronoun.<class>' and 'noun.<class>' -> terms of ``lang`` (as listed)."""
    section = _yaml("gendered.yaml").get(normalize_lang(lang)) or {}
    out = {}
    for group, classes in (("pronouns", PRONOUN_CLASSES), ("nouns", NOUN_CLASSES)):
        entries = section.get(group) or {}
        for cls in classes:
            key = f"{group[:-1]}.{cls}"
            out[key] = _dedupe(_strings(entries.get(cls), f"gendered.yaml: {lang}.{group}.{cls}"))
    return out


@lru_cache(maxsize=None)
def cda_pairs() -> tuple[dict[str, str], dict[str, str]]:
    """English gender-swap maps (male -> female, female -> male) from cda_pairs_en.tsv."""
    m2f: dict[str, str] = {}
    f2m: dict[str, str] = {}
    for n, line in enumerate(_resource_text("cda_pairs_en.tsv").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.startswith("male\t"):
            continue
        cols = [c.strip() for c in line.split("\t")]
        direction = cols[2] if len(cols) == 3 else "both"
        if len(cols) not in (2, 3) or direction not in ("both", "m2f", "f2m"):
            raise LexiconError(f"cda_pairs_en.tsv line {n}: expected male<TAB>female[<TAB>both|m2f|f2m]")
        male, female = cols[0].lower(), cols[1].lower()
        if direction in ("both", "m2f"):
            if male in m2f:
                raise LexiconError(f"cda_pairs_en.tsv line {n}: {male!r} already maps to {m2f[male]!r}")
            m2f[male] = female
        if direction in ("both", "f2m"):
            if female in f2m:
                raise LexiconError(f"cda_pairs_en.tsv line {n}: {female!r} already maps to {f2m[female]!r}")
            f2m[female] = male
    return m2f, f2m


def english_plurals(term: str) -> list[str]:
    """Regular plural forms of an English noun or phrase (its last word), built by rule."""
    if term.endswith(("s", "x", "z", "ch", "sh")):
        forms = [term + "es"]
    elif term.endswith("y") and len(term) > 1 and term[-2] not in "aeiou":
        forms = [term[:-1] + "ies"]
    elif term.endswith("o"):
        forms = [term + "s", term + "es"]
    else:
        forms = [term + "s"]
    if term.endswith("man"):
        forms.append(term[:-3] + "men")
    return forms


# --------------------------------------------------------------------------------------------------
# matchers


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation over ``words``, shaped as a trie so that it tries the longest entry first."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        if "" in node:  # a word ends here: the longer continuations are optional (greedy, so tried first)
            return "(?:" + "|".join(alts) + ")?"
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return build(trie)


class TermMatcher:
    """Finds entries in lower-cased text; ``info[term]`` is the value given for each entry."""

    def __init__(
        self, bounded: Mapping[str, Any], substring: Mapping[str, Any], allowed: Iterable[str] = ()
    ) -> None:
        self.info: dict[str, Any] = {**substring, **bounded}
        parts = []
        if bounded:
            parts.append(f"(?<!{_WORD_CHAR})(?:{_trie_pattern(bounded)})(?!{_WORD_CHAR})")
        if substring:
            parts.append(_trie_pattern(substring))
        self.pattern = re.compile("|".join(parts)) if parts else None
        # For each entry, the allowlisted spans containing it and the entry's offsets inside them.
        allowed = [a for a in dict.fromkeys(allowed) if a]
        self._allowed: dict[str, tuple[tuple[str, int], ...]] = {}
        for term in self.info:
            spans = []
            for span in allowed:
                at = span.find(term)
                while at >= 0:
                    spans.append((span, at))
                    at = span.find(term, at + 1)
            if spans:
                self._allowed[term] = tuple(spans)

    def is_allowed(self, lowered: str, start: int, term: str) -> bool:
        """True if the match of ``term`` at ``start`` lies inside an allowlisted span."""
        for span, offset in self._allowed.get(term, ()):
            begin = start - offset
            if begin >= 0 and lowered.startswith(span, begin):
                return True
        return False

    def find(self, lowered: str) -> list[Match]:
        """Non-overlapping, longest-first matches in ``lowered`` (already lower-cased), allowlist applied."""
        if self.pattern is None:
            return []
        out = []
        allowed = self._allowed
        for m in self.pattern.finditer(lowered):
            term = m.group()
            if term in allowed and self.is_allowed(lowered, m.start(), term):
                continue
            out.append(Match(m.start(), m.end(), term))
        return out


def matcher_langs(lang: str | None) -> tuple[str, ...]:
    """Lists consulted for a document in ``lang``: its own (if shipped) plus English."""
    lang = normalize_lang(lang)
    return ("en",) if lang in ("", "en") else (lang, "en")


def _is_ascii(term: str) -> bool:
    return term.isascii()


def _split_by_matching(lang: str, entries: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if lang not in SUBSTRING_LANGS:
        return dict(entries), {}
    bounded = {t: v for t, v in entries.items() if _is_ascii(t)}
    substring = {t: v for t, v in entries.items() if not _is_ascii(t)}
    return bounded, substring


@lru_cache(maxsize=None)
def flagged_matcher(lang: str | None) -> TermMatcher:
    """Matcher of enabled LDNOOBW entries for ``lang`` (plus English); info = (category, weight)."""
    bounded: dict[str, Any] = {}
    substring: dict[str, Any] = {}
    allowed: list[str] = []
    for code in matcher_langs(lang):
        enabled = {t: cw for t, cw in term_categories(code).items() if cw[1] > 0}
        b, s = _split_by_matching(code, enabled)
        for t, v in b.items():
            bounded.setdefault(t, v)
        for t, v in s.items():
            substring.setdefault(t, v)
        allowed.extend(allowlist("flagged", code))
    return TermMatcher(bounded, substring, allowed)


@lru_cache(maxsize=None)
def identity_matcher(lang: str | None) -> TermMatcher:
    """Matcher of identity terms, gendered pronouns and nouns; info = tuple of labels.

    Labels are 'axis.<axis>', 'pronoun.<class>' and 'noun.<class>'. English identity terms and nouns
    also match their regular plurals.
    """
    bounded: dict[str, tuple[str, ...]] = {}
    substring: dict[str, tuple[str, ...]] = {}
    allowed: list[str] = []

    def add(code: str, term: str, label: str) -> None:
        forms = [term]
        if code not in SUBSTRING_LANGS and not label.startswith("pronoun."):
            forms += english_plurals(term) if code == "en" else []
        target = bounded if code not in SUBSTRING_LANGS or _is_ascii(term) else substring
        for form in forms:
            labels = target.get(form, ())
            if label not in labels:
                target[form] = (*labels, label)

    for code in matcher_langs(lang):
        if code not in IDENTITY_LANGS:
            continue
        for axis, terms in identity_terms(code).items():
            for term in terms:
                add(code, term, f"axis.{axis}")
        for key, terms in gendered_terms(code).items():
            for term in terms:
                add(code, term, key)
        allowed.extend(allowlist("identity", code))
    return TermMatcher(bounded, substring, allowed)
