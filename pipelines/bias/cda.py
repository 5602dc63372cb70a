"""Counterfactual data augmentation (CDA) for English: swap gendered words (Lu et al. 2018).

``gender_swap`` replaces every word of the pair list ``cda_pairs_en.tsv`` with its partner and the
pronouns he/she, him/her, his/her(s), himself/herself, keeping each word's capitalisation
(he -> she, He -> She, HE -> SHE). Personal names are left alone: there is no name list.

Heuristics and their limits:

* "her" is an object (-> "him") or a possessive determiner (-> "his"); "his" is a determiner
  (-> "her") or a possessive pronoun (-> "hers"). The word after it decides: end of text, punctuation,
  a digit, or a function word (preposition, article, conjunction, pronoun, common adverb: "to", "the",
  "and", "it", "yesterday") means object / pronoun use; any other word is taken to be the noun or
  adjective that the determiner introduces. Wrong for "saw her leave" (-> "saw his leave") or "made
  her happy"; right for "gave her the book", "her own", "the book is his.".
* A capitalised listed noun that is not at a sentence start and follows another capitalised word is
  taken to be part of a name and left alone ("Martin Luther King", "Burger King"); titles before a name
  are swapped ("King Henry" -> "Queen Henry").
* One-way pairs (lord -> lady, lady -> gentleman) make some swaps not reversible; swapping twice
  returns the original text whenever only both-way pairs and unambiguous pronoun uses occur.
* Verbs and idioms are not recognised ("to man the boat", "master" is not listed at all).
"""

from __future__ import annotations

import re
from functools import lru_cache

from pipelines.bias.lexicon import LexiconError, cda_pairs
from pipelines.hashing import hash_unit
from pipelines.tokens.splits import DERIVED_SEP

CDA_TAG = "cda:gender-swap"

_WORD_RE = re.compile(r"[A-Za-z]+")
_NEXT_RE = re.compile(r"[ \t]*([A-Za-z]+|\S)?")

# Words after "her"/"his" that signal object / possessive-pronoun use rather than a following noun.
_OBJECT_CONTEXT = frozenset(
    """
    a an the this that these those some any every each another no
    my your his her its our their me you him us them it something anything nothing everything someone
    i he she we they
    anyone everyone nobody somebody
    to for with at in on by from of about into onto over under up down out off away back through around
    across along after before behind since until till toward towards upon within without against among
    between beside during like than as via per
    and or but nor so yet because if when while whether where why how what who whom which
    yesterday today tonight tomorrow now then again already too also there here not never always once
    twice soon later often
    is was are were be been am has have had will would can could should may might must do does did
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_SPECIAL = frozenset({"her", "his", "him", "hers"})
_PRONOUNS = frozenset({"he", "she", "himself", "herself"})
_SENTENCE_END = ".!?\n"
_OPENERS = "\"'([{\u201c\u2018\u00ab"


@lru_cache(maxsize=1)
def swap_map() -> dict[str, str]:
    """Lower-case word -> partner, from the pair list (both directions), without him/his/her/hers."""
    m2f, f2m = cda_pairs()
    both = set(m2f) & set(f2m)
    if both:
        raise LexiconError(f"cda_pairs_en.tsv: {sorted(both)} listed as both male and female words")
    special = (set(m2f) | set(f2m)) & _SPECIAL
    if special:
        raise LexiconError(f"cda_pairs_en.tsv: {sorted(special)} are handled in cda.py; remove them")
    return {**m2f, **f2m}


def _match_case(source: str, word: str) -> str:
    if len(source) > 1 and source.isupper():
        return word.upper()
    if source[0].isupper():
        return word[0].upper() + word[1:]
    return word


def _object_use(text: str, end: int) -> bool:
    """True if the token after ``end`` suggests object / possessive-pronoun use of her/his."""
    match = _NEXT_RE.match(text, end)  # always matches: every part is optional
    nxt = match.group(1) if match else None
    if nxt is None or not nxt[0].isalpha():
        return True
    return nxt.lower() in _OBJECT_CONTEXT


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and (text[i] in " \t" or text[i] in _OPENERS):
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def _inside_name(text: str, start: int) -> bool:
    """A capitalised word right before (spaces only between) that is itself not sentence-initial."""
    i = start - 1
    while i >= 0 and text[i] == " ":
        i -= 1
    if i < 0 or not text[i].isalpha():
        return False
    j = i
    while j > 0 and text[j - 1].isalpha():
        j -= 1
    return text[j].isupper() and not _sentence_initial(text, j)


def gender_swap(text: str) -> str:
    """``text`` with English gendered words swapped (see the module docstring for the rules)."""
    mapping = swap_map()

    def repl(m: re.Match[str]) -> str:
        word = m.group()
        lower = word.lower()
        if lower == "her":
            new = "him" if _object_use(text, m.end()) else "his"
        elif lower == "his":
            new = "hers" if _object_use(text, m.end()) else "her"
        elif lower == "him":
            new = "her"
        elif lower == "hers":
            new = "his"
        elif lower in mapping:
            if (
                word[0].isupper()
                and lower not in _PRONOUNS
                and not _sentence_initial(text, m.start())
                and _inside_name(text, m.start())
            ):
                return word
            new = mapping[lower]
        else:
            return word
        return _match_case(word, new)

    return _WORD_RE.sub(repl, text)


def select_for_cda(doc_id: str, fraction: float, seed: int) -> bool:
    """Deterministically pick about ``fraction`` of documents (by a hash of seed and id) for CDA."""
    if fraction <= 0:
        return False
    return fraction >= 1 or hash_unit(b"", "cda", seed, doc_id) < fraction


def counterfactual_id(doc_id: str) -> str:
    """Id of the gender-swapped copy of ``doc_id`` (``<id>#cda``: the token split follows the source id)."""
    return f"{doc_id}{DERIVED_SEP}cda"
