"""Dedup quality on the generated corpus: prints one JSON line.

Runs the single-process reference of the dedup job's decisions (``pipelines/dedup/decisions.py``:
exact groups, then on their survivors shingles -> MinHash -> LSH buckets -> star edges ->
verification -> union-find -> survivor-centred clusters (``near.near_duplicate_clusters_local``),
exact duplicates re-pointed) with ``DedupConfig`` defaults (flags override
them) on ``bench/dedup_corpus.py``'s corpus, and scores the predicted clusters against the labels,
the chains' (B, C) pairs excluded as "don't care" pairs. Keys of the JSON line:

* ``overall`` / ``by_language``: pairwise precision/recall/F1 (``overall`` with ARI);
* ``light_edit_recall``: pairwise recall over the light-edit families per language (target >= 0.98);
  ``light_edit`` adds per language precision, the fraction of variants found with their original,
  and the misses: their true and estimated Jaccard to the original, op@rate and cause
  (``estimate_below_threshold``, ``not_lsh_candidates`` or ``candidates_but_separated``);
* ``chain_false_merges`` / ``chains``: chains whose A and C were clustered together (per language,
  with B-with-A recall and how many chains a transitive clustering would have merged);
* ``passage_false_merges`` / ``passages``: shared-passage pairs clustered together;
* ``edit_kind_recall``: fraction of variants found with their original per light-edit op, rate,
  header/footer and source (``light:...``) and per duplicate edit spec;
* ``slices``: per edit spec of the edit-spec families, P/R/F1 and ARI of the slice and the
  detection rate (for the edits that are not duplicates, the false-merge rate instead).

``--speed`` adds signatures/s of ``MinHasher`` vs datasketch.

Usage: ``python bench/dedup_quality.py [--corpus FILE] [--threshold 0.55] [--ngram 5] ... [--speed]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import dedup_corpus  # noqa: E402
from dedup_corpus import ignored_pairs, jaccard, section_of  # noqa: E402

from pipelines.config import DedupConfig  # noqa: E402
from pipelines.dedup.decisions import final_decisions  # noqa: E402
from pipelines.dedup.evaluate import clustering_report  # noqa: E402
from pipelines.dedup.exact import exact_duplicates_local  # noqa: E402
from pipelines.dedup.lsh import band_keys, lsh_params  # noqa: E402
from pipelines.dedup.minhash import MinHasher, signature_jaccard  # noqa: E402
from pipelines.dedup.near import near_duplicate_clusters_local  # noqa: E402
from pipelines.dedup.shingles import shingles  # noqa: E402


def _round(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def _spec_name(rec: dict[str, Any]) -> str:
    kind, rate = rec["edit"]["kind"], rec["edit"]["rate"]
    return f"{kind}@{rate:g}" if rate else kind


def speed(sets: list[set[str]], cfg: DedupConfig, scheme: str, repeats: int = 3) -> dict[str, Any]:
    """Signatures/s of ``MinHasher.signatures`` vs datasketch ``MinHash.update_batch`` on the same sets.

    The three variants run interleaved ``repeats`` times and the best CPU time (``process_time``) of
    each is kept, the fairest figure on a shared machine. Shingling is excluded (the same for both).
    """
    from datasketch import MinHash

    hasher = MinHasher(cfg.num_perm, cfg.seed, scheme)
    encoded = [[s.encode("utf-8") for s in x] for x in sets]
    proto = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=scheme)

    def ours() -> list:
        return list(hasher.signatures(sets))

    def datasketch_fresh() -> list:
        out = []
        for enc in encoded:
            m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=scheme)
            m.update_batch(enc)
            out.append(m.hashvalues)
        return out

    def datasketch_shared() -> list:
        out = []
        for enc in encoded:
            m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=scheme, permutations=proto.permutations)
            m.update_batch(enc)
            out.append(m.hashvalues)
        return out

    best = {"ours": float("inf"), "fresh": float("inf"), "shared": float("inf")}
    results: dict[str, list] = {}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("fresh", datasketch_fresh), ("shared", datasketch_shared)):
            t0 = time.process_time()
            results[name] = fn()
            best[name] = min(best[name], time.process_time() - t0)
    equal = all((a == b).all() for a, b in zip(results["ours"], results["fresh"], strict=True))
    n = len(sets)
    return {
        "documents": n,
        "mean_shingles": round(sum(map(len, sets)) / max(n, 1), 1),
        "minhasher_sig_per_s": round(n / best["ours"], 1),
        "datasketch_update_batch_sig_per_s": round(n / best["fresh"], 1),
        "datasketch_shared_permutations_sig_per_s": round(n / best["shared"], 1),
        "speedup_vs_update_batch": round(best["fresh"] / best["ours"], 2),
        "speedup_vs_shared_permutations": round(best["shared"] / best["ours"], 2),
        "identical_hashvalues": bool(equal),
    }


def predict(
    records: list[dict[str, Any]], cfg: DedupConfig, scheme: str
) -> tuple[dict[str, str], list[set[str]], dict[str, np.ndarray], Any]:
    """Decisions of the single-process reference (``decisions.py``): exact groups (when ``cfg.exact``)
    keep one survivor each, near clusters of the survivors, exact duplicates re-pointed to their
    survivor's cluster (``decisions.final_decisions``). Returns ``(doc -> cluster, shingle
    sets, doc -> signature, LSH params)``."""
    sets = [shingles(r["text"], cfg.ngram, cfg.cjk_ngram) for r in records]
    hasher = MinHasher(cfg.num_perm, cfg.seed, scheme, cfg.shingle_hash)
    sigs = hasher.signatures(sets)
    params = lsh_params(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)
    removed: dict[str, list[str]] = defaultdict(list)
    if cfg.exact:
        exact = exact_duplicates_local(
            ((r["id"], r["text"], r.get("quality")) for r in records),
            cfg.exact_lowercase,
            cfg.exact_strip_punct,
        )
        for d in exact:
            if not d["kept"]:
                removed[d["cluster_id"]].append(d["doc_id"])
    gone = {m for members in removed.values() for m in members}
    docs = [
        (r["id"], sig if s else None, r.get("quality"), len(r["text"]))
        for r, s, sig in zip(records, sets, sigs, strict=True)
        if r["id"] not in gone
    ]
    near = near_duplicate_clusters_local(docs, params.bands, params.rows, cfg.threshold, cfg.verify)
    decisions = [f for d in near for f in final_decisions(d, sorted(removed.get(d["doc_id"], [])))]
    pred = {d["doc_id"]: d["cluster_id"] for d in decisions}
    return pred, sets, {r["id"]: sig for r, sig in zip(records, sigs, strict=True)}, params


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {"min": round(v[0], 4), "median": round(v[len(v) // 2], 4), "max": round(v[-1], 4)}


def _rate(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def light_edit_report(
    records: list[dict[str, Any]],
    pred: dict[str, str],
    truth: dict[str, str],
    jac: Any,
    est: Any,
    cause: Any,
    threshold: float,
    ignore: set[tuple[str, str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per language: pairwise P/R/F1 over the light-edit families, the fraction of variants found
    with their original (the survivor), and the misses (true Jaccard to the original, edit kind and
    rate); plus recall per op / rate / header-or-footer / source across languages."""
    base_of = {
        r["family"]: r["id"] for r in records if section_of(r) == "light" and r["edit"]["kind"] == "original"
    }
    per_lang: dict[str, Any] = {}
    by_key: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for lang in sorted({r["lang"] for r in records}):
        ids = [r["id"] for r in records if r["lang"] == lang and section_of(r) == "light"]
        variants = [r for r in records if r["lang"] == lang and r["edit"]["kind"] == "light"]
        if not variants:
            continue
        rep = _round(clustering_report(pred, truth, ids, ignore))
        hits, misses = [], []
        for r in variants:
            base = base_of[r["family"]]
            hit = pred[r["id"]] == pred[base]
            hits.append(hit)
            e = r["edit"]
            src = e["source"] if e["source"].endswith("LICENSE") else e["source"].split("/")[0]
            for key in (f"op={e['op']}", f"rate={e['rate']:g}", f"line={e['line']}", f"source={src}"):
                by_key[key][lang].append(hit)
            if not hit:
                misses.append(
                    (jac(r["id"], base), est(r["id"], base), e["op"], e["rate"], cause(r["id"], base))
                )
        all_true = [jac(r["id"], base_of[r["family"]]) for r in variants]
        per_lang[lang] = {
            "families": len(set(base_of[r["family"]] for r in variants)),
            "variants": len(variants),
            "precision": rep["precision"],
            "recall": rep["recall"],
            "f1": rep["f1"],
            "true_pairs": rep["true_pairs"],
            "variant_recall": _rate(hits),
            "true_jaccard": _summary(all_true),
            "misses": {
                "count": len(misses),
                "true_jaccard": _summary([m[0] for m in misses]),
                "true_jaccard_below_threshold": sum(m[0] < threshold for m in misses),
                "estimated_jaccard": _summary([m[1] for m in misses]),
                "by_op_rate": dict(Counter(f"{m[2]}@{m[3]:g}" for m in misses).most_common()),
                "causes": dict(Counter(m[4] for m in misses).most_common()),
            },
        }
    kinds = {
        key: {lang: _rate(h) for lang, h in sorted(langs.items())}
        | {"all": _rate([x for h in langs.values() for x in h])}
        for key, langs in sorted(by_key.items())
    }
    return per_lang, kinds


