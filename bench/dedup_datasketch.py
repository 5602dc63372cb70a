"""Plain datasketch near-dedup on the dedup benchmark corpus: the single-process baseline (issue 3).

For every document of ``--corpus`` (JSONL with ``id`` and ``text``), in file order: the shingle set of
``pipelines.dedup.shingles.shingles`` (our defaults: word 5-grams, CJK character 5-grams), a
``datasketch.MinHash(num_perm, seed=1, scheme="affine32")`` (permutations shared, not redrawn per
document) filled with ``update_batch``, a ``MinHashLSH(threshold,
num_perm)`` query whose hits are united with the document (union-find), then an insert. No candidate
verification, datasketch's default FP/FN weights (0.5/0.5). Documents with no shingle stay singletons.

Writes ``--pred`` (JSONL ``{"id", "cluster"}``, the cluster is the component's smallest id) and prints
ONE JSON line: wall seconds (reading included), time in shingling / MinHash / LSH, peak RSS and CPU
seconds (``clean_throughput.TreeMemorySampler``) and the LSH parameters.

Usage: ``python bench/dedup_datasketch.py --corpus /tmp/dedupspeed/corpus.jsonl --pred PRED.jsonl``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clean_throughput import TreeMemorySampler  # noqa: E402

SCHEME = "affine32"  # datasketch >= 2.0's default, and DedupConfig's


class UnionFind:
    """Union-find over hashable keys; the root of a set is its smallest key."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def dedup(corpus: Path, threshold: float, num_perm: int) -> tuple[dict[str, str], dict[str, float], tuple]:
    """``(doc id -> cluster, seconds per phase, (bands, rows))`` for the documents of ``corpus``."""
    from datasketch import MinHash, MinHashLSH

    from pipelines.dedup.shingles import shingles

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    proto = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME)
    uf = UnionFind()
    ids: list[str] = []
    spent = {"shingles_s": 0.0, "minhash_s": 0.0, "lsh_s": 0.0}
    clock = time.perf_counter
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            doc_id = doc["id"]
            ids.append(doc_id)
            t0 = clock()
            grams = shingles(doc["text"])
            t1 = clock()
            spent["shingles_s"] += t1 - t0
            if not grams:
                continue
            m = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME, permutations=proto.permutations)
            m.update_batch([g.encode("utf-8") for g in grams])
            t2 = clock()
            spent["minhash_s"] += t2 - t1
            for other in lsh.query(m):
                uf.union(doc_id, other)
            lsh.insert(doc_id, m, check_duplication=False)
            spent["lsh_s"] += clock() - t2
    pred = {doc_id: uf.find(doc_id) for doc_id in ids}
    return pred, {k: round(v, 2) for k, v in spent.items()}, (lsh.b, lsh.r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--threshold", type=float, default=0.55)
    ap.add_argument("--num-perm", type=int, default=128)
    args = ap.parse_args()
    with TreeMemorySampler() as mem:
        t0 = time.perf_counter()
        pred, phases, (bands, rows) = dedup(args.corpus, args.threshold, args.num_perm)
        wall = time.perf_counter() - t0
    args.pred.parent.mkdir(parents=True, exist_ok=True)
    with args.pred.open("w", encoding="utf-8") as fh:
        for doc_id, cluster in pred.items():
            fh.write(json.dumps({"id": doc_id, "cluster": cluster}) + "\n")
    result = {
        "tool": "datasketch",
        "wall_s": round(wall, 2),
        "phase_s": phases,
        **mem.report(),
        "config": {"threshold": args.threshold, "num_perm": args.num_perm, "bands": bands, "rows": rows},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
