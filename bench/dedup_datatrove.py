"""datatrove's 4-stage MinHash dedup on the dedup benchmark corpus, measured like ours (issue 3).

Run with the throwaway datatrove venv's python, never the project's::

    python3.11 -m venv /tmp/dtvenv_dedup
    /tmp/dtvenv_dedup/bin/pip install "datatrove[processing]==0.10.1" orjson nltk spacy jieba
    /tmp/dtvenv_dedup/bin/python bench/dedup_datatrove.py --input en=DIR --out OUT --pred PRED.jsonl

Per ``--input LANG=DIR`` (one JSONL file per task, fields ``id`` and ``text``) the four stages run one
after the other, each a ``LocalPipelineExecutor(workers=--workers)``:

1. ``JsonlReader -> MinhashDedupSignature(language=LANG)``, tasks = files;
2. ``MinhashDedupBuckets``, tasks = ``num_buckets``;
3. ``MinhashDedupCluster(save_cluster_id=True)``, one task;
4. ``JsonlReader -> MinhashDedupFilter(load_cluster_ids=True, exclusion_writer=JsonlWriter) ->
   JsonlWriter``, tasks = files (kept and removed documents written, gzip JSONL, the writer default).

``--language`` overrides the word tokenizer language of every input (``eng`` with ``--input all=DIR``
is datatrove's default). ``NAME=DIR@N,B,R`` gives that input its own n-gram size, buckets and hashes
per bucket instead of ``--ngram/--buckets/--rows``. Several inputs (e.g. ``en=`` and ``zh=``) are deduplicated independently, as
datatrove users route documents by language; cluster ids are prefixed with the input name.

After the timed run, the cluster id of every document is read back from stage 4's outputs
(``minhash_cluster_id``; -1, or absent, means a singleton) and written to ``--pred`` as JSONL
``{"id", "cluster"}``. Prints ONE JSON line: wall seconds in total and per stage, peak RSS/PSS and CPU
seconds of the process tree (``clean_throughput.TreeMemorySampler``, stdlib only), and the config.

The driver sits under ``if __name__ == "__main__":``: the executor's forkserver workers re-import
this file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clean_throughput import TreeMemorySampler, log  # noqa: E402  (stdlib-only helpers)


def minhash_config(ngram: int, buckets: int, rows: int) -> Any:
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=ngram, num_buckets=buckets, hashes_per_bucket=rows)


def run_one(name: str, folder: Path, language: str, config: Any, out: Path, workers: int) -> dict[str, float]:
    """The four stages on ``folder``; returns seconds per stage."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    tasks = len(sorted(folder.glob("*.jsonl")))
    root = out / name
    sigs, buckets, clusters = root / "signatures", root / "buckets", root / "clusters"
    stages = {
        "signature": LocalPipelineExecutor(
            [
                JsonlReader(str(folder), glob_pattern="*.jsonl"),
                MinhashDedupSignature(str(sigs), config=config, language=language),
            ],
            tasks=tasks,
            workers=workers,
            logging_dir=str(root / "logs" / "signature"),
        ),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(str(sigs), str(buckets), config=config)],
            tasks=config.num_buckets,
            workers=workers,
            logging_dir=str(root / "logs" / "buckets"),
        ),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(str(buckets), str(clusters), config=config, save_cluster_id=True)],
            tasks=1,
            workers=1,
            logging_dir=str(root / "logs" / "cluster"),
        ),
        "filter": LocalPipelineExecutor(
            [
                JsonlReader(str(folder), glob_pattern="*.jsonl"),
                MinhashDedupFilter(
                    str(clusters),
                    exclusion_writer=JsonlWriter(str(root / "removed")),
                    load_cluster_ids=True,
                ),
                JsonlWriter(str(root / "kept")),
            ],
            tasks=tasks,
            workers=workers,
            logging_dir=str(root / "logs" / "filter"),
        ),
    }
    seconds = {}
    for stage, executor in stages.items():
        t0 = time.perf_counter()
        executor.run()
        seconds[stage] = round(time.perf_counter() - t0, 2)
        log(f"datatrove {name} {stage}: {seconds[stage]} s")
    return seconds


def read_clusters(name: str, out: Path) -> dict[str, str]:
    """``doc id -> cluster label`` from stage 4's kept and removed documents."""
    pred: dict[str, str] = {}
    for sub in ("kept", "removed"):
        for path in sorted((out / name / sub).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    doc = json.loads(line)
                    cid = (doc.get("metadata") or {}).get("minhash_cluster_id", -1)
                    pred[doc["id"]] = f"{name}:{cid}" if cid is not None and cid >= 0 else doc["id"]
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--input", action="append", required=True, help="NAME=DIR; NAME is the tokenizer language"
    )
    ap.add_argument("--language", default=None, help="word tokenizer language for every input")
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8, help="hashes per bucket")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="scratch folder (emptied first)")
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--label", default="datatrove")
    args = ap.parse_args()

    inputs = []
    for spec in args.input:
        name, folder = spec.split("=", 1)
        params = (args.ngram, args.buckets, args.rows)
        if "@" in folder:
            folder, custom = folder.split("@", 1)
            params = tuple(int(v) for v in custom.split(","))
        inputs.append((name, Path(folder), params))
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    stage_s: dict[str, dict[str, float]] = {}
    with TreeMemorySampler() as mem:
        t0 = time.perf_counter()
        for name, folder, params in inputs:
            config = minhash_config(*params)
            stage_s[name] = run_one(name, folder, args.language or name, config, args.out, args.workers)
        wall = time.perf_counter() - t0
    pred: dict[str, str] = {}
    for name, _, _ in inputs:
        pred.update(read_clusters(name, args.out))
    args.pred.parent.mkdir(parents=True, exist_ok=True)
    with args.pred.open("w", encoding="utf-8") as fh:
        for doc_id, cluster in pred.items():
            fh.write(json.dumps({"id": doc_id, "cluster": cluster}) + "\n")
    result = {
        "tool": args.label,
        "wall_s": round(wall, 2),
        "stage_s": stage_s,
        **mem.report(),
        "config": {
            name: {
                "language": args.language or name,
                "n_grams": params[0],
                "num_buckets": params[1],
                "hashes_per_bucket": params[2],
                "hash": str(minhash_config(*params).hash_config),
            }
            for name, _, params in inputs
        },
        "workers": args.workers,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