def chain_report(
    records: list[dict[str, Any]], pred: dict[str, str], est: Any, cause: Any, threshold: float
) -> dict[str, Any]:
    """Per language: chains, B found with A (and why not), false merges (A, C clustered together) with
    their estimated J(A,C), chains a transitive clustering would merge (estimated J(A,B) and J(B,C)
    both >= threshold), and B clustered with C (the ignored pair)."""
    roles: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if section_of(r) == "chain":
            roles[r["family"]][r["edit"].get("role", "A")] = r
    out: dict[str, Any] = {}
    for lang in sorted({m["A"]["lang"] for m in roles.values()}):
        chains = [
            (m["A"]["id"], m["B"]["id"], m["C"]["id"]) for m in roles.values() if m["A"]["lang"] == lang
        ]
        false = sum(pred[a] == pred[c] for a, _, c in chains)
        out[lang] = {
            "chains": len(chains),
            "b_with_a": _rate([pred[a] == pred[b] for a, b, _ in chains]),
            "b_apart_causes": dict(Counter(cause(a, b) for a, b, _ in chains if pred[a] != pred[b])),
            "false_merges": false,
            "false_merge_estimated_jaccard_ac": [
                round(est(a, c), 4) for a, _, c in chains if pred[a] == pred[c]
            ],
            "false_merge_rate": _rate([pred[a] == pred[c] for a, _, c in chains]),
            "transitively_linked": sum(
                est(a, b) >= threshold and est(b, c) >= threshold for a, b, c in chains
            ),
            "c_with_b": sum(pred[b] == pred[c] for _, b, c in chains),
            "true_jaccard_ac": _summary(
                [m["C"]["edit"]["jaccard_ac"] for m in roles.values() if m["A"]["lang"] == lang]
            ),
        }
    if out:
        out["false_merges"] = sum(v["false_merges"] for v in out.values())
    return out


