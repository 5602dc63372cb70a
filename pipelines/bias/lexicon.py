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

import hashlib
import re
from collections.abc import Iterable, Mapping
from functools import cache
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
_WORD_CHAR_RE = re.compile(_WORD_CHAR)
_CJK_CHAR_RE = re.compile(f"[{_CJK_CHARS}]")
_CJK_RUN_RE = re.compile(f"[{_CJK_CHARS}]+")
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
    if text.isascii():
        return len(text.split())
    n_cjk = sum(map(len, _CJK_RUN_RE.findall(text)))
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


@cache
def data_version() -> str:
    """Short hash of every word-list file (names and bytes), for stage fingerprints: editing a list
    changes scores, so it must change the fingerprint of every output computed from it."""
    h = hashlib.sha256()

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            name = f"{prefix}/{child.name}"
            if child.is_dir():
                walk(child, name)
            else:
                h.update(name.encode() + b"\0" + child.read_bytes() + b"\0")

    walk(files("pipelines").joinpath("data", "lexicons"), "")
    return h.hexdigest()[:16]


@cache
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


@cache
def ldnoobw_terms(lang: str) -> tuple[str, ...]:
    """The unmodified LDNOOBW list of ``lang`` (lower-cased, de-duplicated, file order); () if none."""
    lang = normalize_lang(lang)
    if lang not in FLAGGED_LANGS:
        return ()
    lines = _resource_text("ldnoobw", lang).splitlines()
    return _dedupe(line.strip().lower() for line in lines if line.strip())


@cache
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


@cache
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


@cache
def allowlist(kind: str, lang: str) -> tuple[str, ...]:
    """Allowlisted spans for ``kind`` ('flagged' or 'identity') and ``lang``."""
    section = _yaml("allowlist.yaml").get(kind) or {}
    return _dedupe(_strings(section.get(normalize_lang(lang)), f"allowlist.yaml: {kind}.{lang}"))


@cache
def identity_terms(lang: str) -> dict[str, tuple[str, ...]]:
    """Axis -> identity terms of ``lang`` (as listed, without plural forms)."""
    section = _yaml("identity_terms.yaml").get(normalize_lang(lang)) or {}
    unknown = sorted(set(section) - set(AXES))
    if unknown:
        raise LexiconError(f"identity_terms.yaml: {lang}: unknown axes {unknown}; use {AXES}")
    return {
        axis: _dedupe(_strings(section.get(axis), f"identity_terms.yaml: {lang}.{axis}")) for axis in AXES
    }


@cache
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


