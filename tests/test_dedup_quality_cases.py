"""Hard cases of the dedup quality benchmark: light edits, chains A-B-C, shared passages, and the
"don't care" pairs of the pairwise scores. Small corpora from the built-in fallback text (no
../shared/data needed), so nothing here is skipped."""

import itertools
import json
import random
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import dedup_corpus  # noqa: E402
import dedup_quality  # noqa: E402

from pipelines.config import DedupConfig  # noqa: E402
from pipelines.dedup.evaluate import adjusted_rand_index, clustering_report, pairwise_scores  # noqa: E402
from pipelines.dedup.lsh import lsh_params  # noqa: E402
from pipelines.dedup.minhash import MinHasher, signature_jaccard  # noqa: E402
from pipelines.dedup.near import near_duplicate_clusters_local  # noqa: E402
from pipelines.dedup.shingles import shingles  # noqa: E402

CFG = DedupConfig()


@pytest.fixture(scope="module")
def corpus():
    return dedup_corpus.generate(families=0, singletons=4, seed=3, data=None, light=40, chains=8, passages=4)


@pytest.fixture(scope="module")
def result(corpus):
    return dedup_quality.evaluate_corpus(corpus, CFG, CFG.minhash_scheme)


def _chains(records):
    roles = {}
    for r in records:
        if dedup_corpus.section_of(r) == "chain":
            roles.setdefault(r["family"], {})[r["edit"].get("role", "A")] = r
    return [(m["A"], m["B"], m["C"]) for _, m in sorted(roles.items())]


def _jac(x, y):
    return dedup_corpus.jaccard(shingles(x, CFG.ngram, CFG.cjk_ngram), shingles(y, CFG.ngram, CFG.cjk_ngram))


# -- generator ------------------------------------------------------------------------------------


def test_fallback_corpus_has_every_section(corpus):
    assert len({r["id"] for r in corpus}) == len(corpus)
    sections = {(r["lang"], dedup_corpus.section_of(r)) for r in corpus}
    assert sections == {(lang, s) for lang in ("en", "zh") for s in ("spec", "light", "chain", "passage")}
    extra = [r for r in corpus if dedup_corpus.section_of(r) != "spec"]
    assert {r["edit"]["source"] for r in extra} == {"fallback", "fallback+fallback"}
    light = [r for r in corpus if r["edit"]["kind"] == "light"]
    assert {(r["edit"]["op"], r["edit"]["rate"]) for r in light} == set(dedup_corpus.LIGHT_GRID)
    assert {r["edit"]["line"] for r in light} == {"header", "footer"}
    # Same arguments, same corpus; and records survive a JSONL round trip with their ignored pairs.
    again = dedup_corpus.generate(families=0, singletons=4, seed=3, data=None, light=40, chains=8, passages=4)
    assert again == corpus
    back = [json.loads(json.dumps(r, ensure_ascii=False)) for r in corpus]
    assert dedup_corpus.ignored_pairs(back) == dedup_corpus.ignored_pairs(corpus)


def test_light_edit_labels_and_survivor(corpus):
    originals = {r["family"]: r for r in corpus if r["edit"]["kind"] == "original"}
    for r in corpus:
        if r["edit"]["kind"] != "light":
            continue
        base = originals[r["family"]]
        assert r["cluster"] == base["id"] and r["lang"] == base["lang"]
        assert r["quality"] < base["quality"]  # the original is its family's survivor
        assert 0.01 <= r["edit"]["rate"] <= 0.06
        assert r["text"] != base["text"]


def test_cosmetic_changes_leave_the_shingles_alone():
    rng = random.Random(4)
    en = "Copyright 2024: the KING's men, 12 of them; all (rightly) paid... Well? Yes!\n\nO Romeo, Romeo."
    zh = (
        "版权所有 2024 古籍文库网\n\n子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎！人不知而不愠（注）。"
    )
    for lang, text in (("en", en), ("zh", zh)):
        for _ in range(20):
            noisy = dedup_corpus.widen(dedup_corpus.double_spaces(text, lang, rng), lang, rng)
            assert noisy != text
            assert shingles(noisy) == shingles(text)
    assert unicodedata.normalize("NFKC", dedup_corpus.to_fullwidth(en)) == en
    assert dedup_corpus.to_fullwidth("Ab1!") == "Ａｂ１！"


