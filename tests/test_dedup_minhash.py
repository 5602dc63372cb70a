"""MinHasher: bit-for-bit equal to datasketch.MinHash, batching, Jaccard estimate."""

import inspect
import random

import numpy as np
import pytest
from datasketch import MinHash

from pipelines.dedup.minhash import MinHasher, permutations
from pipelines.dedup.shingles import shingles

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
    est = MinHasher.jaccard(hasher.signature(a), hasher.signature(b))
    assert abs(est - 0.6) < 0.1
    assert MinHasher.jaccard(hasher.signature(a), hasher.signature(set(a))) == 1.0
    with pytest.raises(ValueError):
        MinHasher.jaccard(np.zeros(3), np.zeros(4))


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