@cache
def cda_pairs() -> tuple[dict[str, str], dict[str, str]]:
    """English gender-swap maps (male -> female, female -> male) from cda_pairs_en.tsv."""
    m2f: dict[str, str] = {}
    f2m: dict[str, str] = {}
    for n, line in enumerate(_resource_text("cda_pairs_en.tsv").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.strip() == "male\tfemale\tdirection":
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


def _trie_tree(words: Iterable[str]) -> dict[str, Any]:
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return trie


def _trie_body(node: dict[str, Any]) -> str:
    alts = [re.escape(ch) + _trie_body(child) for ch, child in sorted(node.items()) if ch]
    if not alts:
        return ""
    if "" in node:  # a word ends here: the longer continuations are optional (greedy, so tried first)
        return "(?:" + "|".join(alts) + ")?"
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation over ``words``, shaped as a trie so that it tries the longest entry first."""
    return _trie_body(_trie_tree(words))


def _bounded_pattern(words: Iterable[str], cjk_text: bool) -> str:
    """Whole-word alternation. For CJK text the boundary check follows the first character, so the
    pattern starts with a literal and the regex engine can skip ahead to candidate characters; for other
    text checking the boundary first is cheaper (most positions are inside words)."""
    if not cjk_text:
        return f"(?<!{_WORD_CHAR})(?:{_trie_pattern(words)})(?!{_WORD_CHAR})"
    trie = _trie_tree(words)
    heads = [re.escape(ch) + f"(?<!{_WORD_CHAR}.)" + _trie_body(child) for ch, child in sorted(trie.items())]
    return "(?:" + "|".join(heads) + f")(?!{_WORD_CHAR})"


def _compile(bounded: Iterable[str], substring: Iterable[str], cjk_text: bool) -> list[re.Pattern[str]]:
    bounded, substring = list(bounded), list(substring)
    patterns = []
    if bounded:
        patterns.append(re.compile(_bounded_pattern(bounded, cjk_text)))
    if substring:
        patterns.append(re.compile(_trie_pattern(substring)))
    return patterns


def _finditer(patterns: list[re.Pattern[str]], lowered: str) -> Iterable[tuple[int, int, str]]:
    """Matches of one or two patterns; with two, their matches are merged without overlaps."""
    if len(patterns) == 1:
        return ((m.start(), m.end(), m.group()) for m in patterns[0].finditer(lowered))
    found = sorted(
        ((m.start(), m.end(), m.group()) for p in patterns for m in p.finditer(lowered)),
        key=lambda x: (x[0], -x[1]),
    )
    out, last_end = [], -1
    for hit in found:
        if hit[0] >= last_end:
            out.append(hit)
            last_end = hit[1]
    return out


def _bounded_at(text: str, start: int, end: int) -> bool:
    """True if text[start:end] touches no letter or digit of a non-CJK script."""
    before = start > 0 and _WORD_CHAR_RE.match(text, start - 1) is not None
    return not before and _WORD_CHAR_RE.match(text, end) is None


class TermMatcher:
    """Finds the entries of one list in lower-cased text; ``info[term]`` is the value of each entry."""

    def __init__(
        self,
        bounded: Mapping[str, Any],
        substring: Mapping[str, Any],
        allowed: Iterable[str] = (),
        cjk_text: bool = False,
    ) -> None:
        self.info: dict[str, Any] = {**substring, **bounded}
        self.bounded = frozenset(bounded)
        self.substring = frozenset(substring)
        self.patterns = _compile(bounded, substring, cjk_text)
        # For each entry, the allowlisted spans containing it and the entry's offsets inside them.
        allowed = [a for a in dict.fromkeys(allowed) if a]
        self._allowed: dict[str, tuple[tuple[str, int], ...]] = {}
        for term in self.info:
            spans = []
            for span in allowed:
                at = span.find(term)
                while at >= 0:
                    if term not in self.bounded or _bounded_at(span, at, at + len(term)):
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

    def find(self, lowered: str, *, allowlist: bool = True) -> list[Match]:
        """Non-overlapping, longest-first matches in ``lowered`` (already lower-cased)."""
        allowed = self._allowed if allowlist else {}
        return [
            Match(start, end, term)
            for start, end, term in _finditer(self.patterns, lowered)
            if not (term in allowed and self.is_allowed(lowered, start, term))
        ]


class Scan(NamedTuple):
    """Flagged and identity matches of one document, from ``DocumentMatcher.scan``."""

    lowered: str
    flagged: list[Match]
    identity: list[Match]


class DocumentMatcher:
    """Flagged terms and identity terms found in one regex pass.

    The pass runs over the union of both lists (longest entry first, no overlaps); each union entry
    knows which flagged and which identity entries it contains (itself included: "gay sex" holds the
    flagged "gay sex" and the identity "gay"), and those are reported, each checked against its own
    allowlist. So a flagged term that contains an identity term counts for both; where a flagged and an
    identity term overlap without one containing the other, the longer (then the earlier) wins.
    """

    def __init__(self, flagged: TermMatcher, identity: TermMatcher, cjk_text: bool) -> None:
        self.flagged = flagged
        self.identity = identity
        terms = set(flagged.info) | set(identity.info)
        bounded = [t for t in terms if t in flagged.bounded or t in identity.bounded]
        substring = [t for t in terms if t not in flagged.bounded and t not in identity.bounded]
        self.patterns = _compile(bounded, substring, cjk_text)
        # union entry -> ((is_flagged, offset, entry), ...) of list entries inside it
        self._parts: dict[str, tuple[tuple[bool, int, str], ...]] = {}
        for term in terms:
            parts = [(True, m.start, m.term) for m in flagged.find(term, allowlist=False)]
            parts += [(False, m.start, m.term) for m in identity.find(term, allowlist=False)]
            self._parts[term] = tuple(parts)

    def scan(self, lowered: str) -> Scan:
        flagged: list[Match] = []
        identity: list[Match] = []
        f_allowed, i_allowed = self.flagged._allowed, self.identity._allowed
        for start, _, term in _finditer(self.patterns, lowered):
            for is_flagged, offset, sub in self._parts[term]:
                at = start + offset
                if is_flagged:
                    if not (sub in f_allowed and self.flagged.is_allowed(lowered, at, sub)):
                        flagged.append(Match(at, at + len(sub), sub))
                elif not (sub in i_allowed and self.identity.is_allowed(lowered, at, sub)):
                    identity.append(Match(at, at + len(sub), sub))
        return Scan(lowered, flagged, identity)


def matcher_langs(lang: str | None) -> tuple[str, ...]:
    """Lists consulted for a document in ``lang``: its own (if shipped) plus English."""
    lang = _matcher_key(lang)
    return ("en",) if lang in ("", "en") else (lang, "en")


def _matcher_key(lang: str | None) -> str:
    """Normalised language with a shipped list, else '' (English lists only); the matcher cache key."""
    lang = normalize_lang(lang)
    return lang if lang in FLAGGED_LANGS else ""


def _is_bounded(lang: str, term: str) -> bool:
    return lang not in SUBSTRING_LANGS or term.isascii()


def flagged_matcher(lang: str | None) -> TermMatcher:
    """Matcher of enabled LDNOOBW entries for ``lang`` (plus English); info = (category, weight)."""
    return _flagged_matcher(_matcher_key(lang))


@cache
def _flagged_matcher(lang: str) -> TermMatcher:
    bounded: dict[str, Any] = {}
    substring: dict[str, Any] = {}
    allowed: list[str] = []
    for code in matcher_langs(lang):
        for term, cw in term_categories(code).items():
            if cw[1] > 0:
                (bounded if _is_bounded(code, term) else substring).setdefault(term, cw)
        allowed.extend(allowlist("flagged", code))
    return TermMatcher(bounded, substring, allowed, cjk_text=lang in SUBSTRING_LANGS)


def identity_matcher(lang: str | None) -> TermMatcher:
    """Matcher of identity terms, gendered pronouns and nouns; info = tuple of labels.

    Labels are 'axis.<axis>', 'pronoun.<class>' and 'noun.<class>'. English identity terms and nouns
    also match their regular plurals.
    """
    return _identity_matcher(_matcher_key(lang))


@cache
def _identity_matcher(lang: str) -> TermMatcher:
    bounded: dict[str, tuple[str, ...]] = {}
    substring: dict[str, tuple[str, ...]] = {}
    allowed: list[str] = []

    def add(code: str, term: str, label: str) -> None:
        forms = [term]
        if code == "en" and not label.startswith("pronoun."):
            forms += english_plurals(term)
        target = bounded if _is_bounded(code, term) else substring
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
    return TermMatcher(bounded, substring, allowed, cjk_text=lang in SUBSTRING_LANGS)


def document_matcher(lang: str | None) -> DocumentMatcher:
    """One-pass matcher of flagged and identity terms for documents in ``lang``."""
    return _document_matcher(_matcher_key(lang))


@cache
def _document_matcher(lang: str) -> DocumentMatcher:
    return DocumentMatcher(_flagged_matcher(lang), _identity_matcher(lang), cjk_text=lang in SUBSTRING_LANGS)