def test_chain_triples_meet_their_construction(corpus):
    chains = _chains(corpus)
    assert len(chains) == 16  # 8 per language, none given up
    for a, b, c in chains:
        jab, jbc, jac = _jac(a["text"], b["text"]), _jac(b["text"], c["text"]), _jac(a["text"], c["text"])
        assert jab >= dedup_corpus.CHAIN_MIN_AB
        assert jbc >= dedup_corpus.CHAIN_MIN_BC
        assert jac < dedup_corpus.CHAIN_MAX_AC
        assert (b["edit"]["jaccard_ab"], c["edit"]["jaccard_bc"], c["edit"]["jaccard_ac"]) == (
            round(jab, 4),
            round(jbc, 4),
            round(jac, 4),
        )
        assert a["quality"] > max(b["quality"], c["quality"])
        assert (a["cluster"], b["cluster"], c["cluster"]) == (a["id"], a["id"], c["id"])
    assert dedup_corpus.ignored_pairs(corpus) == {tuple(sorted((b["id"], c["id"]))) for _, b, c in chains}


def test_chain_triple_gives_up_when_impossible():
    # Fewer words than the n-gram: one shingle, so every edit gives J(A, B) = 0, never a duplicate.
    text = "one two three"
    assert dedup_corpus.chain_triple(text, "en", ["x"], random.Random(0)) is None


def test_reference_keeps_c_out_of_a_s_cluster(corpus):
    hasher = MinHasher(CFG.num_perm, CFG.seed, CFG.minhash_scheme, CFG.shingle_hash)
    params = lsh_params(CFG.threshold, CFG.num_perm, CFG.fp_weight, CFG.fn_weight)
    chains = _chains(corpus)
    docs = [d for chain in chains for d in chain]
    sigs = hasher.signatures([shingles(d["text"], CFG.ngram, CFG.cjk_ngram) for d in docs])
    sig = {d["id"]: s for d, s in zip(docs, sigs, strict=True)}
    inputs = [(d["id"], sig[d["id"]], d["quality"], len(d["text"])) for d in docs]
    pred = {
        d["doc_id"]: d["cluster_id"]
        for d in near_duplicate_clusters_local(inputs, params.bands, params.rows, CFG.threshold)
    }
    linked = together = 0
    for a, b, c in chains:
        assert pred[c["id"]] != pred[a["id"]]
        together += pred[b["id"]] == pred[a["id"]]
        ab, bc = signature_jaccard(sig[a["id"]], sig[b["id"]]), signature_jaccard(sig[b["id"]], sig[c["id"]])
        linked += ab >= CFG.threshold and bc >= CFG.threshold
    # The cut is exercised: in most chains A-B and B-C both clear the threshold, so connected
    # components alone would put A and C together; and B is found with A.
    assert linked >= len(chains) // 2
    assert together >= 0.75 * len(chains)


def test_passage_pairs_share_a_long_passage_but_are_not_duplicates(corpus, result):
    pairs = {}
    for r in corpus:
        if dedup_corpus.section_of(r) == "passage":
            pairs.setdefault(r["family"], []).append(r)
    assert len(pairs) == 8
    for d1, d2 in pairs.values():
        assert d1["cluster"] == d1["id"] and d2["cluster"] == d2["id"]
        shared = len(_common_prefix(d1["text"], d2["text"]))
        assert 0.35 <= shared / len(d1["text"]) <= 0.55 and 0.35 <= shared / len(d2["text"]) <= 0.55
        assert _jac(d1["text"], d2["text"]) < 0.45
    assert result["passage_false_merges"] == 0


def _common_prefix(x, y):
    return x[: next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))]


# -- benchmark report -----------------------------------------------------------------------------


def test_light_edit_recall_is_high_per_language(result):
    light = result["light_edit"]
    assert set(light) == {"en", "zh"}
    for lang, rep in light.items():
        assert rep["variants"] >= 60
        # 1-6 % edits plus a boilerplate line: only the 5-6 % edits come near the 0.51 threshold.
        assert rep["recall"] >= 0.85, (lang, rep)
        assert rep["variant_recall"] >= 0.9, (lang, rep)
        assert rep["precision"] == 1.0
        assert rep["misses"]["count"] == round((1 - rep["variant_recall"]) * rep["variants"])
    kinds = result["edit_kind_recall"]
    for rate in ("0.01", "0.02", "0.03", "0.04"):
        assert kinds[f"light:rate={rate}"] == {"en": 1.0, "zh": 1.0, "all": 1.0}
    assert result["light_edit_recall"] == {lang: rep["recall"] for lang, rep in light.items()}


def test_report_has_the_hard_negative_counts(result):
    assert result["chain_false_merges"] == 0
    for lang in ("en", "zh"):
        assert result["chains"][lang]["chains"] == 8
        assert result["chains"][lang]["false_merges"] == 0
        assert set(result["by_language"][lang]) == {"precision", "recall", "f1"}
    assert result["overall"]["ignored_pairs"] == 16
    assert {"light:op=substitute", "light:op=delete", "light:op=insert", "light:op=mixed"} <= set(
        result["edit_kind_recall"]
    )


# -- don't-care pairs -----------------------------------------------------------------------------