def passage_report(records: list[dict[str, Any]], pred: dict[str, str], jac: Any) -> dict[str, Any]:
    """Per language: pairs sharing one long passage, how many were clustered together, their true
    Jaccard and passage share."""
    pairs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if section_of(r) == "passage":
            pairs[r["family"]].append(r)
    out: dict[str, Any] = {}
    for lang in sorted({p[0]["lang"] for p in pairs.values()}):
        mine = [p for p in pairs.values() if p[0]["lang"] == lang and len(p) == 2]
        out[lang] = {
            "pairs": len(mine),
            "false_merges": sum(pred[a["id"]] == pred[b["id"]] for a, b in mine),
            "true_jaccard": _summary([jac(a["id"], b["id"]) for a, b in mine]),
            "passage_share": _summary([a["edit"]["rate"] for a, _ in mine]),
        }
    if out:
        out["false_merges"] = sum(v["false_merges"] for v in out.values())
    return out


def evaluate_corpus(records: list[dict[str, Any]], cfg: DedupConfig, scheme: str) -> dict[str, Any]:
    """Run the pure dedup path on ``records`` and score it (see the module docstring)."""
    t0 = time.perf_counter()
    pred, sets, sigs, params = predict(records, cfg, scheme)
    elapsed = time.perf_counter() - t0

    truth = {r["id"]: r["cluster"] for r in records}
    ignore = ignored_pairs(records)
    set_of = {r["id"]: s for r, s in zip(records, sets, strict=True)}

    def jac(a: str, b: str) -> float:
        return jaccard(set_of[a], set_of[b])

    def est(a: str, b: str) -> float:
        return signature_jaccard(sigs[a], sigs[b])

    # Edit-spec families are single-spec, so a spec's slice is its families (bases + variants): pairs
    # with a document of the slice are scored, and its ARI is over the slice alone.
    spec = [r for r in records if section_of(r) == "spec"]
    spec_of = {r["family"]: _spec_name(r) for r in spec if r["edit"]["kind"] != "original"}
    dup_of = {_spec_name(r): r["cluster"] != r["id"] for r in spec if r["edit"]["kind"] != "original"}
    slices: dict[str, list[str]] = defaultdict(list)
    for r in records:
        slices[f"lang={r['lang']}"].append(r["id"])
        if r["family"] in spec_of:
            slices[spec_of[r["family"]]].append(r["id"])
    base_of = {r["family"]: r["id"] for r in spec if r["edit"]["kind"] == "original"}
    merged: dict[str, list[bool]] = defaultdict(list)
    for r in spec:
        if r["edit"]["kind"] != "original":
            merged[_spec_name(r)].append(pred[r["id"]] == pred[base_of[r["family"]]])
    per_slice: dict[str, dict[str, Any]] = {}
    for name, ids in sorted(slices.items()):
        lang_slice = name.startswith("lang=")
        report = _round(clustering_report(pred, truth, ids, ignore if lang_slice else None))
        if lang_slice:
            per_slice[name] = report
        elif dup_of[name]:
            # Detection rate: the fraction of variants put in their base document's cluster.
            per_slice[name] = {"duplicate": True, "variants": len(merged[name]), **report}
            per_slice[name]["merged_with_base"] = round(sum(merged[name]) / len(merged[name]), 4)
        else:
            # Not duplicates: only false merges can happen, so P/R/F1 carry no information here.
            per_slice[name] = {
                "duplicate": False,
                "variants": len(merged[name]),
                "false_merge_rate": round(sum(merged[name]) / len(merged[name]), 4),
                "false_pairs": report["predicted_pairs"] - report["correct_pairs"],
            }

    def cause(a: str, b: str) -> str:
        """Why ``a`` and ``b`` ended in different clusters (a pair that should be together)."""
        if est(a, b) < cfg.threshold:
            return "estimate_below_threshold"
        if not set(band_keys(sigs[a], params.bands, params.rows)) & set(
            band_keys(sigs[b], params.bands, params.rows)
        ):
            return "not_lsh_candidates"
        # Candidates and similar enough, yet apart: the bucket's star edges come from its smallest id,
        # which can be dissimilar to one of them (then verification drops the only edge), or the
        # component's survivor is a third document.
        return "candidates_but_separated"

    light, light_kinds = light_edit_report(records, pred, truth, jac, est, cause, cfg.threshold, ignore)
    chains = chain_report(records, pred, est, cause, cfg.threshold)
    passages = passage_report(records, pred, jac)
    by_language = {
        name.split("=", 1)[1]: {k: per_slice[name][k] for k in ("precision", "recall", "f1")}
        for name in per_slice
        if name.startswith("lang=")
    }
    return {
        "overall": _round(clustering_report(pred, truth, ignore=ignore)),
        "by_language": by_language,
        "light_edit_recall": {lang: v["recall"] for lang, v in light.items()},
        "light_edit": light,
        "chain_false_merges": chains.get("false_merges"),
        "chains": chains,
        "passage_false_merges": passages.get("false_merges"),
        "passages": passages,
        "edit_kind_recall": {
            **{f"light:{k}": v for k, v in light_kinds.items()},
            **{name: v["merged_with_base"] for name, v in per_slice.items() if v.get("duplicate")},
        },
        "params": {
            "bands": params.bands,
            "rows": params.rows,
            "fp_area": round(params.fp_area, 4),
            "fn_area": round(params.fn_area, 4),
            "p_candidate_at_threshold": round(params.candidate_probability(cfg.threshold), 4),
        },
        "documents": len(records),
        "seconds": round(elapsed, 2),
        "slices": per_slice,
        "_sets": sets,
    }


