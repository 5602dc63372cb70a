"""datatrove's Gopher + C4 + FineWeb cleaning on the benchmark corpus, measured like ours.

Run with the throwaway venv's python (never the project's)::

    python3.11 -m venv /tmp/dtvenv
    /tmp/dtvenv/bin/pip install "datatrove[processing]" orjson nltk spacy
    /tmp/dtvenv/bin/python bench/datatrove_clean.py --corpus /tmp/cleanbench/corpus --tasks 16 --workers 2

Pipeline: ``JsonlReader -> GopherRepetitionFilter -> GopherQualityFilter ->
C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQualityFilter -> JsonlWriter`` under
``LocalPipelineExecutor(tasks, workers)``, every filter at its defaults (``language="en"``, so English
spaCy word splitting is applied to every document, Chinese included). Prints ONE JSON line with the
fields of ``bench/clean_throughput.py`` (wall time, MB/s and docs/s overall and per core, peak RSS of
the process tree, kept fraction, kept/removed by source language) plus ``dropped_by_filter`` from the
executor's stats and ``per_doc_single_core``: after the timed run, on the first ``--per-doc``
documents of each language, the filters' CPU time in one process and which filter removed each
document and why (``first_failure``).

The driver sits under ``if __name__ == "__main__":`` because the executor's forkserver workers
re-import this file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clean_throughput import (  # noqa: E402  (stdlib-only helpers shared with our side)
    TreeMemorySampler,
    corpus_files,
    corpus_summary,
    cost_summary,
    log,
    machine_facts,
    rates,
    run_scan,
    sample_by_lang,
)


def filters() -> list[Any]:
    """The four filter steps, datatrove defaults except C4's terminal-punctuation line rule."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]


def dropped_by_filter(logging_dir: Path) -> dict[str, Any]:
    """Per filter: documents dropped in total and by reason, from the merged ``stats.json``."""
    path = logging_dir / "stats.json"
    if not path.is_file():
        return {}
    out: dict[str, Any] = {}
    for step in json.loads(path.read_text()):
        stats = step.get("stats", {})
        if "dropped" not in stats and "forwarded" not in stats:
            continue

        def total(v: Any) -> int:
            return int(v.get("total", 0) if isinstance(v, dict) else v)

        reasons = {k[len("dropped_") :]: total(v) for k, v in stats.items() if k.startswith("dropped_")}
        out[step["name"]] = {"dropped": total(stats.get("dropped", 0)), "reasons": reasons}
    return out


def kept_by_lang(out_dir: Path) -> Counter:
    counts: Counter = Counter()
    for f in sorted(out_dir.glob("*.jsonl*")):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                counts[json.loads(line).get("metadata", {}).get("lang", "unknown")] += 1
    return counts


def per_doc_cost(corpus: Path, n: int) -> dict[str, Any]:
    """Per language, on the first ``n`` documents: single-core CPU cost of the four filters run in
    sequence in this process (stopping at the first that removes the document, as the pipeline does)
    and ``first_failure``, which filter removed each document and why."""
    from datatrove.data import Document

    steps = filters()
    out: dict[str, Any] = {}
    for lang, records in sample_by_lang(corpus, n).items():
        docs = [Document(text=r["text"], id=r["id"], metadata={"lang": lang}) for r in records]
        for step in steps:  # warm-up: spaCy model construction
            step.filter(Document(text=records[0]["text"], id="warm-up"))
        verdicts: Counter = Counter()
        t0 = time.process_time()
        for doc in docs:
            verdict = "kept"
            for step in steps:
                res = step.filter(doc)
                ok, why = (res, "") if isinstance(res, bool) else res
                if not ok:
                    verdict = f"{type(step).__name__}:{why}"
                    break
            verdicts[verdict] += 1
        cost = cost_summary(records, time.process_time() - t0, verdicts["kept"])
        cost["first_failure"] = dict(verdicts.most_common())
        out[lang] = cost
    return out


