"""Exact duplicates: documents whose normalised text hashes equal.

Normal form with the defaults (``lowercase`` and ``strip_punct``): the canonical shingle text of
``shingles.shingle_layout`` (NFKC, casefold, punctuation and symbols separate words, whitespace
collapsed, whitespace between CJK characters ignored), so the dedup job (``steps.sketch_chunk``) gets the
key from the same pass that shingles the text. With either option off:
``pipelines.text.normalize.normalize_for_hash`` (NFKC; casefold when ``lowercase``; control/format
characters, and with ``strip_punct`` punctuation and symbols, removed; whitespace collapsed). The key
is the 16-byte BLAKE2b of the UTF-8 result. One survivor per group by the rule of ``survivor.py``;
records are ``decision`` dicts with kind ``"exact"`` (groups of two or more) or ``"unique"``. Pure (the
job's exact partitions are ``steps.merge_partition``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pipelines.dedup.shingles import canonical_body, segments
from pipelines.dedup.survivor import choose_survivor, decision
from pipelines.text.normalize import normalize_for_hash


def key_of_normal_form(norm: str) -> bytes:
    """16-byte BLAKE2b of an already normalised text."""
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def exact_key(text: str, lowercase: bool = True, strip_punct: bool = True) -> bytes | None:
    """16-byte BLAKE2b of the normalised text (see the module docstring for the normal form); None
    when the normal form is empty (punctuation, emoji or symbols only): such texts are not copies of
    each other, so each stays its own group."""
    if lowercase and strip_punct:
        form = canonical_body(*segments(text))
    else:
        form = normalize_for_hash(text, lowercase, strip_punct)
    return key_of_normal_form(form) if form.strip() else None


def group_key(key: bytes | None, doc_id: str) -> bytes:
    """The exact-group key: ``key``, or the document's own id when it has none."""
    return key if key is not None else b"id:" + doc_id.encode()


def group_decisions(members: Iterable[tuple[str, float | None, int]]) -> list[dict[str, Any]]:
    """Decisions for the ``(doc_id, quality, length)`` members of one exact group."""
    members = list(members)
    survivor = choose_survivor(members)
    kind = "exact" if len(members) > 1 else "unique"
    return [decision(doc_id, survivor, kind, 1.0) for doc_id, _, _ in members]


def exact_duplicates_local(
    docs: Iterable[tuple[str, str, float | None]], lowercase: bool = True, strip_punct: bool = True
) -> list[dict[str, Any]]:
    """Exact-duplicate decisions in one process (the job's rule) for ``(doc_id, text, quality)``, by doc id."""
    groups: dict[bytes, list[tuple[str, float | None, int]]] = {}
    for doc_id, text, quality in docs:
        key = group_key(exact_key(text, lowercase, strip_punct), doc_id)
        groups.setdefault(key, []).append((doc_id, quality, len(text)))
    out = [d for members in groups.values() for d in group_decisions(members)]
    return sorted(out, key=lambda d: d["doc_id"])
