"""Vectorised MinHash, bit-for-bit identical to ``datasketch.MinHash``.

``MinHasher(num_perm, seed, scheme)`` computes the same hash values as
``datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme)`` after
``update_batch([s.encode("utf-8") for s in shingles])``:

* input hash ``sha1``: the first 4 (``affine64``: 8) bytes of SHA-1 of the UTF-8 shingle, little-endian
  (``datasketch.hashfunc.sha1_hash32`` / ``sha1_hash64``, datasketch's default ``hashfunc``);
  input hash ``poly`` (the project default, ~10x faster): a polynomial hash of the shingle's code
  points modulo 2**64, mixed with its length and MurmurHash3's 64-bit finaliser, high 32 bits
  (``affine64``: all 64); equal to ``datasketch.MinHash(..., hashfunc=poly_hash)``;
* permutation parameters drawn from ``numpy.random.RandomState(seed)`` in datasketch's order;
* ``legacy`` (datasketch < 2.0 default): ``((a * h + b) mod 2**64) mod (2**61 - 1)``, low 32 bits,
  stored as uint64;
* ``affine32`` (datasketch >= 2.0 default): ``h`` pre-mixed with the 32-bit MurmurHash3 finaliser, then
  ``a * h + b mod 2**32`` with odd ``a``, stored as uint32; ``affine64`` the same in 64 bits.

``poly`` hashes every shingle of a batch of documents at once from prefix sums over the
concatenated code points (``signatures_of_layouts``): no Python string is built per shingle.
Speed comes from hashing a whole batch of shingles into one buffer read with ``np.frombuffer``
(C-level ``map``, no Python bytecode per shingle), broadcasting all permutations at once over a
``(num_perm, shingles)`` block and reducing every document of a batch with one
``np.minimum.reduceat`` along the contiguous axis; no datasketch object is created per document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import methodcaller

import numpy as np

from pipelines.dedup.shingles import ShingleLayout

SCHEMES = ("affine32", "affine64", "legacy")
INPUT_HASHES = ("poly", "sha1")

_MASK64 = (1 << 64) - 1
_POLY_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2**64
_POLY_BASE_INV = pow(_POLY_BASE, -1, 1 << 64)
_LENGTH_MIX = 0xD6E8FEB86659FD93

_MERSENNE = np.uint64((1 << 61) - 1)
_SHIFT61 = np.uint64(61)
_LOW32 = np.uint64((1 << 32) - 1)
_FMIX = {
    32: (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16)),
    64: (
        np.uint64(33),
        np.uint64(0xFF51AFD7ED558CCD),
        np.uint64(33),
        np.uint64(0xC4CEB9FE1A85EC53),
        np.uint64(33),
    ),
}
_ROWS_PER_CHUNK = 4096  # shingles per permutation block (128 x 4096 x 8 B = 4 MiB at most)
_DIGEST = methodcaller("digest")


def _fmix(h: np.ndarray, width: int) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX[width]
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def poly_hash(data: str | bytes, bits: int = 32) -> int:
    """Reference ``poly`` input hash of one shingle (a datasketch ``hashfunc``; bytes are UTF-8)."""
    text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
    h = 0
    for ch in text:
        h = (h * _POLY_BASE + ord(ch)) & _MASK64
    h = _fmix64_int(h ^ ((len(text) * _LENGTH_MIX) & _MASK64))
    return h >> 32 if bits == 32 else h


class _PowerTable:
    """``base**i`` and ``base**-i`` modulo 2**64 for ``i < size``, grown on demand (per process)."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if self.up.size >= n:
            return
        size = max(n, 2 * self.up.size, 1 << 16)
        for name, base in (("up", _POLY_BASE), ("down", _POLY_BASE_INV)):
            table = np.full(size, base, dtype=np.uint64)
            table[0] = 1
            setattr(self, name, np.cumprod(table))  # wraps modulo 2**64


_POWERS = _PowerTable()


def poly_span_hashes(text: str, starts: np.ndarray, ends: np.ndarray, bits: int = 32) -> np.ndarray:
    """``poly_hash(text[a:b])`` for every span ``[a, b)``, vectorised (no per-span Python work).

    With ``c`` the code points of ``text`` and ``S[i] = sum(c[k] * base**-k, k < i)``, the polynomial
    hash of ``text[a:b]`` is ``(S[b] - S[a]) * base**(b - 1)`` modulo 2**64.
    """
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
    n = codes.size
    _POWERS.ensure(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(codes * _POWERS.down[:n], out=prefix[1:])
    h = (prefix[ends] - prefix[starts]) * _POWERS.up[ends - 1]
    h ^= (ends - starts).astype(np.uint64) * np.uint64(_LENGTH_MIX)
    h = _fmix(h, 64)
    return (h >> np.uint64(32)).astype(np.uint32) if bits == 32 else h


def permutations(num_perm: int, seed: int, scheme: str = "affine32") -> tuple[np.ndarray, np.ndarray]:
    """The permutation parameters ``(a, b)`` that datasketch draws for ``(num_perm, seed, scheme)``."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        pairs = [
            (gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
            for _ in range(num_perm)
        ]
        ab = np.array(pairs, dtype=np.uint64).T
        return ab[0].copy(), ab[1].copy()
    width = 32 if scheme == "affine32" else 64
    dtype = np.uint32 if width == 32 else np.uint64
    a = gen.randint(0, 1 << (width - 1), num_perm, dtype=dtype) * dtype(2) + dtype(1)
    b = gen.randint(0, 1 << width, num_perm, dtype=dtype)
    return a, b


class MinHasher:
    """MinHash signatures of shingle sets; ``signature`` equals datasketch's ``hashvalues``."""

    def __init__(
        self, num_perm: int = 128, seed: int = 1, scheme: str = "affine32", input_hash: str = "sha1"
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
        if input_hash not in INPUT_HASHES:
            raise ValueError(f"input_hash must be one of {', '.join(INPUT_HASHES)}, not {input_hash!r}")
        if num_perm < 1:
            raise ValueError("num_perm must be >= 1")
        self.num_perm = num_perm
        self.seed = seed
        self.scheme = scheme
        self.input_hash = input_hash
        self.dtype = np.dtype(np.uint32 if scheme == "affine32" else np.uint64)
        self._a, self._b = permutations(num_perm, seed, scheme)
        self._a_col, self._b_col = self._a.reshape(-1, 1), self._b.reshape(-1, 1)
        self._hash_bytes = 8 if scheme == "affine64" else 4
        if scheme == "legacy":
            self.empty_value = int(_LOW32)
        else:
            self.empty_value = int(np.iinfo(self.dtype).max)  # type: ignore[type-var]

    # -- hashing ---------------------------------------------------------------------------------

    def hash_shingles(self, shingles: Iterable[str | bytes]) -> np.ndarray:
        """Input hashes of the shingles (``sha1``: datasketch's ``sha1_hash32``/``sha1_hash64``)."""
        items = shingles if isinstance(shingles, list) else list(shingles)
        if self.input_hash == "poly":
            texts = [s.decode("utf-8", "surrogatepass") if isinstance(s, bytes) else s for s in items]
            lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
            ends = np.cumsum(lengths)
            return poly_span_hashes("".join(texts), ends - lengths, ends, 8 * self._hash_bytes)
        try:
            digests = b"".join(map(_DIGEST, map(hashlib.sha1, map(str.encode, items))))  # C-level loop
        except TypeError:  # some items are bytes already
            encoded = (s.encode("utf-8") if isinstance(s, str) else s for s in items)
            digests = b"".join(map(_DIGEST, map(hashlib.sha1, encoded)))
        if self._hash_bytes == 4:
            return np.frombuffer(digests, dtype="<u4")[::5]  # a SHA-1 digest is 5 x 4 bytes
        first8 = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20)[:, :8]
        return np.ascontiguousarray(first8).view("<u8").reshape(-1)

    def _permuted(self, hashes: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """``(num_perm, len(hashes))`` permuted values (one row per permutation), written into ``buf``."""
        x = buf[:, : len(hashes)]
        if self.scheme == "legacy":
            np.multiply(self._a_col, hashes.astype(np.uint64).reshape(1, -1), out=x)
            x += self._b_col  # both steps wrap modulo 2**64, as in datasketch
            # x % (2**61 - 1) without a division: x = hi * 2**61 + lo and 2**61 = 1 (mod p), so
            # x = hi + lo (mod p), and hi + lo < 2p needs at most one subtraction. Bit-exact.
            high = x >> _SHIFT61
            x &= _MERSENNE
            x += high
            np.subtract(x, _MERSENNE, out=x, where=x >= _MERSENNE)
            x &= _LOW32
            return x
        width = 32 if self.scheme == "affine32" else 64
        np.multiply(self._a_col, _fmix(hashes.astype(self.dtype).reshape(1, -1), width), out=x)
        x += self._b_col
        return x

    # -- signatures ------------------------------------------------------------------------------

    def signature(self, shingles: Iterable[str | bytes]) -> np.ndarray:
        """MinHash signature of one shingle set (``num_perm`` values)."""
        return self.signatures([shingles])[0]

    def signatures(self, shingle_sets: Sequence[Iterable[str | bytes]]) -> np.ndarray:
        """Signatures of many shingle sets at once, shape ``(len(shingle_sets), num_perm)``."""
        sets = [s if isinstance(s, list | tuple | set | frozenset) else list(s) for s in shingle_sets]
        counts = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
        hashes = self.hash_shingles(list(chain.from_iterable(sets)))
        return self.signatures_of_hashes(hashes, counts)

    def signatures_of_layouts(self, layouts: Sequence[ShingleLayout]) -> np.ndarray:
        """Signatures of ``shingles.shingle_layout`` results (same values as ``signatures`` of their sets)."""
        counts = np.fromiter((lay.starts.size for lay in layouts), dtype=np.int64, count=len(layouts))
        if not layouts:
            return self.signatures_of_hashes(np.zeros(0, dtype=np.uint64), counts)
        if self.input_hash == "sha1":
            sets = [
                [lay.body[a:b] for a, b in zip(lay.starts.tolist(), lay.ends.tolist(), strict=True)]
                for lay in layouts
            ]
            return self.signatures_of_hashes(self.hash_shingles(list(chain.from_iterable(sets))), counts)
        bodies = [lay.body for lay in layouts]
        shift = np.repeat(np.cumsum([0, *map(len, bodies[:-1])]), counts)
        starts = np.concatenate([lay.starts for lay in layouts]) + shift
        ends = np.concatenate([lay.ends for lay in layouts]) + shift
        hashes = poly_span_hashes("".join(bodies), starts, ends, 8 * self._hash_bytes)
        return self.signatures_of_hashes(hashes, counts)

    def signatures_of_hashes(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures from input hashes laid out document after document (``counts[i]`` each)."""
        out = np.full((len(counts), self.num_perm), self.empty_value, dtype=self.dtype)
        nonempty = np.flatnonzero(counts)
        if nonempty.size == 0:
            return out
        bounds = np.concatenate(([0], np.cumsum(counts[nonempty])))
        buf = np.empty((self.num_perm, _ROWS_PER_CHUNK), dtype=self.dtype)
        # Consecutive documents are processed together in blocks of at most _ROWS_PER_CHUNK shingles
        # (a larger document alone, piece by piece); each block is reduced per document along its
        # contiguous axis, so memory stays bounded and the buffer is reused.
        start = 0
        while start < nonempty.size:
            stop = int(np.searchsorted(bounds, bounds[start] + _ROWS_PER_CHUNK, side="right")) - 1
            lo = bounds[start]
            if stop > start:
                block = self._permuted(hashes[lo : bounds[stop]], buf)
                out[nonempty[start:stop]] = np.minimum.reduceat(block, bounds[start:stop] - lo, axis=1).T
            else:
                stop = start + 1
                acc = out[nonempty[start]]
                for piece in range(lo, bounds[stop], _ROWS_PER_CHUNK):
                    part = hashes[piece : min(piece + _ROWS_PER_CHUNK, bounds[stop])]
                    np.minimum(acc, self._permuted(part, buf).min(axis=1), out=acc)
                out[nonempty[start]] = acc
            start = stop
        return out

    def is_empty(self, signature: np.ndarray) -> bool:
        """True when ``signature`` is that of the empty set."""
        return bool(np.all(signature == self.empty_value))


def pack_signature(signature: np.ndarray | bytes) -> bytes:
    """A signature as bytes for shuffles: one byte of item size, then the little-endian values.

    Beam encodes ``bytes`` natively; a numpy array would go through pickle (several times slower
    and larger). Packed signatures are accepted wherever a signature is (``signature_values``).
    """
    if isinstance(signature, bytes):
        return signature
    sig = np.asarray(signature)
    return bytes((sig.dtype.itemsize,)) + sig.astype(sig.dtype.newbyteorder("<"), copy=False).tobytes()


def signature_values(signature: np.ndarray | bytes) -> np.ndarray:
    """The values of a packed (or unpacked) signature as a little-endian unsigned array."""
    if isinstance(signature, bytes):
        return np.frombuffer(signature, dtype=f"<u{signature[0]}", offset=1)
    return np.asarray(signature)


def signature_jaccard(sig_a: np.ndarray | bytes, sig_b: np.ndarray | bytes) -> float:
    """Estimated Jaccard of two signatures (arrays or ``pack_signature`` bytes)."""
    a, b = signature_values(sig_a), signature_values(sig_b)
    if len(a) != len(b):
        raise ValueError(f"signatures differ in length: {len(a)} != {len(b)}")
    return float(np.count_nonzero(a == b)) / len(a)