def measure(corpus: Path, tasks: int, workers: int, work: Path) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    out_dir, logging_dir = work / "output", work / "logs"
    executor = LocalPipelineExecutor(
        pipeline=[JsonlReader(str(corpus), glob_pattern="*.jsonl"), *filters(), JsonlWriter(str(out_dir))],
        tasks=tasks,
        workers=workers,
        logging_dir=str(logging_dir),
        skip_completed=False,
    )
    summary = corpus_summary(corpus)
    files = corpus_files(corpus)
    cores = min(workers, os.cpu_count() or 1)
    load_start = os.getloadavg()[0]
    with TreeMemorySampler() as mem:
        t0 = time.perf_counter()
        executor.run()
        wall = time.perf_counter() - t0
    kept = kept_by_lang(out_dir)
    n_kept = sum(kept.values())
    result: dict[str, Any] = {
        "tool": "datatrove",
        "config": "Gopher rep + Gopher quality + C4 (no terminal-punct rule) + FineWeb, defaults (language=en)",
        "corpus": str(corpus),
        "input_mb": summary["text_mb"],
        "input_file_mb": round(sum(f.stat().st_size for f in files) / 1e6, 3),
        "files": len(files),
        "documents": summary["documents"],
        "wall_s": {"total": round(wall, 2)},
        "tasks": tasks,
        "workers": workers,
        "cores_used": cores,
    }
    result.update(rates(result, wall, cores))
    result.update(mem.report())
    result["mb_per_cpu_s"] = round(result["input_mb"] / result["cpu_s"], 3) if result["cpu_s"] else None
    result["ru_maxrss_parent_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["kept"] = n_kept
    result["kept_fraction"] = round(n_kept / summary["documents"], 4) if summary["documents"] else 0.0
    result["dropped_by_filter"] = dropped_by_filter(logging_dir)
    by_lang = {}
    for lang, n in sorted(summary["documents_by_lang"].items()):
        k = kept.get(lang, 0)
        by_lang[lang] = {"documents": n, "kept": k, "removed": n - k, "kept_fraction": round(k / n, 4)}
    result["by_lang"] = by_lang
    result["loadavg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    result["machine"] = machine_facts()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, type=Path, help="directory of *.jsonl files")
    ap.add_argument("--tasks", type=int, default=16, help="executor tasks (the reader shards by file)")
    ap.add_argument("--workers", type=int, default=2, help="executor worker processes")
    ap.add_argument("--scan-mb", type=float, default=0.0, help="also measure an N MB slice (fresh process)")
    ap.add_argument("--per-doc", type=int, default=1000, help="single-core cost on N documents per language")
    ap.add_argument("--only-per-doc", action="store_true", help="skip the pipeline run")
    args = ap.parse_args(argv)
    if args.only_per_doc:
        result = {"tool": "datatrove", "per_doc_single_core": per_doc_cost(args.corpus, args.per_doc)}
        print(json.dumps(result), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="dt-cleanbench-"))
    try:
        log(f"datatrove on {args.corpus}: tasks={args.tasks} workers={args.workers}")
        result = measure(args.corpus, args.tasks, args.workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.per_doc:
        result["per_doc_single_core"] = per_doc_cost(args.corpus, args.per_doc)
    if args.scan_mb:
        extra = ["--tasks", str(args.tasks), "--workers", str(args.workers), "--per-doc", "0"]
        scan = run_scan(Path(__file__).resolve(), args.corpus, args.scan_mb, extra)
        keys = ["input_mb", "documents", "wall_s", "mb_per_s_per_core", "parent_peak_rss_mb"]
        keys += ["workers_peak_rss_sum_mb", "workers_peak_rss_max_mb", "tree_peak_rss_mb", "tree_peak_pss_mb"]
        result["scan"] = {k: scan[k] for k in keys}
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
