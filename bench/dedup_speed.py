"""Dedup speed benchmark (issue 3): our Beam dedup stage vs datatrove vs plain datasketch, one run.

Corpus: ``bench/dedup_corpus.py``'s families (a real base text plus 1-N variants made by its edit specs,
ground truth in ``cluster``), scaled up. ``dedup_corpus.generate`` draws the same number of bases for
both languages and at most 6 per Chinese book, which caps it at ~8,000 documents (tinyshakespeare has
~570 English chunks of 1-3 KB). ``build_records`` therefore uses *every* real chunk (no per-book cap)
with the generator's own chunking, vocabulary and ``make_variant``/``EDIT_SPECS``; a base is a family
(1-``max_variants`` variants, spec round-robin per language) or, with probability
``singleton_fraction``, an unrelated singleton. zh-classics repeats passages (several editions of a
text, quotations), so bases that overlap another base (exact Jaccard >= ``SOURCE_OVERLAP`` of their
shingle sets, candidates from a permissive 64x2 LSH) are all dropped: the ground truth then has no
unlabelled duplicates that would count as false merges for every tool.

The corpus is written once under ``--work``: ``corpus.jsonl`` (records with labels, for datasketch and
scoring), ``jsonl/all/part-XX.jsonl`` plus ``jsonl/en`` / ``jsonl/zh`` (``id`` + ``text`` only, one file
per datatrove task) and a committed ``clean`` stage of ``--shards`` Parquet shards in ``data/``.

Each tool then runs in a fresh subprocess, one after the other, and measures itself (wall seconds of
the work only, peak RSS/PSS and CPU seconds of its process tree sampled from /proc every 0.5 s, see
``clean_throughput.TreeMemorySampler``); the driver scores its ``doc id -> cluster`` predictions with
``pipelines.dedup.evaluate.clustering_report`` (overall and per language) and prints ONE JSON line per
tool run. Tools: ``ours`` (``pipelines.dedup.job.run``, default ``DedupConfig``, FnApiRunner
multi_processing), ``datatrove-default`` / ``datatrove-tuned`` (``bench/dedup_datatrove.py``, run with
the datatrove venv's python) and ``datasketch`` (``bench/dedup_datasketch.py``).

``--profile`` instead runs our stage in_memory under cProfile and times shingling + ``MinHasher``
alone, to show where the time goes.

Usage::

    python bench/dedup_speed.py --work /tmp/dedupspeed --wait-load 1.5 \
        --dt-python /tmp/dtvenv_dedup/bin/python [--tools ours,datatrove-default,...] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))  # bench/ is not a package

import dedup_corpus  # noqa: E402
from clean_throughput import TreeMemorySampler, log, machine_facts  # noqa: E402

TOOLS = ("ours", "datatrove-default", "datatrove-tuned", "datasketch")
CORPUS_VERSION = 2  # bump when build_records changes, so a cached corpus is rebuilt
SOURCE_OVERLAP = 0.2


# ---------------------------------------------------------------------------------------- corpus


def real_bases(lang: str, rng: random.Random, data: Path) -> list[list[str]]:
    """Every 1-3 KB chunk of the real source of ``lang`` (the generator's chunking, no per-book cap)."""
    if lang == "en":
        return list(dedup_corpus._chunks(dedup_corpus._shakespeare_paragraphs(data / "tinyshakespeare" / "input.txt"), rng))
    books = sorted((data / "zh-classics" / "books").rglob("*.txt"))
    out: list[list[str]] = []
    for book in books:
        out.extend(dedup_corpus._chunks(dedup_corpus._zh_paragraphs([book]), rng))
    return out


def overlapping_bases(texts: list[str], min_jaccard: float = SOURCE_OVERLAP) -> set[int]:
    """Indices of texts whose shingle set has exact Jaccard >= ``min_jaccard`` with another text's.

    Candidates share one of 64 bands of 2 MinHash rows (found with probability > 0.99 at Jaccard 0.3).
    """
    from pipelines.dedup.minhash import MinHasher
    from pipelines.dedup.shingles import shingles

    sets = [shingles(t) for t in texts]
    sigs = MinHasher(128, seed=11).signatures(sets)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    for i, sig in enumerate(sigs):
        if sets[i]:
            for b in range(64):
                buckets.setdefault((b, sig[2 * b : 2 * b + 2].tobytes()), []).append(i)
    pairs = {(m[0], j) for m in buckets.values() for j in m[1:]}
    out: set[int] = set()
    for i, j in pairs:
        a, b = sets[i], sets[j]
        if len(a & b) >= min_jaccard * len(a | b):
            out.update((i, j))
    return out


def build_records(
    seed: int = 7,
    max_variants: int = 6,
    singleton_fraction: float = 0.1,
    data: Path = dedup_corpus.DEFAULT_DATA,
) -> list[dict[str, Any]]:
    """The labelled corpus (``dedup_corpus`` record format), deterministic for the same arguments."""
    rng = random.Random(seed)
    used: set[str] = set()
    records: list[dict[str, Any]] = []

    def new_id(lang: str) -> str:
        while True:
            doc_id = f"{lang}-{rng.getrandbits(48):012x}"
            if doc_id not in used:
                used.add(doc_id)
                return doc_id

    for lang in ("en", "zh"):
        bases = real_bases(lang, rng, data)
        drop = overlapping_bases(["\n\n".join(p) for p in bases])
        bases = [p for i, p in enumerate(bases) if i not in drop]
        vocab = dedup_corpus._vocab(bases, lang)
        families = 0
        for f, paragraphs in enumerate(bases):
            base_id = new_id(lang)
            family = f"{lang}-f{f:05d}"
            records.append(
                {
                    "id": base_id,
                    "text": unicodedata.normalize("NFC", "\n\n".join(paragraphs)),
                    "cluster": base_id,
                    "lang": lang,
                    "edit": {"kind": "original", "rate": 0.0},
                    "family": family,
                    "quality": round(rng.random(), 4),
                }
            )
            if rng.random() < singleton_fraction:
                continue
            kind, rate, is_dup = dedup_corpus.EDIT_SPECS[families % len(dedup_corpus.EDIT_SPECS)]
            families += 1
            for _ in range(rng.randint(1, max_variants)):
                doc_id = new_id(lang)
                records.append(
                    {
                        "id": doc_id,
                        "text": dedup_corpus.make_variant(paragraphs, lang, kind, rate, vocab, rng),
                        "cluster": base_id if is_dup else doc_id,
                        "lang": lang,
                        "edit": {"kind": kind, "rate": rate},
                        "family": family,
                        "quality": round(rng.random(), 4),
                    }
                )
    rng.shuffle(records)
    return records


def commit_clean_stage(data_dir: Path, records: list[dict[str, Any]], shards: int) -> str:
    """Commit ``records`` as the ``clean`` stage in ``shards`` Parquet shards (record i -> shard i % n)."""
    from pipelines import schemas, storage

    version = storage.new_version(data_dir, "clean", "bench")
    for s in range(shards):
        writer = storage.ShardWriter(
            version.dir("documents"), f"{s:05d}", schemas.DOCUMENTS, max_shard_bytes=1 << 30, row_group_rows=2048
        )
        for i in range(s, len(records), shards):
            r = records[i]
            writer.write(
                {
                    "id": r["id"],
                    "text": r["text"],
                    "source": "dedup-bench",
                    "offset": i,
                    "lang": r["lang"],
                    "lang_score": 1.0,
                    "quality": r["quality"],
                    "tags": [],
                }
            )
        writer.close()
    entries = {k: storage.collect_shards(version.dir(k)) for k in ("documents", "ledger")}
    storage.commit(version, config={}, upstream={}, entries=entries)
    return version.name


def _write_parts(folder: Path, records: list[dict[str, Any]], parts: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    handles = [(folder / f"part-{p:03d}.jsonl").open("w", encoding="utf-8") for p in range(parts)]
    for i, r in enumerate(records):
        handles[i % parts].write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
    for h in handles:
        h.close()


def prepare(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the corpus and its three on-disk forms under ``work``; returns its summary."""
    params = {
        "version": CORPUS_VERSION,
        "seed": args.seed,
        "max_variants": args.max_variants,
        "singleton_fraction": args.singleton_fraction,
        "shards": args.shards,
        "tasks": args.tasks,
    }
    summary_path = work / "corpus.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            log(f"reusing the corpus in {work}")
            return summary
    import shutil

    for name in ("data", "jsonl", "corpus.jsonl", "corpus.json"):
        p = work / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = build_records(args.seed, args.max_variants, args.singleton_fraction)
    dedup_corpus.write_jsonl(records, work / "corpus.jsonl")
    _write_parts(work / "jsonl" / "all", records, args.tasks)
    for lang in ("en", "zh"):
        _write_parts(work / "jsonl" / lang, [r for r in records if r["lang"] == lang], args.tasks)
    clean = commit_clean_stage(work / "data", records, args.shards)
    by_lang = Counter(r["lang"] for r in records)
    mb_by_lang = Counter()
    for r in records:
        mb_by_lang[r["lang"]] += len(r["text"].encode("utf-8")) / 1e6
    truth_sizes = Counter(Counter(r["cluster"] for r in records).values())
    summary = {
        "params": params,
        "documents": len(records),
        "documents_by_lang": dict(sorted(by_lang.items())),
        "text_mb": round(sum(mb_by_lang.values()), 3),
        "text_mb_by_lang": {k: round(v, 3) for k, v in sorted(mb_by_lang.items())},
        "true_clusters": sum(truth_sizes.values()),
        "true_cluster_sizes": {str(k): v for k, v in sorted(truth_sizes.items())},
        "true_pairs": sum(n * (k * (k - 1) // 2) for k, n in truth_sizes.items()),
        "clean_version": clean,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary
