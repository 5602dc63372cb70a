"""MinHasher: bit-for-bit equal to datasketch.MinHash, batching, Jaccard estimate."""

import inspect
import random

import numpy as np
import pytest
from datasketch import MinHash

from pipelines.dedup.minhash import (
    MinHasher,
    pack_signature,
    permutations,
    poly_hash,
    poly_span_hashes,
    signature_jaccard,
    signature_values,
)
from pipelines.dedup.shingles import segments, shingle_layout, shingles

_HAS_SCHEMES = "scheme" in inspect.signature(MinHash.__init__).parameters
SCHEMES = ["affine32", "affine64", "legacy"] if _HAS_SCHEMES else ["legacy"]

TEXTS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "天下大势，分久必合，合久必分。周末七国分争，并入于秦。及秦灭之后，楚、汉分争，又并入于汉。",
    "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
    "Mixed 中英文 text with numbers 2024 and 符号！",
    "short",
    "",
]


def _datasketch(shingle_set, num_perm, seed, scheme):
    kwargs = {"scheme": scheme} if _HAS_SCHEMES else {}
    m = MinHash(num_perm=num_perm, seed=seed, **kwargs)
    m.update_batch([s.encode("utf-8") for s in shingle_set])
    return m.hashvalues


def _random_texts(n, seed):
    rng = random.Random(seed)
    zh = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏，。"
    en = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append("".join(rng.choice(zh) for _ in range(rng.randint(0, 80))))
        else:
            out.append(" ".join(rng.choice(en) for _ in range(rng.randint(0, 40))))
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 42)])
def test_bit_identical_to_datasketch(scheme, num_perm, seed):
    hasher = MinHasher(num_perm, seed, scheme)
    sets = [shingles(t, 3, 3) for t in TEXTS + _random_texts(60, seed)]
    ours = hasher.signatures(sets)
    for s, sig in zip(sets, ours, strict=True):
        expected = _datasketch(s, num_perm, seed, scheme)
        assert sig.dtype == expected.dtype
        assert np.array_equal(sig, expected)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_permutations_match_datasketch(scheme):
    kwargs = {"scheme": scheme} if _HAS_SCHEMES else {}
    a, b = permutations(32, 5, scheme)
    ds = MinHash(num_perm=32, seed=5, **kwargs).permutations
    assert np.array_equal(a, ds[0]) and np.array_equal(b, ds[1])


def test_batch_equals_one_by_one_and_spans_chunks():
    hasher = MinHasher(128, 1)
    big = {f"token {i}" for i in range(10_000)}  # larger than one permutation block
    sets = [shingles(t, 5, 5) for t in TEXTS] + [big, set(), {"x"}]
    batch = hasher.signatures(sets)
    for s, sig in zip(sets, batch, strict=True):
        assert np.array_equal(sig, hasher.signature(s))
    assert hasher.is_empty(batch[-2]) and not hasher.is_empty(batch[-1])


def test_jaccard_estimate_tracks_true_jaccard():
    hasher = MinHasher(256, 3)
    a = {f"s{i}" for i in range(1000)}
    b = {f"s{i}" for i in range(250, 1250)}  # true Jaccard 750 / 1250 = 0.6
    est = signature_jaccard(hasher.signature(a), hasher.signature(b))
    assert abs(est - 0.6) < 0.1
    assert signature_jaccard(hasher.signature(a), hasher.signature(set(a))) == 1.0
    with pytest.raises(ValueError):
        signature_jaccard(np.zeros(3), np.zeros(4))


def test_order_and_bytes_input_do_not_matter():
    hasher = MinHasher(64, 1)
    items = ["天下大势", "分久必合", "hello world"]
    assert np.array_equal(hasher.signature(items), hasher.signature(reversed(items)))
    assert np.array_equal(hasher.signature(items), hasher.signature([s.encode() for s in items]))


def test_bad_arguments():
    with pytest.raises(ValueError):
        MinHasher(128, 1, scheme="sha256")
    with pytest.raises(ValueError):
        MinHasher(0, 1)
    with pytest.raises(ValueError, match="input_hash"):
        MinHasher(128, 1, input_hash="md5")


# -- poly input hash, layouts, packed signatures -------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_poly_input_hash_bit_identical_to_datasketch_with_that_hashfunc(scheme):
    hasher = MinHasher(64, 7, scheme, input_hash="poly")
    bits = 64 if scheme == "affine64" else 32
    sets = [shingles(t, 3, 3) for t in TEXTS + _random_texts(40, 3)]
    for s, sig in zip(sets, hasher.signatures(sets), strict=True):
        kwargs = {"scheme": scheme} if _HAS_SCHEMES else {}
        m = MinHash(num_perm=64, seed=7, hashfunc=lambda b: poly_hash(b, bits), **kwargs)
        m.update_batch([x.encode("utf-8") for x in s])
        assert np.array_equal(sig, m.hashvalues)


def test_poly_span_hashes_equal_the_reference_and_do_not_depend_on_position():
    text = "abc 天下大势 abc\ud800x"  # a lone surrogate must not break the vectorised path
    starts = np.array([0, 4, 4, 9, 0, 12])
    ends = np.array([3, 8, 5, 12, 14, 14])
    got = poly_span_hashes(text, starts, ends)
    assert got.tolist() == [poly_hash(text[a:b]) for a, b in zip(starts, ends, strict=True)]
    assert got[0] == got[3]  # "abc" at two positions
    assert len(set(got.tolist())) == 5
    assert poly_span_hashes(text, starts, ends, bits=64).tolist() == [
        poly_hash(text[a:b], 64) for a, b in zip(starts, ends, strict=True)
    ]


@pytest.mark.parametrize("input_hash", ["poly", "sha1"])
def test_signatures_of_layouts_equal_signatures_of_shingle_sets(input_hash):
    hasher = MinHasher(128, 1, input_hash=input_hash)
    texts = TEXTS + _random_texts(50, 9) + [" ".join(f"w{i}" for i in range(6000))]  # > one block
    layouts = [shingle_layout(*segments(t), 4, 2) for t in texts]
    expected = hasher.signatures([shingles(t, 4, 2) for t in texts])
    assert np.array_equal(hasher.signatures_of_layouts(layouts), expected)
    assert hasher.signatures_of_layouts([]).shape == (0, 128)


def test_poly_and_sha1_estimate_the_same_similarity():
    a = {f"s{i}" for i in range(1000)}
    b = {f"s{i}" for i in range(250, 1250)}  # true Jaccard 0.6
    for input_hash in ("poly", "sha1"):
        hasher = MinHasher(256, 3, input_hash=input_hash)
        assert abs(signature_jaccard(hasher.signature(a), hasher.signature(b)) - 0.6) < 0.1


def test_packed_signatures_round_trip_and_compare():
    for scheme in SCHEMES:
        sig = MinHasher(32, 1, scheme).signature({"a b c", "d e f"})
        packed = pack_signature(sig)
        assert isinstance(packed, bytes) and len(packed) == 1 + sig.nbytes
        assert np.array_equal(signature_values(packed), sig)
        assert pack_signature(packed) is packed
        assert signature_jaccard(packed, sig) == 1.0
    big = np.array([1, 2, 3, 4], dtype=">u4")  # byte order does not matter
    assert signature_values(pack_signature(big)).tolist() == [1, 2, 3, 4]
    assert signature_jaccard(pack_signature(big), np.array([1, 2, 0, 0], dtype=np.uint32)) == 0.5
