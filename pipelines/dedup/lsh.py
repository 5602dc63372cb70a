"""LSH banding of MinHash signatures.

``optimal_bands_rows`` is datasketch's parameter search (``datasketch.lsh._optimal_param``): among all
``b * r <= num_perm`` it minimises ``fp_weight * FP + fn_weight * FN``, where FP is the area under the
candidate curve ``P(s) = 1 - (1 - s**r)**b`` for ``s`` in ``[0, threshold]`` and FN the area above it
for ``s`` in ``[threshold, 1]`` (integrated probabilities, as datasketch defines them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from datasketch.lsh import _false_negative_probability, _false_positive_probability, _optimal_param

from pipelines.dedup.minhash import pack_signature

BAND_HASH_BYTES = 16


@dataclass(frozen=True)
class LshParams:
    """Bands x rows chosen for a threshold, with the integrated FP/FN errors of that choice."""

    bands: int
    rows: int
    threshold: float
    fp_area: float
    fn_area: float

    def candidate_probability(self, similarity: float) -> float:
        """Probability that two documents of this Jaccard similarity share at least one band."""
        return candidate_probability(similarity, self.bands, self.rows)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """``1 - (1 - s**r)**b``: the chance that a pair of similarity ``s`` collides in some band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


@lru_cache(maxsize=64)
def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """datasketch's ``(b, r)`` for this threshold and weights (same as ``MinHashLSH(...).b, .r``)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be within (0, 1), not {threshold}")
    if fp_weight < 0 or fn_weight < 0 or fp_weight + fn_weight <= 0:
        raise ValueError("fp_weight and fn_weight must be >= 0 and not both 0")
    b, r = _optimal_param(threshold, num_perm, fp_weight, fn_weight)
    return int(b), int(r)


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> LshParams:
    """``optimal_bands_rows`` plus the FP/FN areas of the chosen banding."""
    b, r = optimal_bands_rows(threshold, num_perm, fp_weight, fn_weight)
    fp = float(_false_positive_probability(threshold, b, r))
    fn = float(_false_negative_probability(threshold, b, r))
    return LshParams(bands=b, rows=r, threshold=threshold, fp_area=fp, fn_area=fn)


def band_keys(signature: np.ndarray | bytes, bands: int, rows: int) -> list[tuple[int, bytes]]:
    """``(band index, band key)`` for each of ``bands`` bands of a signature (array or packed bytes).

    The key is the band's little-endian values themselves when they fit in ``BAND_HASH_BYTES``
    bytes (4 rows of 32-bit values), else their 16-byte BLAKE2b.
    """
    packed = pack_signature(signature)
    itemsize, raw = packed[0], packed[1:]
    if bands * rows * itemsize > len(raw):
        raise ValueError(f"{bands} bands x {rows} rows exceed the signature length {len(raw) // itemsize}")
    width = itemsize * rows
    if width <= BAND_HASH_BYTES:
        return [(i, raw[i * width : (i + 1) * width]) for i in range(bands)]
    return [
        (i, hashlib.blake2b(raw[i * width : (i + 1) * width], digest_size=BAND_HASH_BYTES).digest())
        for i in range(bands)
    ]
