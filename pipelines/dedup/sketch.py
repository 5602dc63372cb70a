"""One pass per document for both dedup keys: the exact-text key and the MinHash signature.

``DocumentSketcher(cfg).sketch(texts)`` segments each text once (``shingles.segments``); the canonical
body of ``shingles.shingle_layout`` is both the exact-dedup normal form (with the default exact
options, see ``exact.py``) and the string whose spans are the shingles, hashed in one vectorised
call per batch (``MinHasher.signatures_of_layouts``). Signatures come back packed
(``minhash.pack_signature``), ready for shuffles; a text without shingles gets ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.config import DedupConfig
from pipelines.dedup.exact import exact_key, key_of_normal_form
from pipelines.dedup.minhash import MinHasher, pack_signature
from pipelines.dedup.shingles import segments, shingle_layout


class DocumentSketcher:
    """Exact keys and packed MinHash signatures of texts, as configured by ``DedupConfig``."""

    def __init__(self, cfg: DedupConfig | None = None) -> None:
        self.cfg = c = cfg or DedupConfig()
        self.hasher = MinHasher(c.num_perm, c.seed, c.minhash_scheme, c.shingle_hash) if c.near else None
        self._key_from_body = c.exact and c.exact_lowercase and c.exact_strip_punct

    def sketch(self, texts: Sequence[str]) -> list[tuple[bytes | None, bytes | None]]:
        """``(exact key or None when exact is off, packed signature or None)`` per text."""
        keys, sigs, has_sig = self.sketch_arrays(texts)
        if sigs is None:
            return [(k, None) for k in keys]
        return [
            (k, pack_signature(sig) if ok else None)
            for k, sig, ok in zip(keys, sigs, has_sig.tolist(), strict=True)
        ]

    def sketch_arrays(self, texts: Sequence[str]) -> tuple[list[bytes | None], np.ndarray | None, np.ndarray]:
        """Exact keys (None: exact off or empty normal form), the ``(len(texts), num_perm)`` signature
        matrix (None when near dedup is off) and whether each text has any shingle."""
        c = self.cfg
        layouts = [shingle_layout(*segments(t), c.ngram, c.cjk_ngram) for t in texts]
        if self._key_from_body:
            # an empty normal form (punctuation / emoji only) has no key: not a copy of anything
            keys: list[bytes | None] = [
                key_of_normal_form(lay.body) if lay.body.strip() else None for lay in layouts
            ]
        elif c.exact:
            keys = [exact_key(t, c.exact_lowercase, c.exact_strip_punct) for t in texts]
        else:
            keys = [None] * len(texts)
        has_sig = np.fromiter((lay.starts.size > 0 for lay in layouts), dtype=bool, count=len(layouts))
        if self.hasher is None:
            return keys, None, has_sig
        return keys, self.hasher.signatures_of_layouts(layouts), has_sig
