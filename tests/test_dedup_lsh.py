"""LSH banding: datasketch's parameter search and band keys."""

import numpy as np
import pytest
from datasketch import MinHashLSH

from pipelines.dedup.lsh import band_keys, candidate_probability, lsh_params, optimal_bands_rows
from pipelines.dedup.minhash import MinHasher


@pytest.mark.parametrize(
    ("threshold", "num_perm", "fp", "fn"), [(0.7, 128, 0.5, 0.5), (0.55, 128, 0.1, 0.9), (0.8, 64, 0.5, 0.5)]
)
def test_bands_rows_match_datasketch(threshold, num_perm, fp, fn):
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(fp, fn))
    assert optimal_bands_rows(threshold, num_perm, fp, fn) == (lsh.b, lsh.r)


def test_weighting_false_negatives_raises_candidate_probability_at_threshold():
    balanced = lsh_params(0.55, 128, 0.5, 0.5)
    recall_first = lsh_params(0.55, 128, 0.1, 0.9)
    assert recall_first.fn_area < balanced.fn_area
    assert recall_first.fp_area > balanced.fp_area
    assert recall_first.candidate_probability(0.55) > balanced.candidate_probability(0.55)
    assert recall_first.bands * recall_first.rows <= 128


def test_candidate_probability_formula():
    assert candidate_probability(1.0, 10, 5) == 1.0
    assert candidate_probability(0.0, 10, 5) == 0.0
    assert candidate_probability(0.5, 1, 1) == pytest.approx(0.5)
    assert candidate_probability(0.5, 2, 1) == pytest.approx(0.75)


def test_bad_threshold_rejected():
    with pytest.raises(ValueError):
        optimal_bands_rows(1.0, 128)
    with pytest.raises(ValueError):
        optimal_bands_rows(0.5, 128, 0.0, 0.0)


def test_band_keys_change_only_in_the_band_that_changed():
    sig = MinHasher(128, 1).signature({"a", "b", "c"})
    keys = band_keys(sig, 16, 8)
    assert [k[0] for k in keys] == list(range(16))
    assert all(len(k[1]) == 16 for k in keys)
    assert len({k[1] for k in keys}) == 16
    changed = sig.copy()
    changed[8 * 5 + 3] ^= 1  # one value inside band 5
    diff = [i for (i, h1), (_, h2) in zip(keys, band_keys(changed, 16, 8), strict=True) if h1 != h2]
    assert diff == [5]


def test_band_keys_ignore_rows_beyond_bands_times_rows_and_check_length():
    sig = np.arange(130, dtype=np.uint32)
    other = sig.copy()
    other[-1] = 7  # row 129 is outside the 12 x 10 = 120 rows used
    assert band_keys(sig, 12, 10) == band_keys(other, 12, 10)
    with pytest.raises(ValueError):
        band_keys(sig, 14, 10)


def test_band_keys_same_for_uint64_and_byte_order_independent():
    sig = np.arange(20, dtype=np.uint64)
    assert band_keys(sig, 4, 5) == band_keys(sig.astype(">u8"), 4, 5)
