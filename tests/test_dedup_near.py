"""Near-duplicate clusters in one process (the reference): LSH edges, verification, chains cut."""

import sys
from pathlib import Path

import numpy as np

from pipelines.dedup.lsh import optimal_bands_rows
from pipelines.dedup.minhash import MinHasher, signature_jaccard
from pipelines.dedup.near import candidate_edges_local, near_duplicate_clusters_local, star_edges

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_star_edges_bucket_of_k_gives_k_minus_one_edges():
    assert sorted(star_edges(["c", "a", "b", "a"])) == [("a", "b"), ("a", "c")]
    assert list(star_edges(["x"])) == []
    assert sorted(star_edges(("d", "b", "c"))) == [("b", "c"), ("b", "d")]  # a re-iterable tuple


def _chain_docs():
    hasher = MinHasher(128, 1)
    a, b, c = (hasher.signature({f"s{i}" for i in range(lo, lo + 100)}) for lo in (0, 20, 40))
    return [("A", a, 0.1, 100), ("B", b, 0.9, 100), ("C", c, 0.1, 100), ("Z", None, None, 0)]


def test_chain_end_is_cut_when_the_survivor_is_not_similar_to_it():
    docs = _chain_docs()
    sig = {d[0]: d[1] for d in docs}
    assert signature_jaccard(sig["A"], sig["C"]) < 0.55
    assert min(signature_jaccard(sig["A"], sig["B"]), signature_jaccard(sig["B"], sig["C"])) >= 0.55
    bands, rows = optimal_bands_rows(0.55, 128, 0.1, 0.9)
    # B survives (highest quality) and both ends are similar to it: one cluster, nothing chained
    got = near_duplicate_clusters_local(docs, bands, rows, 0.55)
    assert [(d["doc_id"], d["cluster_id"], d["kept"], d["kind"]) for d in got] == [
        ("A", "B", False, "near"),
        ("B", "B", True, "near"),
        ("C", "B", False, "near"),
        ("Z", "Z", True, "unique"),
    ]
    # A survives: C is only similar to A through B, so it is kept (the chain is cut)
    docs = [("A", sig["A"], 0.95, 100), *docs[1:]]
    got = near_duplicate_clusters_local(docs, bands, rows, 0.55)
    assert [(d["doc_id"], d["cluster_id"], d["kept"], d["kind"]) for d in got] == [
        ("A", "A", True, "near"),
        ("B", "A", False, "near"),
        ("C", "C", True, "unique"),
        ("Z", "Z", True, "unique"),
    ]


def test_verification_keeps_estimated_jaccard_equal_to_threshold():
    base = np.arange(20, dtype=np.uint32)
    at = base.copy()
    at[10:] += 100  # 10 of 20 values equal: estimate exactly 0.5
    below = base.copy()
    below[9:] += 200  # 9 of 20 equal: 0.45
    docs = [("a", base, 0.5, 10), ("b", at, 0.4, 10), ("c", below, 0.3, 10)]
    edges = candidate_edges_local(docs, 20, 1)  # every row a band; star edges from each bucket's minimum
    assert edges == {("a", "b"), ("a", "c")}
    got = near_duplicate_clusters_local(docs, 20, 1, threshold=0.5)
    assert [(d["doc_id"], d["cluster_id"], d["similarity"]) for d in got] == [
        ("a", "a", 1.0),
        ("b", "a", 0.5),
        ("c", "c", 1.0),
    ]
    # without edge verification c is in a's component, but it still only joins a similar survivor
    unverified = near_duplicate_clusters_local(docs, 20, 1, threshold=0.5, verify=False)
    assert [d["cluster_id"] for d in unverified] == ["a", "a", "c"]
