"""Ingestion + cleaning throughput of our Beam stages on a JSONL corpus (issue 2).

Runs ``pipelines.ingest.run`` then ``pipelines.clean.run`` (FnApiRunner, multi_processing,
``--workers`` SDK worker processes) on ``--corpus`` (built by ``bench/make_text_corpus.py``) into a
throwaway data directory and prints ONE JSON line:

* ``input_mb`` (document text, 10^6 bytes), ``input_file_mb`` (JSONL bytes), ``documents``;
* ``wall_s`` per stage and in total; ``mb_per_s`` / ``docs_per_s`` overall and per core
  (``cores_used`` = min(workers, CPUs)); ``cpu_s`` (user+sys of the whole process tree, sampled);
* peak memory, sampled from ``/proc`` every 0.5 s over the process tree: ``parent_peak_rss_mb``,
  ``workers_peak_rss_sum_mb`` (largest sum over the worker processes at one instant),
  ``workers_peak_rss_max_mb`` (largest single worker), ``tree_peak_rss_mb`` and ``tree_peak_pss_mb``
  (RSS counts pages shared by forked processes once per process; PSS splits them), and the worker
  peaks of each stage in ``memory_by_stage``;
* ``kept_fraction``, ``removed_by_reason``, and ``by_lang`` (source language from the corpus, kept and
  removed counts, removal reasons);
* ``per_doc_single_core`` (``--per-doc N``, after the run): CPU time of the cleaning engine in one
  process on the first N documents of each language (ms/doc, MB per CPU second), a figure that other
  load on the machine barely moves;
* with ``--scan-mb N``: ``scan``, the same measurement on an N MB slice of the corpus (every file cut
  to the same share, run in a fresh process), to show peak memory does not grow with corpus size.

``--like-for-like`` turns off language id, PII redaction and mojibake repair (the parts datatrove's
Gopher/C4/FineWeb pipeline does not have). ``--profile N`` instead runs the cleaning engine on N
documents under cProfile and prints the top functions by cumulative time.

The helpers above the ``pipelines`` imports (``TreeMemorySampler``, ``slice_corpus``...) use only the
standard library: ``bench/datatrove_clean.py`` imports them from another Python environment.

Usage: ``python bench/clean_throughput.py --corpus /tmp/cleanbench/corpus --workers 2 --scan-mb 25``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
LIKE_FOR_LIKE = {
    "langid": {"enabled": False},
    "pii": {"enabled": False},
    "normalize": {"fix_mojibake": False},
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- memory sampling


TICKS = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, int]]:
    """``{pid: (parent pid, user+system clock ticks)}`` of every process."""
    table: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # fields[0] is /proc/pid/stat field 3 (state)
        table[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _descendants(root: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


class TreeMemorySampler:
    """Background thread that samples a process and all its descendants.

    Records peak RSS / PSS and the CPU time of every process seen (user + system, the last value
    sampled; a process that lives less than one interval is missed, one that exits loses at most
    one interval). Unlike ``getrusage(RUSAGE_CHILDREN)`` this counts grandchildren, e.g. datatrove's
    forkserver workers.
    """

    def __init__(self, root: int | None = None, interval: float = 0.5) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.parent_peak = self.workers_sum_peak = self.workers_max_peak = 0
        self.tree_peak = self.tree_pss_peak = 0
        self.max_workers_seen = self.samples = 0
        self._ticks: dict[int, int] = {}
        self._baseline = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        table = _proc_table()
        parent = _rss_bytes(self.root)
        kids = _descendants(self.root, table)
        for pid in [self.root, *kids]:
            if pid in table:
                self._ticks[pid] = max(self._ticks.get(pid, 0), table[pid][1])
        rss = [_rss_bytes(p) for p in kids]
        pss = _pss_bytes(self.root) + sum(_pss_bytes(p) for p in kids)
        self.parent_peak = max(self.parent_peak, parent)
        self.workers_sum_peak = max(self.workers_sum_peak, sum(rss))
        self.workers_max_peak = max(self.workers_max_peak, max(rss, default=0))
        self.tree_peak = max(self.tree_peak, parent + sum(rss))
        self.tree_pss_peak = max(self.tree_pss_peak, pss)
        self.max_workers_seen = max(self.max_workers_seen, sum(1 for r in rss if r))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemorySampler:
        self.sample()
        self._baseline = sum(self._ticks.values())  # CPU spent before the measured run
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def report(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {
            "parent_peak_rss_mb": round(self.parent_peak / mb, 1),
            "workers_peak_rss_sum_mb": round(self.workers_sum_peak / mb, 1),
            "workers_peak_rss_max_mb": round(self.workers_max_peak / mb, 1),
            "tree_peak_rss_mb": round(self.tree_peak / mb, 1),
            "tree_peak_pss_mb": round(self.tree_pss_peak / mb, 1),
            "cpu_s": round((sum(self._ticks.values()) - self._baseline) / TICKS, 1),
            "child_processes_seen": self.max_workers_seen,
            "memory_samples": self.samples,
        }


def machine_facts() -> dict[str, Any]:
    model, mem_kb = "", 0
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:")), 0)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gb": round(mem_kb / 1024 / 1024, 1)}


# ---------------------------------------------------------------------------------- corpus helpers


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted(corpus.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no *.jsonl files in {corpus}; build it with bench/make_text_corpus.py")
    return files


def corpus_summary(corpus: Path) -> dict[str, Any]:
    """Text bytes and document counts by language (from ``corpus.json``, else by scanning)."""
    info = corpus / "corpus.json"
    if info.is_file():
        data = json.loads(info.read_text())
        return {
            "documents": data["documents"],
            "text_mb": data["text_mb"],
            "documents_by_lang": data["documents_by_lang"],
        }
    docs, size, by_lang = 0, 0, Counter()
    for f in corpus_files(corpus):
        with open(f, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        for rec in records:
            docs += 1
            size += len(rec["text"].encode("utf-8"))
            by_lang[rec.get("lang", "unknown")] += 1
    return {"documents": docs, "text_mb": round(size / 1e6, 3), "documents_by_lang": dict(by_lang)}


def read_head(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` records of a JSONL file."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if len(out) >= n:
                break
            out.append(json.loads(line))
    return out


def sample_by_lang(corpus: Path, n: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``n`` records of each source language, reading the files in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in corpus_files(corpus):
        for rec in read_head(f, 10**9):
            bucket = out.setdefault(rec.get("lang", "unknown"), [])
            if len(bucket) < n:
                bucket.append(rec)
        if len(out) > 1 and all(len(v) >= n for v in out.values()):
            break
    return dict(sorted(out.items()))


def cost_summary(records: list[dict[str, Any]], cpu: float, kept: int) -> dict[str, Any]:
    """Single-core cost of processing ``records`` in ``cpu`` CPU seconds."""
    mb = sum(len(r["text"].encode("utf-8")) for r in records) / 1e6
    n = len(records)
    return {
        "documents": n,
        "mb": round(mb, 3),
        "cpu_s": round(cpu, 2),
        "ms_per_doc": round(1000 * cpu / n, 3) if n else 0.0,
        "mb_per_cpu_s": round(mb / cpu, 3) if cpu else None,
        "kept": kept,
    }


def slice_corpus(corpus: Path, out: Path, mb: float) -> Path:
    """Copy the first lines of every file of ``corpus`` so that the slice holds about ``mb`` MB of text."""
    files = corpus_files(corpus)
    share = mb * 1e6 / len(files)
    out.mkdir(parents=True, exist_ok=True)
    docs, size, by_lang = 0, 0, Counter()
    for f in files:
        taken = 0
        with open(f, encoding="utf-8") as src, open(out / f.name, "w", encoding="utf-8") as dst:
            for line in src:
                if taken >= share:
                    break
                rec = json.loads(line)
                n = len(rec["text"].encode("utf-8"))
                dst.write(line)
                taken += n
                docs += 1
                by_lang[rec.get("lang", "unknown")] += 1
        size += taken
    summary = {"documents": docs, "text_mb": round(size / 1e6, 3), "documents_by_lang": dict(by_lang)}
    (out / "corpus.json").write_text(json.dumps(summary) + "\n")
    return out


def rates(result: dict[str, Any], wall: float, cores: int) -> dict[str, float]:
    mbps = result["input_mb"] / wall if wall else 0.0
    dps = result["documents"] / wall if wall else 0.0
    return {
        "mb_per_s": round(mbps, 3),
        "docs_per_s": round(dps, 1),
        "mb_per_s_per_core": round(mbps / cores, 3),
        "docs_per_s_per_core": round(dps / cores, 1),
    }


def run_scan(script: Path, corpus: Path, mb: float, extra: list[str], python: str = sys.executable) -> dict:
    """Run ``script`` on an ``mb`` MB slice of ``corpus`` in a fresh process; returns its JSON line."""
    with tempfile.TemporaryDirectory(prefix="cf-cleanscan-") as tmp:
        sliced = slice_corpus(corpus, Path(tmp) / "corpus", mb)
        log(f"scan: {mb} MB slice in {sliced}")
        proc = subprocess.run(
            [python, str(script), "--corpus", str(sliced), *extra],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- our pipeline


def _lang_of_meta(meta: str | None) -> str:
    try:
        return json.loads(meta or "{}").get("lang", "unknown")
    except json.JSONDecodeError:
        return "unknown"


def by_language(raw: Any, clean: Any) -> dict[str, Any]:
    """Kept / removed documents and removal reasons per source language (read after the timing)."""
    import pyarrow.parquet as pq

    from pipelines import storage

    lang_at: dict[tuple[str, int], str] = {}
    for path in raw.shard_paths("documents"):
        t = pq.read_table(path, columns=["source", "offset", "meta"])
        for s, o, m in zip(*(t.column(c).to_pylist() for c in ("source", "offset", "meta")), strict=True):
            lang_at[(s, o)] = _lang_of_meta(m)
    out: dict[str, Any] = {}

    def entry(lang: str) -> dict[str, Any]:
        return out.setdefault(lang, {"documents": 0, "kept": 0, "removed": 0, "reasons": Counter()})

    for lang in lang_at.values():
        entry(lang)["documents"] += 1
    detected: dict[str, Counter] = {}
    for row in storage.iter_stage_rows(clean, "documents", columns=["source", "offset", "lang"]):
        src = lang_at.get((row["source"], row["offset"]), "unknown")
        entry(src)["kept"] += 1
        detected.setdefault(src, Counter())[row["lang"]] += 1
    for row in storage.iter_stage_rows(clean, "ledger", columns=["source", "offset", "reason"]):
        e = entry(lang_at.get((row["source"], row["offset"]), "unknown"))
        e["removed"] += 1
        e["reasons"][row["reason"]] += 1
    for lang, e in out.items():
        e["kept_fraction"] = round(e["kept"] / e["documents"], 4) if e["documents"] else 0.0
        e["reasons"] = dict(e["reasons"].most_common())
        if lang in detected:
            e["kept_langid"] = dict(detected[lang].most_common())
    return dict(sorted(out.items()))


def measure(corpus: Path, workers: int, like_for_like: bool, data_dir: Path) -> dict[str, Any]:
    """Run ingest + clean once on ``corpus`` and return the result fields."""
    from pipelines.beam_stage import pipeline_options
    from pipelines.config import load_config

    overrides: dict[str, Any] = {
        "paths": {"input": str(corpus), "data_dir": str(data_dir)},
        "runner": {"direct_num_workers": workers, "direct_running_mode": "multi_processing"},
        "raw": {"glob": "*.jsonl"},
    }
    if like_for_like:
        overrides["clean"] = LIKE_FOR_LIKE
    cfg = load_config(overrides=overrides)
    options = pipeline_options(cfg.runner)
    summary = corpus_summary(corpus)
    files = corpus_files(corpus)
    cores = min(workers, os.cpu_count() or 1)
    load_start = os.getloadavg()[0]
    with TreeMemorySampler() as mem:
        t0 = time.perf_counter()
        with TreeMemorySampler() as mem_ingest:
            from assets.graph import run_stage  # not at import: the peers' venvs import this module

            raw = run_stage("raw", cfg, options)
        t1 = time.perf_counter()
        with TreeMemorySampler() as mem_clean:
            cleaned = run_stage("clean", cfg, options)
        t2 = time.perf_counter()
    stats = cleaned.manifest.get("stats", {})
    docs_in = stats.get("documents_in", 0)
    kept = stats.get("documents_out", 0)
    result: dict[str, Any] = {
        "tool": "corpusforge",
        "config": "like-for-like (no langid/PII/mojibake)" if like_for_like else "all presets (defaults)",
        "corpus": str(corpus),
        "input_mb": summary["text_mb"],
        "input_file_mb": round(sum(f.stat().st_size for f in files) / 1e6, 3),
        "files": len(files),
        "documents": summary["documents"],
        "documents_ingested": docs_in,
        "wall_s": {"ingest": round(t1 - t0, 2), "clean": round(t2 - t1, 2), "total": round(t2 - t0, 2)},
        "workers": workers,
        "cores_used": cores,
    }
    result.update(rates(result, t2 - t0, cores))
    result["clean_only"] = rates(result, t2 - t1, cores)
    result.update(mem.report())
    stage_keys = ("workers_peak_rss_max_mb", "workers_peak_rss_sum_mb", "tree_peak_rss_mb", "cpu_s")
    result["memory_by_stage"] = {
        name: {k: m.report()[k] for k in stage_keys}
        for name, m in (("ingest", mem_ingest), ("clean", mem_clean))
    }
    result["mb_per_cpu_s"] = round(result["input_mb"] / result["cpu_s"], 3) if result["cpu_s"] else None
    result["ru_maxrss_parent_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["kept"] = kept
    result["kept_fraction"] = round(kept / docs_in, 4) if docs_in else 0.0
    result["removed_by_reason"] = stats.get("removed_by_reason", {})
    result["by_lang"] = by_language(raw.version, cleaned.version)
    result["loadavg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    result["machine"] = machine_facts()
    return result


def per_doc_cost(corpus: Path, n: int, like_for_like: bool) -> dict[str, Any]:
    """CPU time of the cleaning engine in this one process on the first ``n`` documents of each language.

    Independent of the runner and much less sensitive to other load on the machine than wall time.
    """
    from pipelines.cleaning.engine import CleaningEngine
    from pipelines.config import load_config
    from pipelines.text.langid import LanguageIdentifier

    cfg = load_config(overrides={"clean": LIKE_FOR_LIKE} if like_for_like else None).clean
    lid = LanguageIdentifier(cfg.langid) if cfg.langid.enabled else None
    if lid is not None:
        lid.setup()
    out = {}
    for lang, records in sample_by_lang(corpus, n).items():
        docs = [
            {"id": r["id"], "text": r["text"], "source": "bench", "offset": i} for i, r in enumerate(records)
        ]
        engine = CleaningEngine(cfg, lid)
        engine.clean(docs[0])  # warm-up: model load, regex compilation
        t0 = time.process_time()
        kept = sum(engine.clean(d).document is not None for d in docs)
        out[lang] = cost_summary(records, time.process_time() - t0, kept)
    return out


def profile(corpus: Path, n: int, like_for_like: bool, top: int = 15) -> None:
    """cProfile the cleaning engine on the first ``n`` documents (taken round-robin over the files)."""
    import cProfile
    import io
    import pstats

    from pipelines.cleaning.engine import CleaningEngine
    from pipelines.config import load_config
    from pipelines.text.langid import LanguageIdentifier

    cfg = load_config(overrides={"clean": LIKE_FOR_LIKE} if like_for_like else None).clean
    per_file = [read_head(f, n) for f in corpus_files(corpus)]
    docs: list[dict[str, Any]] = []
    for i in range(n):
        for recs in per_file:
            if i < len(recs) and len(docs) < n:
                rec = recs[i]
                docs.append({"id": rec["id"], "text": rec["text"], "source": "bench", "offset": len(docs)})
    lid = LanguageIdentifier(cfg.langid) if cfg.langid.enabled else None
    if lid is not None:
        lid.setup()
    engine = CleaningEngine(cfg, lid)
    engine.clean(docs[0])  # warm caches (regex compilation, stop words)
    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    kept = sum(engine.clean(d).document is not None for d in docs)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(len(d["text"].encode()) for d in docs) / 1e6
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    print(buf.getvalue())
    print(
        json.dumps(
            {
                "profiled_documents": len(docs),
                "kept": kept,
                "mb": round(size, 3),
                "wall_s_under_profiler": round(wall, 2),
                "cpu_s_under_profiler": round(cpu, 2),
                "config": "like-for-like" if like_for_like else "all presets",
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, type=Path, help="directory of *.jsonl files")
    ap.add_argument("--workers", type=int, default=2, help="FnApiRunner worker processes")
    ap.add_argument("--like-for-like", action="store_true", help="langid, PII and mojibake repair off")
    ap.add_argument("--scan-mb", type=float, default=0.0, help="also measure an N MB slice (fresh process)")
    ap.add_argument("--data-dir", type=Path, default=None, help="keep the stage outputs here")
    ap.add_argument("--profile", type=int, default=0, help="cProfile the cleaning engine on N documents")
    ap.add_argument("--per-doc", type=int, default=1000, help="single-core cost on N documents per language")
    ap.add_argument("--only-per-doc", action="store_true", help="skip the pipeline run")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.profile:
        profile(args.corpus, args.profile, args.like_for_like)
        return
    if args.only_per_doc:
        result = {"tool": "corpusforge", "config": "like-for-like" if args.like_for_like else "all presets"}
        result["per_doc_single_core"] = per_doc_cost(args.corpus, args.per_doc, args.like_for_like)
        print(json.dumps(result), flush=True)
        return
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="cf-cleanbench-")
        data_dir = Path(tmp)
    try:
        log(f"corpusforge ingest+clean on {args.corpus} with {args.workers} workers")
        result = measure(args.corpus, args.workers, args.like_for_like, data_dir)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.per_doc:
        result["per_doc_single_core"] = per_doc_cost(args.corpus, args.per_doc, args.like_for_like)
    if args.scan_mb:
        extra = ["--workers", str(args.workers), "--per-doc", "0"]
        extra += ["--like-for-like"] if args.like_for_like else []
        scan = run_scan(Path(__file__).resolve(), args.corpus, args.scan_mb, extra)
        keys = ["input_mb", "documents", "wall_s", "mb_per_s_per_core", "parent_peak_rss_mb"]
        keys += ["workers_peak_rss_sum_mb", "workers_peak_rss_max_mb", "tree_peak_rss_mb", "tree_peak_pss_mb"]
        result["scan"] = {k: scan[k] for k in [*keys, "memory_by_stage"]}
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