def _brute(pred, truth, subset=None, ignore=()):
    skip = {frozenset(p) for p in ignore}
    a = b = c = d = 0
    for x, y in itertools.combinations(sorted(pred), 2):
        if subset is not None and x not in subset and y not in subset:
            continue
        if frozenset((x, y)) in skip:
            continue
        same_p, same_t = pred[x] == pred[y], truth[x] == truth[y]
        a += same_p and same_t
        b += same_p and not same_t
        c += same_t and not same_p
        d += not same_p and not same_t
    return a, b, c, d


def test_ignored_pairs_are_neither_tp_fp_nor_fn():
    truth = {"A": 1, "B": 1, "C": 2, "D": 3, "E": 3}
    pred = {"A": 1, "B": 1, "C": 1, "D": 3, "E": 4}  # (A,C), (B,C) false merges; (D,E) missed
    base = pairwise_scores(pred, truth)
    assert (base["correct_pairs"], base["predicted_pairs"], base["true_pairs"]) == (1, 3, 2)
    fp = pairwise_scores(pred, truth, ignore=[("C", "B")])
    assert (fp["correct_pairs"], fp["predicted_pairs"], fp["true_pairs"]) == (1, 2, 2)
    assert fp["precision"] == 0.5 and fp["ignored_pairs"] == 1
    fn = pairwise_scores(pred, truth, ignore=[("D", "E"), ("E", "D")])  # one pair, given twice
    assert (fn["correct_pairs"], fn["predicted_pairs"], fn["true_pairs"]) == (1, 3, 1)
    assert fn["recall"] == 1.0 and fn["ignored_pairs"] == 1
    tp = pairwise_scores(pred, truth, ignore=[("A", "B")])
    assert (tp["correct_pairs"], tp["predicted_pairs"], tp["true_pairs"]) == (0, 2, 1)
    neither = pairwise_scores(pred, truth, ignore=[("A", "D")])
    assert {k: neither[k] for k in base} == base
    # Outside the subset an ignored pair is not scored at all.
    sub = pairwise_scores(pred, truth, subset={"D", "E"}, ignore=[("B", "C")])
    assert sub["ignored_pairs"] == 0
    assert {k: sub[k] for k in base} == pairwise_scores(pred, truth, subset={"D", "E"})
    with pytest.raises(ValueError):
        pairwise_scores(pred, truth, ignore=[("A", "A")])
    with pytest.raises(ValueError):
        pairwise_scores(pred, truth, ignore=[("A", "Z")])


def test_no_ignored_pairs_changes_nothing():
    rng = random.Random(5)
    for _ in range(30):
        n = rng.randint(2, 40)
        docs = [f"d{i}" for i in range(n)]
        truth = {d: rng.randrange(n // 3 + 1) for d in docs}
        pred = {d: truth[d] if rng.random() < 0.7 else rng.randrange(n) for d in docs}
        subset = set(rng.sample(docs, rng.randint(1, n)))
        for sub in (None, subset):
            plain = clustering_report(pred, truth, sub)
            empty = clustering_report(pred, truth, sub, ignore=[])
            assert empty.pop("ignored_pairs") == 0
            assert empty == plain
        assert adjusted_rand_index(pred, truth, ignore=[]) == adjusted_rand_index(pred, truth)


def test_ignored_pairs_equal_brute_force_on_random_labellings():
    rng = random.Random(6)
    for _ in range(40):
        n = rng.randint(3, 40)
        docs = [f"d{i}" for i in range(n)]
        truth = {d: rng.randrange(n // 3 + 1) for d in docs}
        pred = {d: truth[d] if rng.random() < 0.7 else rng.randrange(n) for d in docs}
        ignore = [tuple(rng.sample(docs, 2)) for _ in range(rng.randint(1, n))]
        subset = set(rng.sample(docs, rng.randint(1, n)))
        for sub in (None, subset):
            s = pairwise_scores(pred, truth, sub, ignore)
            a, b, c, _ = _brute(pred, truth, sub, ignore)
            assert (s["correct_pairs"], s["predicted_pairs"], s["true_pairs"]) == (a, a + b, a + c)
        a, b, c, d = _brute(pred, truth, None, ignore)
        den = (a + b) * (b + d) + (a + c) * (c + d)
        expected = 2 * (a * d - b * c) / den if den else 1.0
        assert adjusted_rand_index(pred, truth, ignore) == pytest.approx(expected)
        # ARI over a subset uses only the ignored pairs inside it.
        keep = set(rng.sample(docs, rng.randint(2, n)))
        inside = [p for p in ignore if p[0] in keep and p[1] in keep]
        sub_pred = {k: v for k, v in pred.items() if k in keep}
        sub_truth = {k: v for k, v in truth.items() if k in keep}
        assert clustering_report(pred, truth, keep, ignore)["ari"] == adjusted_rand_index(
            sub_pred, sub_truth, inside
        )
