"""Dedup speed benchmark (issue 3): our Beam dedup stage vs datatrove, text-dedup and datasketch, one run.

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
per datatrove task), a committed ``clean`` stage of ``--shards`` Parquet shards in ``data/`` and, when
text-dedup is among ``--tools``, ``hf/``: ``jsonl/all`` as a ``datasets.Dataset.save_to_disk`` folder
(``hf/dataset``, written by the text-dedup venv's python) with ``hf/ids.txt`` (the id of every row, in
row order) and ``hf/meta.json``.

Each tool then runs in a fresh subprocess, one after the other, and measures itself (wall seconds of
the work only, peak RSS/PSS and CPU seconds of its process tree sampled from /proc every 0.5 s, see
``clean_throughput.TreeMemorySampler``); the driver scores its ``doc id -> cluster`` predictions with
``pipelines.dedup.evaluate.clustering_report`` (overall and per language) and prints ONE JSON line per
tool run. Tools: ``ours`` (``pipelines.dedup.job.run``, default ``DedupConfig``, FnApiRunner
multi_processing), ``datatrove-default`` / ``datatrove-tuned`` (``bench/dedup_datatrove.py``, run with
the datatrove venv's python), ``datasketch`` (``bench/dedup_datasketch.py``) and ``text-dedup``.

``text-dedup`` (0.4.0 from PyPI in a throwaway venv, ``--td-python``) runs its own CLI with its default
settings (word 5-grams of tokens split on non-word characters, 250 permutations, threshold 0.7, sha1)
plus ``--debug``::

    python -m text_dedup.minhash --path COPY --local --output OUT --column text --num_proc W --debug

on a fresh copy of ``hf/dataset`` (it writes its ``datasets`` cache files next to its input, and a
run that dies before its cleanup leaves fingerprinted map results there that a later run could reuse).
It cannot measure itself, so the driver samples its process tree from outside (same sampler);
``wall_s`` is its own ``Total`` timer (loading the dataset to saving the output, like the other tools'
work-only wall) and ``process_wall_s`` the whole process (imports included). Its clusters come from
``OUT/uf.pkl`` (a pickled union-find over row indices, read without importing text_dedup) mapped back to
ids through ``hf/ids.txt``; rows it never hashed (fewer than ``--min_length`` 5 such tokens: it drops
them from its output altogether) and rows alone in every LSH bucket are singletons.

``--profile`` instead times shingling + ``MinHasher`` alone, then runs our stage in_memory (one
process) and reports the CPU seconds of every fused Beam stage (``--cprofile``: also a cProfile run).

datatrove-tuned is the best config found on a separate labelled corpus (``dedup_corpus.generate(300,
200, seed=11)``): documents routed by language, English ``language="en"`` with word 5-grams and 20x5
buckets, Chinese ``language="cmn"`` (spaCy + jieba; ``"zh"`` maps to spaCy's unsegmented ``xx``
tokenizer in datatrove 0.10.1) with word 5-grams and 28x4 buckets (``--dt-en`` / ``--dt-zh``).

Usage::

    python bench/dedup_speed.py --work /tmp/dedupspeed --wait-load 1.5 \
        --dt-python /tmp/dtvenv_dedup/bin/python --td-python /tmp/tdvenv/bin/python \
        [--tools ours,datatrove-default,datatrove-tuned,datasketch,text-dedup] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))  # bench/ is not a package

import dedup_corpus  # noqa: E402
from clean_throughput import TreeMemorySampler, log, machine_facts  # noqa: E402

from assets.graph import run_stage  # noqa: E402

TOOLS = ("ours", "datatrove-default", "datatrove-tuned", "datasketch", "text-dedup")
CORPUS_VERSION = 2  # bump when build_records changes, so a cached corpus is rebuilt
SOURCE_OVERLAP = 0.2


# ---------------------------------------------------------------------------------------- corpus


def real_bases(lang: str, rng: random.Random, data: Path) -> list[list[str]]:
    """Every 1-3 KB chunk of the real source of ``lang`` (the generator's chunking, no per-book cap)."""
    if lang == "en":
        return list(
            dedup_corpus._chunks(
                dedup_corpus._shakespeare_paragraphs(data / "tinyshakespeare" / "input.txt"), rng
            )
        )
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
    max_variants: int = 7,
    singleton_fraction: float = 0.1,
    data: Path = dedup_corpus.DEFAULT_DATA,
    max_bases: int = 0,
) -> list[dict[str, Any]]:
    """The labelled corpus (``dedup_corpus`` record format), deterministic for the same arguments.

    ``max_bases`` > 0 keeps that many evenly spaced bases per language (smoke tests).
    """
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
        if 0 < max_bases < len(bases):  # a smaller corpus for smoke tests, spread over the source
            bases = [bases[i * len(bases) // max_bases] for i in range(max_bases)]
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


def commit_clean_stage(data_dir: Path, records: Iterable[dict[str, Any]], shards: int) -> str:
    """Commit ``records`` as the ``clean`` stage in ``shards`` Parquet shards (record i -> shard i % n).

    ``records`` (``id``, ``text``, ``lang``, ``quality``) is consumed once, as a stream: the shards are
    written side by side, so a corpus larger than memory can be committed (``bench/dedup_scaling.py``).
    """
    from pipelines import schemas, storage

    version = storage.new_version(data_dir, "clean", "bench")
    writers = [
        storage.ShardWriter(
            version.dir("documents"),
            f"{s:05d}",
            schemas.DOCUMENTS,
            max_shard_bytes=1 << 30,
            row_group_rows=2048,
        )
        for s in range(shards)
    ]
    for i, r in enumerate(records):
        writers[i % shards].write(
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
    for writer in writers:
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
        "max_bases": args.max_bases,
        "shards": args.shards,
        "tasks": args.tasks,
    }
    summary_path = work / "corpus.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            log(f"reusing the corpus in {work}")
            _prepare_text_dedup(work, args)
            return summary
    for name in ("data", "jsonl", "hf", "corpus.jsonl", "corpus.json"):
        p = work / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = build_records(args.seed, args.max_variants, args.singleton_fraction, max_bases=args.max_bases)
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
    _prepare_text_dedup(work, args)
    return summary


def _prepare_text_dedup(work: Path, args: argparse.Namespace) -> None:
    """``hf/`` (text-dedup's input) from ``jsonl/all`` when text-dedup is to run and it is missing."""
    if "text-dedup" not in args.tools.split(",") or (work / "hf" / "meta.json").is_file():
        return
    meta = write_td_dataset(sorted((work / "jsonl" / "all").glob("*.jsonl")), work / "hf", args.td_python)
    log(f"text-dedup input: {json.dumps(meta)}")


# ------------------------------------------------------------------------------------- text-dedup

TD_MIN_LENGTH = 5  # text-dedup 0.4.0's --min_length default: rows with fewer tokens are dropped
TD_DEFAULTS = "text_dedup.minhash defaults (ngram 5, num_perm 250, threshold 0.7 -> 25x10 bands, sha1)"

# Run with the text-dedup venv's python (its ``datasets``): argv = OUT MIN_LENGTH JSONL... ; writes
# OUT/dataset (save_to_disk of the files' id + text, in file order), OUT/ids.txt and OUT/meta.json.
TD_PREPARE = r"""
import json, re, shutil, sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.json as pj

NON_ALPHA = re.compile(r"\W", re.UNICODE)  # text_dedup.minhash's tokenizer and short-row filter
out, min_length, files = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
tables, short = [], 0
with (out / "ids.txt").open("w", encoding="utf-8") as ids:
    for f in files:
        t = pj.read_json(f).select(["id", "text"])
        for doc_id in t.column("id").to_pylist():
            ids.write(doc_id + "\n")
        short += sum(len(NON_ALPHA.split(x.lower())) < min_length for x in t.column("text").to_pylist())
        tables.append(t)
table = pa.concat_tables(tables)
datasets.Dataset(table).save_to_disk(str(out / "dataset"))
meta = {"rows": table.num_rows, "short_rows": short, "min_length": min_length,
        "datasets": datasets.__version__, "files": len(files)}
(out / "meta.json").write_text(json.dumps(meta))
print(json.dumps(meta))
"""


def td_env(scratch: Path) -> dict[str, str]:
    """text-dedup's environment: its caches and temp files under ``scratch``, offline, wide log lines."""
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "TMPDIR": str(scratch / "tmp"),
        "HF_HOME": str(scratch / "hf-home"),
        "HF_DATASETS_CACHE": str(scratch / "hf-cache"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
        "COLUMNS": "250",  # rich's log lines are not wrapped, so its timers can be parsed
    }


def write_td_dataset(files: list[Path], out: Path, python: str) -> dict[str, Any]:
    """Write ``files`` (JSONL with ``id`` and ``text``) as text-dedup's input under ``out``; returns meta."""
    if not files:
        raise SystemExit("no JSONL files to convert for text-dedup")
    if not Path(python).is_file():
        raise SystemExit(
            f"text-dedup venv python not found at {python}; create it with:\n"
            "  python3.11 -m venv /tmp/tdvenv && /tmp/tdvenv/bin/pip install text-dedup==0.4.0"
        )
    cmd = [python, "-c", TD_PREPARE, str(out), str(TD_MIN_LENGTH), *map(str, files)]
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"writing text-dedup's input failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def td_version(python: str) -> str | None:
    proc = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('text-dedup'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def td_command(python: str, dataset: Path, output: Path, workers: int, *, debug: bool = True) -> list[str]:
    """text-dedup's MinHash CLI with its default settings; ``--debug`` writes ``output/uf.pkl``."""
    cmd = [
        python,
        "-m",
        "text_dedup.minhash",
        "--path",
        str(dataset),
        "--local",
        "--output",
        str(output),
        "--column",
        "text",
        "--num_proc",
        str(workers),
    ]
    return [*cmd, "--debug"] if debug else cmd


_TD_LOG_LINE = re.compile(
    r"INFO\s+(Loading|MinHashing|Clustering|Filtering|Saving|Cleaning|Total|Before|After)\s*:\s*([0-9.]+)(s?)\s"
)


def parse_td_log(text: str) -> tuple[dict[str, float], dict[str, int]]:
    """text-dedup's own timers (seconds) and its ``Before`` (rows hashed) / ``After`` (rows kept)."""
    timers: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, value, unit in _TD_LOG_LINE.findall(text):
        if unit:
            timers[name] = float(value)
        else:
            counts[name] = int(float(value))
    return timers, counts


class _PickledUnionFind:
    """Stands in for ``text_dedup.utils.union_find.UnionFind`` (``parent`` and ``rank`` dicts)."""

    parent: dict[Any, Any]


class _UnionFindUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("text_dedup") and name == "UnionFind":
            return _PickledUnionFind
        if (module, name) == ("collections", "Counter"):
            return Counter
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in text-dedup's uf.pkl")


def td_clusters(uf_path: Path, ids: list[str]) -> tuple[dict[str, str], int]:
    """``doc id -> id of its cluster's root row`` for every row, and the number of clusters of >1 rows.

    ``uf.pkl`` holds the rows that shared an LSH bucket with another row (keys are row indices, as no
    ``--idx_column`` is given); every other row - a short row text-dedup dropped, or one alone in all
    of its buckets - is its own cluster.
    """
    with uf_path.open("rb") as fh:
        parent = _UnionFindUnpickler(fh).load().parent

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pred: dict[str, str] = {}
    roots: Counter = Counter()
    for row, doc_id in enumerate(ids):
        r = root(row) if row in parent else row
        roots[r] += 1
        pred[doc_id] = ids[r]
    return pred, sum(1 for n in roots.values() if n > 1)


def run_text_dedup(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """text-dedup's CLI on a fresh copy of ``hf/dataset``; writes ``pred/text-dedup.jsonl``."""
    hf = work / "hf"
    scratch = work / "scratch" / "text-dedup"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.copytree(hf / "dataset", scratch / "input")  # outside the timed run
    env = td_env(scratch)
    cmd = td_command(args.td_python, scratch / "input", scratch / "output", args.workers)
    log(f"text-dedup: {' '.join(cmd)}")
    run = measure_process(cmd, work / "logs" / "text-dedup.stderr", env=env)
    (work / "logs" / "text-dedup.stdout").write_text(run.pop("stdout"))
    if run["returncode"] != 0:
        raise SystemExit(f"text-dedup failed (rc {run['returncode']}); see {work}/logs/text-dedup.std*")
    timers, counts = parse_td_log((work / "logs" / "text-dedup.stdout").read_text())
    meta = json.loads((hf / "meta.json").read_text())
    ids = (hf / "ids.txt").read_text(encoding="utf-8").splitlines()
    pred, clusters = td_clusters(scratch / "output" / "uf.pkl", ids)
    _write_pred(work / "pred" / "text-dedup.jsonl", pred)
    kept = counts.get("After")
    return {
        "tool": "text-dedup",
        "wall_s": timers.get("Total", run["process_wall_s"]),
        "process_wall_s": run["process_wall_s"],
        "stage_s": {k: v for k, v in timers.items() if k != "Total"},
        **{k: v for k, v in run.items() if k not in ("returncode", "timed_out", "process_wall_s")},
        "config": {
            "text_dedup": td_version(args.td_python),
            "cli": f"{TD_DEFAULTS} --debug",
            "num_proc": args.workers,
            "min_length": meta["min_length"],
        },
        "rows": meta["rows"],
        "short_rows_dropped": meta["short_rows"],
        "rows_hashed": counts.get("Before"),
        "kept": kept,
        "removed": meta["rows"] - kept if kept is not None else None,
        "clusters_found": clusters,
    }


# ----------------------------------------------------------------------------- process measuring


def measure_process(
    cmd: list[str],
    stderr_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` (its own session) and sample its process tree from outside while it runs.

    Returns whole-process wall seconds, the ``TreeMemorySampler`` report (the tool's process is the
    "parent"), CPU seconds from ``getrusage(RUSAGE_CHILDREN)`` (every reaped descendant),
    ``returncode``, ``timed_out`` and the captured ``stdout``; stderr goes to ``stderr_path``. Past
    ``timeout`` seconds its whole process group is killed.
    """
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed_out = False
    with stderr_path.open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=cwd, env=env, start_new_session=True
        )
        with TreeMemorySampler(root=proc.pid) as mem:
            try:
                stdout, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, _ = proc.communicate()
        wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "process_wall_s": round(wall, 2),
        **mem.report(),
        "cpu_s_rusage": round(cpu, 1),
        "stdout": stdout,
    }


# ------------------------------------------------------------------------------------------ tools


def ours_stage_args(data_dir: Path, workers: int, *, in_memory: bool = False) -> tuple[Any, Any]:
    """``(cfg, options)`` for ``run_stage("dedup", ...)`` on ``data_dir``: default ``DedupConfig``,
    FnApiRunner multi_processing with ``workers`` workers (one process with ``in_memory``)."""
    from pipelines.beam_stage import pipeline_options
    from pipelines.config import load_config

    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(data_dir)},
            "runner": {"direct_num_workers": workers, "direct_running_mode": "multi_processing"},
        }
    )
    return cfg, pipeline_options(cfg.runner, in_memory=in_memory)


def run_ours(work: Path, workers: int, *, in_memory: bool = False) -> dict[str, Any]:
    """Our dedup stage on the committed ``clean`` stage; writes ``pred/ours.jsonl``; returns timings."""
    from pipelines import storage

    cfg, options = ours_stage_args(work / "data", workers, in_memory=in_memory)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with TreeMemorySampler() as mem:
        t0 = time.perf_counter()
        result = run_stage("dedup", cfg, options)
        wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    parent_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    pred = {}
    for path in result.version.shard_paths("clusters"):
        for row in storage.iter_rows(path, columns=["doc_id", "cluster_id"]):
            pred[row["doc_id"]] = row["cluster_id"]
    _write_pred(work / "pred" / "ours.jsonl", pred)
    stats = result.manifest.get("stats", {})
    return {
        "tool": "ours",
        "wall_s": round(wall, 2),
        **mem.report(),
        "parent_cpu_s": round(parent_cpu, 1),  # the FnApiRunner process: it groups every shuffle
        "config": {"dedup": "DedupConfig defaults", **result.manifest.get("lsh", {}), "workers": workers},
        "chains": stats.get("chains"),
        "removed": stats.get("removed"),
    }


def _write_pred(path: Path, pred: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for doc_id, cluster in pred.items():
            fh.write(json.dumps({"id": doc_id, "cluster": cluster}) + "\n")


def tool_command(tool: str, work: Path, args: argparse.Namespace) -> list[str]:
    pred = str(work / "pred" / f"{tool}.jsonl")
    workers = str(args.workers)
    if tool == "ours":
        return [sys.executable, __file__, "--work", str(work), "--workers", workers, "--run-ours"]
    if tool == "datasketch":
        return [
            sys.executable,
            str(BENCH / "dedup_datasketch.py"),
            "--corpus",
            str(work / "corpus.jsonl"),
            "--pred",
            pred,
        ]
    dt = [
        args.dt_python,
        str(BENCH / "dedup_datatrove.py"),
        "--workers",
        workers,
        "--pred",
        pred,
        "--label",
        tool,
    ]
    dt += ["--out", str(work / "scratch" / tool)]
    if tool == "datatrove-default":
        return [*dt, "--input", f"eng={work}/jsonl/all"]
    if tool == "datatrove-tuned":
        return [
            *dt,
            "--input",
            f"en={work}/jsonl/en@{args.dt_en}",
            "--input",
            f"cmn={work}/jsonl/zh@{args.dt_zh}",
        ]
    raise ValueError(f"unknown tool {tool!r}")


def load_truth(work: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    truth: dict[str, str] = {}
    by_lang: dict[str, list[str]] = {}
    with (work / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            truth[r["id"]] = r["cluster"]
            by_lang.setdefault(r["lang"], []).append(r["id"])
    return truth, by_lang


def score(pred_path: Path, truth: dict[str, str], by_lang: dict[str, list[str]]) -> dict[str, Any]:
    """Pairwise P/R/F1 + ARI overall and per language; documents missing from ``pred`` are singletons."""
    from pipelines.dedup.evaluate import clustering_report

    pred = {doc_id: f"singleton:{doc_id}" for doc_id in truth}
    with pred_path.open(encoding="utf-8") as fh:
        for line in fh:
            p = json.loads(line)
            pred[p["id"]] = p["cluster"]
    missing = len(truth) - sum(1 for v in pred.values() if not v.startswith("singleton:"))
    out: dict[str, Any] = {}
    for name, subset in (("all", None), *sorted(by_lang.items())):
        rep = clustering_report(pred, truth, subset)
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in rep.items()}
    out["documents_without_prediction"] = missing
    return out


def wait_for_load(limit: float, poll_s: float = 30.0, max_wait_s: float = 1200.0) -> dict[str, Any]:
    """Poll the 1-minute load average until it is below ``limit`` (at most ``max_wait_s``)."""
    t0 = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        if load < limit:
            return {"waited_s": round(time.monotonic() - t0), "load_1m": load, "below_limit": True}
        if time.monotonic() - t0 >= max_wait_s:
            log(f"load {load:.2f} still >= {limit} after {max_wait_s:.0f} s: measuring anyway")
            return {"waited_s": round(time.monotonic() - t0), "load_1m": load, "below_limit": False}
        log(f"1-minute load {load:.2f} >= {limit}, waiting {poll_s:.0f} s")
        time.sleep(poll_s)


def run_tool(
    tool: str, work: Path, args: argparse.Namespace, summary: dict[str, Any], truth, by_lang
) -> dict:
    """Run one tool in a fresh subprocess and return its scored JSON record."""
    load_before = os.getloadavg()[0]
    if tool == "text-dedup":  # its CLI, measured from outside
        measured = run_text_dedup(work, args)
        process_wall = measured.pop("process_wall_s")
    else:
        cmd = tool_command(tool, work, args)
        log(f"{tool}: {' '.join(cmd)}")
        t0 = time.perf_counter()
        with (work / "logs").joinpath(f"{tool}.stderr").open("w") as err:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, check=False)
        process_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{tool} failed (rc {proc.returncode}); see {work}/logs/{tool}.stderr")
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = measured.pop("wall_s")
    mb = summary["text_mb"]
    docs = summary["documents"]
    return {
        "tool": tool,
        "documents": docs,
        "text_mb": mb,
        "workers": 1 if tool == "datasketch" else args.workers,
        "wall_s": wall,
        "docs_per_s": round(docs / wall, 1),
        "mb_per_s": round(mb / wall, 3),
        "process_wall_s": round(process_wall, 2),
        **{k: v for k, v in measured.items() if k != "tool"},
        "quality": score(work / "pred" / f"{tool}.jsonl", truth, by_lang),
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }


# ---------------------------------------------------------------------------------------- profile


def stage_cpu_seconds(work: Path) -> tuple[dict[str, float], float, float]:
    """Our stage in_memory (one process) with the CPU seconds of every fused Beam stage.

    Wraps the FnApiRunner's private ``_execute_bundle`` (bench only; Beam 2.7x). The 30 unrolled
    connected-component rounds are summed under ``"CC rounds"``. Returns ``(per stage, wall, cpu)``.
    """
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    spent: Counter = Counter()
    original = fn_runner.FnApiRunner._execute_bundle

    def timed(self: Any, ctx: Any, bundle_manager: Any, bundle_input: Any) -> Any:
        t0 = time.process_time()
        try:
            return original(self, ctx, bundle_manager, bundle_input)
        finally:
            name = bundle_manager.stage.name
            spent["CC rounds" if "Components-Round" in name else name] += time.process_time() - t0

    fn_runner.FnApiRunner._execute_bundle = timed
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        run_ours(work, 1, in_memory=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        fn_runner.FnApiRunner._execute_bundle = original
    return dict(spent.most_common()), wall, cpu


def profile(work: Path, cprofile: bool = False, top: int = 30) -> dict[str, Any]:
    """Where our time goes: shingling and MinHash alone, then CPU per fused stage (in_memory).

    With ``cprofile`` the in_memory run is also done under cProfile (``ours_in_memory.prof`` and a
    text summary in ``work``); cProfile inflates the runner's C-level decoding several fold, so the
    per-stage CPU seconds are the figures to trust.
    """
    from pipelines.config import DedupConfig
    from pipelines.dedup.minhash import MinHasher
    from pipelines.dedup.shingles import segments, shingle_layout

    texts = [json.loads(line)["text"] for line in (work / "corpus.jsonl").open(encoding="utf-8")]
    c = DedupConfig()
    t0 = time.process_time()
    layouts = [shingle_layout(*segments(t), c.ngram, c.cjk_ngram) for t in texts]
    t1 = time.process_time()
    hasher = MinHasher(c.num_perm, c.seed, c.minhash_scheme, c.shingle_hash)
    for i in range(0, len(layouts), 256):
        hasher.signatures_of_layouts(layouts[i : i + 256])
    t2 = time.process_time()
    del layouts
    stages, wall, cpu = stage_cpu_seconds(work)
    lines = [f"{sec:8.2f} s  {name}" for name, sec in stages.items()]
    (work / "ours_stage_cpu.txt").write_text("\n".join(lines) + "\n")
    out = {
        "tool": "ours-profile",
        "documents": len(texts),
        "shingle_hash": c.shingle_hash,
        "shingles_cpu_s": round(t1 - t0, 2),
        "minhash_signatures_cpu_s": round(t2 - t1, 2),
        "signature_docs_per_s_one_core": round(len(texts) / (t2 - t0), 1),
        "in_memory_wall_s": round(wall, 1),
        "in_memory_cpu_s": round(cpu, 1),
        "fused_stages": len(stages),
        "top_stages_cpu_s": {name[:120]: round(sec, 2) for name, sec in list(stages.items())[:8]},
        "stage_cpu_text": str(work / "ours_stage_cpu.txt"),
    }
    if cprofile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_ours(work, 1, in_memory=True)
        prof.disable()
        prof.dump_stats(str(work / "ours_in_memory.prof"))
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        (work / "ours_in_memory_profile.txt").write_text(text.getvalue())
        out["cprofile_text"] = str(work / "ours_in_memory_profile.txt")
    return out


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/dedupspeed"))
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-variants", type=int, default=7)
    ap.add_argument("--singleton-fraction", type=float, default=0.1)
    ap.add_argument("--max-bases", type=int, default=0, help="bases per language, 0 = all (smoke tests)")
    ap.add_argument("--shards", type=int, default=16, help="Parquet shards of our clean stage")
    ap.add_argument("--tasks", type=int, default=16, help="JSONL files (datatrove tasks) per input folder")
    ap.add_argument(
        "--dt-python", default="/tmp/dtvenv_dedup/bin/python", help="python of the datatrove venv"
    )
    ap.add_argument(
        "--td-python", default="/tmp/tdvenv/bin/python", help="python of the text-dedup venv (text-dedup)"
    )
    ap.add_argument("--dt-en", default="5,20,5", help="datatrove-tuned English n-grams,buckets,rows")
    ap.add_argument("--dt-zh", default="5,28,4", help="datatrove-tuned Chinese (jieba) n-grams,buckets,rows")
    ap.add_argument(
        "--wait-load", type=float, default=None, help="wait until the 1-minute load is below this"
    )
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    ap.add_argument("--profile", action="store_true", help="profile our stage instead of comparing")
    ap.add_argument("--cprofile", action="store_true", help="with --profile: also a cProfile run")
    ap.add_argument("--run-ours", action="store_true", help=argparse.SUPPRESS)  # the subprocess of 'ours'
    args = ap.parse_args()

    work = args.work.resolve()
    if args.run_ours:
        print(json.dumps(run_ours(work, args.workers)), flush=True)
        return
    summary = prepare(work, args)
    log(f"corpus: {json.dumps({k: v for k, v in summary.items() if k != 'params'})}")
    if args.profile:
        print(json.dumps(profile(work, args.cprofile)), flush=True)
        return
    (work / "logs").mkdir(exist_ok=True)
    truth, by_lang = load_truth(work)
    load = wait_for_load(args.wait_load) if args.wait_load else {"load_1m": os.getloadavg()[0]}
    facts = {**machine_facts(), "load_wait": load}
    corpus = {k: summary[k] for k in ("documents_by_lang", "text_mb_by_lang", "true_clusters", "true_pairs")}
    for tool in args.tools.split(","):
        record = {**run_tool(tool, work, args, summary, truth, by_lang), "corpus": corpus, "machine": facts}
        emit(record, args.out)


def emit(record: dict[str, Any], out: Path | None) -> None:
    """Print one JSON line, and append it to ``out`` when given."""
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with out.open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
