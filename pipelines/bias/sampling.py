"""Deterministic per-document random draws (stable across processes, runners and Python versions)."""

from __future__ import annotations

import hashlib


def hash_unit(*parts: object) -> float:
    """A number in [0, 1) determined by ``parts`` (BLAKE2b of their text, joined by a separator)."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") / 2.0**64
