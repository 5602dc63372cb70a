"""Near-dedup quality on the generated corpus: prints one JSON line.

Runs the single-process path that mirrors the Beam transforms (shingles -> MinHash -> LSH buckets ->
star edges -> verification -> union-find -> survivor) with ``DedupConfig`` defaults (flags override
them) on ``bench/dedup_corpus.py``'s corpus, and scores the predicted clusters against the labels:
pairwise precision/recall/F1 and ARI overall, per language and per edit kind/rate (the families
made with that edit; for the edits that are not duplicates, the false-merge rate instead). ``--speed`` adds signatures/s of ``MinHasher`` vs datasketch.

Usage: ``python bench/dedup_quality.py [--corpus FILE] [--threshold 0.7] [--ngram 5] ... [--speed]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import dedup_corpus  # noqa: E402

from pipelines.config import DedupConfig  # noqa: E402
from pipelines.dedup.evaluate import clustering_report  # noqa: E402
from pipelines.dedup.lsh import lsh_params  # noqa: E402
from pipelines.dedup.minhash import MinHasher  # noqa: E402
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


def evaluate_corpus(records: list[dict[str, Any]], cfg: DedupConfig, scheme: str) -> dict[str, Any]:
    """Run the pure near-dedup path on ``records`` and score it."""
    t0 = time.perf_counter()
    sets = [shingles(r["text"], cfg.ngram, cfg.cjk_ngram) for r in records]
    hasher = MinHasher(cfg.num_perm, cfg.seed, scheme, cfg.shingle_hash)
    sigs = hasher.signatures(sets)
    params = lsh_params(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)
    docs = [
        (r["id"], sig if s else None, r.get("quality"), len(r["text"]))
        for r, s, sig in zip(records, sets, sigs, strict=True)
    ]
    decisions = near_duplicate_clusters_local(docs, params.bands, params.rows, cfg.threshold, cfg.verify)
    elapsed = time.perf_counter() - t0

    pred = {d["doc_id"]: d["cluster_id"] for d in decisions}
    truth = {r["id"]: r["cluster"] for r in records}
    # Families are single-spec, so a spec's slice is its families (bases + variants): pairs with a
    # document of the slice are scored, and its ARI is over the slice alone.
    spec_of = {r["family"]: _spec_name(r) for r in records if r["edit"]["kind"] != "original"}
    dup_of = {_spec_name(r): r["cluster"] != r["id"] for r in records if r["edit"]["kind"] != "original"}
    slices: dict[str, list[str]] = defaultdict(list)
    for r in records:
        slices[f"lang={r['lang']}"].append(r["id"])
        if r["family"] in spec_of:
            slices[spec_of[r["family"]]].append(r["id"])
    base_of = {r["family"]: r["id"] for r in records if r["edit"]["kind"] == "original"}
    merged: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        if r["edit"]["kind"] != "original":
            merged[_spec_name(r)].append(pred[r["id"]] == pred[base_of[r["family"]]])
    per_slice: dict[str, dict[str, Any]] = {}
    for name, ids in sorted(slices.items()):
        report = _round(clustering_report(pred, truth, ids))
        if name.startswith("lang="):
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
    return {
        "overall": _round(clustering_report(pred, truth)),
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
    ap.add_argument("--families", type=int, default=300)
    ap.add_argument("--singletons", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7, help="corpus seed when generating")
    ap.add_argument("--data", type=Path, default=dedup_corpus.DEFAULT_DATA)
    ap.add_argument("--threshold", type=float, default=defaults.threshold)
    ap.add_argument("--ngram", type=int, default=defaults.ngram)
    ap.add_argument("--cjk-ngram", type=int, default=defaults.cjk_ngram)
    ap.add_argument("--num-perm", type=int, default=defaults.num_perm)
    ap.add_argument("--fp-weight", type=float, default=defaults.fp_weight)
    ap.add_argument("--fn-weight", type=float, default=defaults.fn_weight)
    ap.add_argument("--no-verify", action="store_true")
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
        shingle_hash=args.shingle_hash,
    )
    if args.corpus:
        with args.corpus.open(encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        source = str(args.corpus)
    else:
        records = dedup_corpus.generate(args.families, args.singletons, args.seed, args.data)
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
