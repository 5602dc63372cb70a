"""Throughput of the bias / toxicity stage job (``pipelines.bias.job.run``) on real English + Chinese text.

Builds a committed ``dedup`` stage in a temporary data directory from ``tinyshakespeare`` and the
``zh-classics`` books under ``--data`` (``../shared/data`` by default): the texts are cut into documents
of about 2-4 KB at paragraph (line) boundaries and the whole set is repeated, with fresh ids, until it
holds ``--mb`` megabytes of UTF-8 text. Then it runs the stage with FnApiRunner ``multi_processing``
and ``--workers`` SDK workers (default config: policy ``lines``, no CDA, no balancing) and prints ONE
JSON line: input MB, wall seconds of the stage job, MB/s, MB/s per worker core, documents/s, CPU
seconds, peak RSS (this process; the largest finished child from ``RUSAGE_CHILDREN``; and the peak
sum over the live process tree, sampled from /proc every 0.25 s) and what the stage removed.

Without the shared data folder it prints a JSON line with ``error`` and exits 0.

Usage: ``python bench/bias_throughput.py [--mb 100] [--workers 2] [--mode multi_processing] [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from assets.graph import run_stage

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MIN_DOC_BYTES, MAX_DOC_BYTES = 2048, 4096
SHARD_BYTES = 8 * 1024 * 1024


def chunk_text(text: str) -> Iterator[str]:
    """Documents of MIN..MAX_DOC_BYTES UTF-8 bytes made of whole lines (a longer line is cut)."""
    parts: list[str] = []
    size = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        encoded = len(line.encode("utf-8")) + 1
        while encoded > MAX_DOC_BYTES:  # very long line: cut by characters
            cut = len(line) * MAX_DOC_BYTES // encoded // 2
            yield line[:cut]
            line = line[cut:]
            encoded = len(line.encode("utf-8")) + 1
        if size + encoded > MAX_DOC_BYTES and size >= MIN_DOC_BYTES:
            yield "\n".join(parts)
            parts, size = [], 0
        parts.append(line)
        size += encoded
    if parts:
        yield "\n".join(parts)


def base_documents(data: Path) -> list[tuple[str, str, str]]:
    """``(source, lang, text)`` documents of the shared corpus, in a fixed order."""
    docs = []
    shakespeare = data / "tinyshakespeare" / "input.txt"
    for text in chunk_text(shakespeare.read_text(encoding="utf-8")):
        docs.append(("tinyshakespeare/input.txt", "en", text))
    books = data / "zh-classics" / "books"
    for path in sorted(books.rglob("*.txt")):
        source = "zh-classics/" + path.relative_to(books).as_posix()
        for text in chunk_text(path.read_text(encoding="utf-8", errors="replace")):
            docs.append((source, "zh", text))
    return docs


def write_upstream(data_dir: Path, docs: list[tuple[str, str, str]], target_bytes: int) -> tuple[int, int]:
    """Commit repeated copies of ``docs`` as the ``dedup`` stage; returns (documents, text bytes)."""
    from pipelines import schemas, storage

    version = storage.new_version(data_dir, "dedup", "bench")
    writer = None
    n_docs = n_bytes = shard_bytes = shard = 0
    rep = 0
    while n_bytes < target_bytes:
        for k, (source, lang, text) in enumerate(docs):
            if n_bytes >= target_bytes:
                break
            if writer is None:
                writer = storage.ShardWriter(
                    version.dir("documents"),
                    f"{shard:05d}",
                    schemas.DOCUMENTS,
                    max_shard_bytes=1 << 62,
                    row_group_rows=1024,
                )
            size = len(text.encode("utf-8"))
            writer.write(
                {
                    "id": f"r{rep}-{k:07d}",
                    "text": text,
                    "source": source,
                    "offset": k,
                    "lang": lang,
                    "lang_score": 1.0,
                    "quality": 0.5,
                    "signals": {},
                    "meta": None,
                    "tags": [],
                }
            )
            n_docs, n_bytes, shard_bytes = n_docs + 1, n_bytes + size, shard_bytes + size
            if shard_bytes >= SHARD_BYTES:
                writer.close()
                writer, shard_bytes, shard = None, 0, shard + 1
        rep += 1
    if writer is not None:
        writer.close()
    entries = {kind: storage.collect_shards(version.dir(kind)) for kind in ("documents", "ledger")}
    storage.commit(version, config={"bench": True}, upstream={}, entries=entries)
    return n_docs, n_bytes


class TreeRss:
    """Samples the summed RSS of this process and all its descendants (Linux /proc) in a thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _tree_rss(self) -> int:
        parents: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            pid = frontier.pop()
            for child, parent in parents.items():
                if parent == pid and child not in tree:
                    tree.add(child)
                    frontier.append(child)
        total = 0
        for pid in tree:
            with contextlib.suppress(OSError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=100.0, help="megabytes (1e6) of input text")
    parser.add_argument("--workers", type=int, default=2, help="FnApiRunner multi_processing workers")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--policy", default="lines", choices=["document", "lines"])
    parser.add_argument(
        "--mode", default="multi_processing", choices=["multi_processing", "multi_threading", "in_memory"]
    )
    args = parser.parse_args()
    if (
        not (args.data / "tinyshakespeare" / "input.txt").is_file()
        or not (args.data / "zh-classics").is_dir()
    ):
        print(json.dumps({"bench": "bias_throughput", "error": f"shared data not found under {args.data}"}))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines import storage
    from pipelines.beam_stage import pipeline_options
    from pipelines.config import RunnerConfig, load_config

    with tempfile.TemporaryDirectory(prefix="cf-biasbench-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        docs = base_documents(args.data)
        n_docs, n_bytes = write_upstream(data_dir, docs, int(args.mb * 1e6))
        prepare_s = time.perf_counter() - t0
        cfg = load_config(
            overrides={"paths": {"data_dir": str(data_dir)}, "filtered": {"toxicity_policy": args.policy}}
        )
        workers = 1 if args.mode == "in_memory" else args.workers
        runner = RunnerConfig(direct_running_mode=args.mode, direct_num_workers=workers)
        cpu0 = os.times()
        with TreeRss() as tree:
            t1 = time.perf_counter()
            result = run_stage("filtered", cfg, pipeline_options(runner))
            wall = time.perf_counter() - t1
        cpu1 = os.times()
        cpu = sum(
            getattr(cpu1, f) - getattr(cpu0, f)
            for f in ("user", "system", "children_user", "children_system")
        )
        stats, tox = result.manifest["stats"], result.manifest["toxicity"]
        shards = len(storage.current_version(data_dir, "dedup").shard_paths())
    mb = n_bytes / 1e6
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bench": "bias_throughput",
                "runner": f"FnApiRunner {args.mode} x{workers}",
                "policy": args.policy,
                "input_mb": round(mb, 2),
                "documents": n_docs,
                "input_shards": shards,
                "wall_s": round(wall, 2),
                "mb_per_s": round(mb / wall, 3),
                "mb_per_s_per_core": round(mb / wall / workers, 3),
                "docs_per_s": round(n_docs / wall, 1),
                "cpu_s": round(cpu, 1),
                "mb_per_cpu_s": round(mb / cpu, 3) if cpu else None,
                "cores": workers,
                "cpu_count": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "peak_rss_parent_mb": round(self_rss, 1),
                "peak_rss_largest_child_mb": round(child_rss, 1),
                "peak_rss_parent_plus_workers_bound_mb": round(self_rss + workers * child_rss, 1),
                "peak_rss_tree_sampled_mb": round(tree.peak / 2**20, 1),
                "documents_out": stats["documents_out"],
                "removed_by_reason": stats["removed_by_reason"],
                "lines_removed": tox["lines_removed"],
                "prepare_s": round(prepare_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