def main() -> None:
    defaults = DedupConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--corpus", type=Path, default=None, help="JSONL from dedup_corpus.py (default: generate)"
    )
    ap.add_argument(
        "--families", type=int, default=dedup_corpus.DEFAULT_FAMILIES, help="edit-spec families per language"
    )
    ap.add_argument("--singletons", type=int, default=dedup_corpus.DEFAULT_SINGLETONS, help="per language")
    ap.add_argument(
        "--light", type=int, default=dedup_corpus.DEFAULT_LIGHT, help="light-edit families per language"
    )
    ap.add_argument(
        "--chains", type=int, default=dedup_corpus.DEFAULT_CHAINS, help="chains A-B-C per language"
    )
    ap.add_argument(
        "--passages",
        type=int,
        default=dedup_corpus.DEFAULT_PASSAGES,
        help="shared-passage pairs per language",
    )
    ap.add_argument("--seed", type=int, default=7, help="corpus seed when generating")
    ap.add_argument("--data", type=Path, default=dedup_corpus.DEFAULT_DATA)
    ap.add_argument("--threshold", type=float, default=defaults.threshold)
    ap.add_argument("--ngram", type=int, default=defaults.ngram)
    ap.add_argument("--cjk-ngram", type=int, default=defaults.cjk_ngram)
    ap.add_argument("--num-perm", type=int, default=defaults.num_perm)
    ap.add_argument("--fp-weight", type=float, default=defaults.fp_weight)
    ap.add_argument("--fn-weight", type=float, default=defaults.fn_weight)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--no-exact", action="store_true", help="near dedup alone, without the exact step")
    ap.add_argument("--scheme", default=getattr(defaults, "minhash_scheme", "affine32"))
    ap.add_argument("--shingle-hash", default=defaults.shingle_hash, choices=["poly", "sha1"])
    ap.add_argument("--speed", action="store_true", help="also time MinHasher against datasketch")
    args = ap.parse_args()

    cfg = dataclasses.replace(
        defaults,
        threshold=args.threshold,
        ngram=args.ngram,
        cjk_ngram=args.cjk_ngram,
        num_perm=args.num_perm,
        fp_weight=args.fp_weight,
        fn_weight=args.fn_weight,
        verify=not args.no_verify,
        exact=not args.no_exact,
        shingle_hash=args.shingle_hash,
    )
    if args.corpus:
        with args.corpus.open(encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        source = str(args.corpus)
    else:
        records = dedup_corpus.generate(
            args.families,
            args.singletons,
            args.seed,
            args.data,
            light=args.light,
            chains=args.chains,
            passages=args.passages,
            ngram=cfg.ngram,
            cjk_ngram=cfg.cjk_ngram,
        )
        source = "shared/data" if args.data.is_dir() else "built-in fallback text"
    result = evaluate_corpus(records, cfg, args.scheme)
    sets = result.pop("_sets")
    out = {
        "bench": "dedup_quality",
        "corpus": source,
        "config": {
            "threshold": cfg.threshold,
            "ngram": cfg.ngram,
            "cjk_ngram": cfg.cjk_ngram,
            "num_perm": cfg.num_perm,
            "fp_weight": cfg.fp_weight,
            "fn_weight": cfg.fn_weight,
            "verify": cfg.verify,
            "exact": cfg.exact,
            "scheme": args.scheme,
            "shingle_hash": cfg.shingle_hash,
        },
        **result,
    }
    if args.speed:
        out["speed"] = speed(sets, cfg, args.scheme)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
