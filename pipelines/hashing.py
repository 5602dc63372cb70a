"""The one rule for deterministic per-document draws: a hash of (key, parts) mapped into ``[0, 1)``.

Every sample, split and keep decision (train/val split, tokenizer sample, CDA selection, source
balancing) calls :func:`hash_unit`, so a decision is stable across processes, runners, Python
versions and refactors (values pinned in ``tests/test_hash_decisions_golden.py``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)
SEP = "\x1f"  # joins the parts (unit separator: not found in ids, seeds or source names)


def hash_unit(key: bytes, *parts: object) -> float:
    """Uniform number in ``[0, 1)``: the 64-bit BLAKE2b digest, keyed by ``key`` (``b""``: unkeyed),
    of the parts' text joined by :data:`SEP`."""
    blob = SEP.join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8, key=key).digest(), "big") / _SCALE
