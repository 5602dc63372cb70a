"""Near-duplicate clusters: Beam transform == single-process path; chains; threshold edge; full dedup."""

import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines.config import DedupConfig
from pipelines.dedup.beam_decisions import DedupDecisions
from pipelines.dedup.beam_near import NearDuplicateClusters
from pipelines.dedup.lsh import optimal_bands_rows
from pipelines.dedup.minhash import MinHasher, signature_jaccard
from pipelines.dedup.near import candidate_edges_local, near_duplicate_clusters_local, star_edges
from pipelines.dedup.shingles import shingles
from pipelines.dedup.survivor import decision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dedup_corpus  # noqa: E402


def _pipeline():
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def _close(expected):
    """equal_to for decision dicts with float similarities compared to 1e-9."""

    def check(actual):
        a = sorted(actual, key=lambda d: d["doc_id"])
        assert [{k: v for k, v in d.items() if k != "similarity"} for d in a] == [
            {k: v for k, v in d.items() if k != "similarity"} for d in expected
        ]
        assert np.allclose([d["similarity"] for d in a], [d["similarity"] for d in expected])

    return check


def test_star_edges_bucket_of_k_gives_k_minus_one_edges():
    assert sorted(star_edges(["c", "a", "b", "a"])) == [("a", "b"), ("a", "c")]
    assert list(star_edges(["x"])) == []
    assert sorted(star_edges(("d", "b", "c"))) == [("b", "c"), ("b", "d")]  # a re-iterable tuple


def _chain_docs():
    hasher = MinHasher(128, 1)
    a, b, c = (hasher.signature({f"s{i}" for i in range(lo, lo + 100)}) for lo in (0, 20, 40))
    return [("A", a, 0.1, 100), ("B", b, 0.9, 100), ("C", c, 0.1, 100), ("Z", None, None, 0)]


def test_chain_is_one_cluster_although_ends_are_not_similar():
    docs = _chain_docs()
    sig = {d[0]: d[1] for d in docs}
    assert signature_jaccard(sig["A"], sig["C"]) < 0.55
    assert min(signature_jaccard(sig["A"], sig["B"]), signature_jaccard(sig["B"], sig["C"])) >= 0.55
    bands, rows = optimal_bands_rows(0.55, 128, 0.1, 0.9)
    got = near_duplicate_clusters_local(docs, bands, rows, 0.55)
    assert [(d["doc_id"], d["cluster_id"], d["kept"], d["kind"]) for d in got] == [
        ("A", "B", False, "near"),
        ("B", "B", True, "near"),
        ("C", "B", False, "near"),
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
    unverified = near_duplicate_clusters_local(docs, 20, 1, threshold=0.5, verify=False)
    assert {d["cluster_id"] for d in unverified} == {"a"}


@pytest.fixture(scope="module")
def small_corpus():
    return dedup_corpus.generate(families=10, singletons=6, seed=3, data=None)


def test_beam_near_clusters_equal_local_on_generated_corpus_and_chain(small_corpus):
    cfg = DedupConfig()
    hasher = MinHasher(cfg.num_perm, cfg.seed)
    docs = _chain_docs()
    for r in small_corpus:
        s = shingles(r["text"], cfg.ngram, cfg.cjk_ngram)
        docs.append((r["id"], hasher.signature(s) if s else None, r["quality"], len(r["text"])))
    bands, rows = optimal_bands_rows(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)
    expected = near_duplicate_clusters_local(docs, bands, rows, cfg.threshold)
    assert sum(d["kind"] == "near" and not d["kept"] for d in expected) > 5
    assert {d["cluster_id"] for d in expected if d["doc_id"] in ("A", "B", "C")} == {"B"}
    with _pipeline() as p:
        out = p | beam.Create(docs) | NearDuplicateClusters(bands, rows, cfg.threshold, max_cc_rounds=4)
        assert_that(out, _close(expected))


def test_dedup_decisions_exact_then_near_every_cluster_id_is_kept():
    para = "It was the best of times it was the worst of times it was the age of wisdom and folly " * 3
    docs = [
        ("e1", para, 0.2),
        ("e2", para.upper(), 0.1),  # exact duplicate of e1 (case only)
        ("n1", para.replace("wisdom", "reason", 1) + " and more words here", 0.9),  # near dup of e1
        ("u1", "A completely different document about gardening and tomatoes in the spring.", 0.5),
        ("x1", "独一无二的文本，与其他文档完全不同。", None),
        ("x2", "独一无二的文本与其他文档完全不同", None),
    ]
    cfg = DedupConfig(max_cc_rounds=3)

    def check(actual):
        got = {d["doc_id"]: d for d in actual}
        assert set(got) == {d[0] for d in docs}
        assert got["n1"]["kept"] and got["n1"]["kind"] == "near"
        assert (got["e1"]["cluster_id"], got["e1"]["kind"]) == ("n1", "near")
        assert (got["e2"]["cluster_id"], got["e2"]["kind"]) == ("n1", "exact")
        assert got["e2"]["similarity"] == got["e1"]["similarity"] >= cfg.threshold
        assert got["u1"] == decision("u1", "u1", "unique", 1.0)
        assert got["x1"] == decision("x1", "x1", "exact", 1.0)  # longer original text survives
        assert got["x2"] == decision("x2", "x1", "exact", 1.0)
        assert all(got[d["cluster_id"]]["kept"] for d in got.values())

    with _pipeline() as p:
        assert_that(p | beam.Create(docs) | DedupDecisions(cfg), check)
