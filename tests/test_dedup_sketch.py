"""DocumentSketcher: exact keys and packed signatures from one pass, equal to the separate functions."""

import numpy as np

from pipelines.config import DedupConfig
from pipelines.dedup.exact import exact_key
from pipelines.dedup.minhash import MinHasher, signature_values
from pipelines.dedup.shingles import shingles
from pipelines.dedup.sketch import DocumentSketcher

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "the QUICK brown fox -- jumps over the lazy dog",
    "天下大势，分久必合，合久必分。",
    "天下大势 分久必合 合久必分",
    "!!! ...",
    "",
]


def test_sketch_equals_exact_key_and_minhash_of_shingles():
    cfg = DedupConfig(num_perm=64)
    got = DocumentSketcher(cfg).sketch(TEXTS)
    hasher = MinHasher(64, cfg.seed, cfg.minhash_scheme, cfg.shingle_hash)
    for text, (key, sig) in zip(TEXTS, got, strict=True):
        assert key == exact_key(text)
        sh = shingles(text, cfg.ngram, cfg.cjk_ngram)
        if sh:
            assert np.array_equal(signature_values(sig), hasher.signature(sh))
        else:
            assert sig is None
    assert got[0][0] == got[1][0] and got[2][0] == got[3][0]  # case, punctuation, spacing
    assert got[0][0] != got[2][0] and got[4][0] == got[5][0]


def test_sketch_with_other_exact_options_and_features_off():
    texts = ["Hello, World!", "hello world"]
    keys = [k for k, _ in DocumentSketcher(DedupConfig(exact_lowercase=False)).sketch(texts)]
    assert keys[0] != keys[1] and keys[0] == exact_key(texts[0], lowercase=False)
    assert all(s is None for _, s in DocumentSketcher(DedupConfig(near=False)).sketch(texts))
    assert all(k is None for k, _ in DocumentSketcher(DedupConfig(exact=False)).sketch(texts))


def test_sha1_option_gives_datasketch_default_values():
    from datasketch import MinHash

    cfg = DedupConfig(num_perm=32, shingle_hash="sha1")
    ((_, sig),) = DocumentSketcher(cfg).sketch(["one two three four five six seven"])
    m = MinHash(num_perm=32, seed=cfg.seed)
    m.update_batch([s.encode() for s in shingles("one two three four five six seven")])
    assert np.array_equal(signature_values(sig), m.hashvalues)
