"""Tokenizer training and tokenize+pack throughput on >= 100 MB of English + Chinese text.

Builds a ``filtered`` documents stage from /work/shared/data (tinyshakespeare + zh-classics, repeated
with per-copy line rotations until ``--target-mb`` is reached), then measures, each in its own
process so that peak RSS is per measurement:

* tokenizer training: our stage (streamed, hash-sampled from the Parquet shards) vs
  ``tokenizers`` ``train_from_iterator`` on the same sampled texts held in memory (time, peak RSS,
  and whether both produce the same ``tokenizer.json``);
* tokenize+pack: the ``tokens`` Beam job (FnApiRunner, ``--workers`` processes) vs raw
  ``encode_batch`` over the same documents in memory (default thread pool, and one thread);
* the training reader (``training.data.TokenDataset``, when present) on one core: tokens/s.

Prints ONE JSON line on stdout (progress goes to stderr); a JSON ``error`` line when the shared
data is absent. Usage: ``python bench/tokenize_throughput.py [--target-mb 100] [--sample-mb 16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assets.graph import run_stage

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED", REPO.parent / "shared")) / "data"
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------------------------------- corpus


def base_documents(doc_chars: int = 3000) -> list[tuple[str, str, str]]:
    """(source, lang, text) chunks of about ``doc_chars`` characters, cut at line ends."""
    sources = [("tinyshakespeare/input.txt", "en", SHARED / "tinyshakespeare" / "input.txt")]
    for p in sorted((SHARED / "zh-classics" / "books").rglob("*.txt")):
        sources.append((str(p.relative_to(SHARED)), "zh", p))
    docs = []
    for name, lang, path in sources:
        text = path.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
        lines, buf, size = text.splitlines(keepends=True), [], 0
        for line in lines:
            buf.append(line)
            size += len(line)
            if size >= doc_chars:
                docs.append((name, lang, "".join(buf)))
                buf, size = [], 0
        if buf and "".join(buf).strip():
            docs.append((name, lang, "".join(buf)))
    return docs


def build_corpus(data_dir: Path, target_bytes: int, shard_docs: int) -> dict:
    """Commit a ``filtered`` stage of at least ``target_bytes``: copy r rotates each doc's lines by r."""
    from tests.corpus_fixtures import make_document, write_documents_stage

    base = base_documents()
    base_bytes = sum(len(t.encode()) for _, _, t in base)
    copies = -(-target_bytes // base_bytes)

    def documents():
        rng = random.Random(0)
        for r in range(copies):
            order = list(range(len(base)))
            rng.shuffle(order)
            for i in order:
                source, lang, text = base[i]
                lines = text.splitlines(keepends=True)
                k = r % len(lines)
                yield make_document(
                    "".join(lines[k:] + lines[:k]), lang=lang, doc_id=f"{r}-{i:06d}", source=source
                )

    write_documents_stage(data_dir, documents(), shard_docs=shard_docs)
    return {"base_mb": round(base_bytes / 1e6, 2), "copies": copies, "documents": copies * len(base)}


# ---------------------------------------------------------------------------------- child modes


def config(args: argparse.Namespace):
    from pipelines.config import load_config

    return load_config(
        overrides={
            "paths": {"data_dir": args.data_dir},
            "runner": {"direct_running_mode": "multi_processing", "direct_num_workers": args.workers},
            "tokenizer": {"vocab_size": args.vocab, "sample_bytes": int(args.sample_mb * 1e6)},
            "tokens": {"seq_len": args.seq_len, "encode_batch": args.encode_batch},
        }
    )


def sampled_texts(cfg) -> list[str]:
    """Exactly the texts our tokenizer stage trains on (same sampler, materialised in memory)."""
    from pipelines import storage
    from pipelines.tokens.sample import DocumentSample
    from pipelines.tokens.splits import sample_rate

    up = storage.current_version(cfg.paths.data_dir, "filtered")
    rate = sample_rate(
        up.manifest()["documents"]["bytes"], cfg.tokenizer.sample_bytes, cfg.tokens.val_fraction
    )
    sample = DocumentSample(
        up.shard_paths(), cfg.tokenizer.seed, rate, cfg.tokens.val_fraction, cfg.tokenizer.sample_bytes
    )
    return [t for batch in sample.batches() for t in batch]


def all_texts(cfg) -> list[str]:
    import pyarrow.parquet as pq

    from pipelines import storage

    up = storage.current_version(cfg.paths.data_dir, "filtered")
    return [t for p in up.shard_paths() for t in pq.read_table(p, columns=["text"]).column(0).to_pylist()]


def child(args: argparse.Namespace) -> dict:
    cfg = config(args)
    if args.child == "train-ours":
        start = time.perf_counter()
        result = run_stage("tokenizer", cfg)
        m = result.manifest
        return {
            "seconds": time.perf_counter() - start,
            "train_seconds": m["stats"]["train_seconds"],
            "peak_rss_mb": peak_rss_mb(),
            "sample": m["sample"],
            "heldout": m["stats"]["heldout"],
            "tokenizer": (result.version.path / "tokenizer.json").read_text(),
        }
    if args.child == "train-memory":
        from pipelines.tokens.bpe import new_tokenizer, new_trainer

        texts = sampled_texts(cfg)
        tok = new_tokenizer()
        start = time.perf_counter()
        tok.train_from_iterator(
            texts, trainer=new_trainer(cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
        )
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "tokenizer": tok.to_str(pretty=True)}
    if args.child == "encode-raw":
        from pipelines import storage
        from pipelines.tokens.bpe import load_tokenizer

        tok = load_tokenizer(storage.current_version(cfg.paths.data_dir, "tokenizer").path / "tokenizer.json")
        texts = all_texts(cfg)
        nbytes = sum(len(t.encode()) for t in texts)
        b = cfg.tokens.encode_batch
        start = time.perf_counter()
        tokens = 0
        for i in range(0, len(texts), b):
            tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i : i + b]))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "mb": nbytes / 1e6, "mb_s": nbytes / 1e6 / seconds, "tokens": tokens}
    if args.child == "pack-ours":
        from pipelines.beam_stage import pipeline_options

        start = time.perf_counter()
        result = run_stage("tokens", cfg, pipeline_options(cfg.runner))
        seconds = time.perf_counter() - start
        splits = result.manifest["splits"]
        nbytes = sum(s["bytes"] for s in result.manifest["stats"].values())
        return {
            "seconds": seconds,
            "mb_s": nbytes / 1e6 / seconds,
            "tokens": sum(s["tokens"] for s in splits.values()),
            "documents": sum(s["documents"] for s in splits.values()),
            "sequences": {k: s["sequences"] for k, s in splits.items()},
            "path": str(result.version.path),
            "bytes_per_token": {
                k: v["bytes_per_token"] for k, v in result.manifest["stats"]["train"]["languages"].items()
            },
        }
    if args.child == "reader":
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import torch

        torch.set_num_threads(1)
        from pipelines import storage
        from training.data import TokenDataset

        path = storage.current_version(cfg.paths.data_dir, "tokens").path
        ds = TokenDataset(path, "train", seed=1, batch_size=8)
        start, tokens = time.perf_counter(), 0
        for batch in ds:
            tokens += batch.numel()
            if time.perf_counter() - start > args.reader_seconds:
                break
        seconds = time.perf_counter() - start
        return {"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds, "shuffled": True}
    raise SystemExit(f"unknown child mode {args.child}")


def run_child(mode: str, args: argparse.Namespace, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--data-dir", args.data_dir]
    for key in ("vocab", "sample_mb", "workers", "seq_len", "encode_batch", "reader_seconds"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    log(f"running {mode}")
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target-mb", type=float, default=100.0)
    p.add_argument("--sample-mb", type=float, default=16.0, help="tokenizer.sample_bytes in MB")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--encode-batch", type=int, default=256)
    p.add_argument("--reader-seconds", type=float, default=10.0)
    p.add_argument("--data-dir", default="")
    p.add_argument("--child", default="")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if not (SHARED / "tinyshakespeare" / "input.txt").is_file() or not (SHARED / "zh-classics").is_dir():
        print(json.dumps({"bench": "tokenize_throughput", "error": f"shared data not found under {SHARED}"}))
        return
    with tempfile.TemporaryDirectory(prefix="cf-tokbench-") as tmp:
        args.data_dir = args.data_dir or tmp
        start = time.perf_counter()
        corpus = build_corpus(Path(args.data_dir), int(args.target_mb * 1e6), shard_docs=2000)
        corpus["build_seconds"] = round(time.perf_counter() - start, 1)
        log(f"corpus {corpus}")
        ours = run_child("train-ours", args)
        memory = run_child("train-memory", args)
        raw = run_child("encode-raw", args)
        raw1 = run_child("encode-raw", args, env={"TOKENIZERS_PARALLELISM": "false"})
        pack = run_child("pack-ours", args)
        reader = run_child("reader", args) if (REPO / "training" / "data.py").is_file() else None
    result = {
        "bench": "tokenize_throughput",
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "corpus_mb": round(raw["mb"], 1),
        "corpus": corpus,
        "vocab_size": args.vocab,
        "train": {
            "sample_mb": round(ours["sample"]["bytes"] / 1e6, 1),
            "ours_seconds": round(ours["seconds"], 2),
            "ours_train_from_iterator_seconds": ours["train_seconds"],
            "ours_peak_rss_mb": ours["peak_rss_mb"],
            "in_memory_seconds": round(memory["seconds"], 2),
            "in_memory_peak_rss_mb": memory["peak_rss_mb"],
            "time_ratio": round(ours["seconds"] / memory["seconds"], 3),
            "target_time_ratio_max": 1.2,
            "identical_tokenizer": ours["tokenizer"] == memory["tokenizer"],
            "heldout_bytes_per_token": {k: v["bytes_per_token"] for k, v in ours["heldout"].items()},
            "heldout_vocab_share_used": {k: v["vocab_share_used"] for k, v in ours["heldout"].items()},
        },
        "tokenize_pack": {
            "workers": args.workers,
            "ours_mb_s": round(pack["mb_s"], 3),
            "ours_seconds": round(pack["seconds"], 2),
            "raw_encode_batch_mb_s": round(raw["mb_s"], 3),
            "raw_encode_batch_one_thread_mb_s": round(raw1["mb_s"], 3),
            "ratio": round(pack["mb_s"] / raw["mb_s"], 3),
            "target_ratio_min": 0.8,
            "tokens": pack["tokens"],
            "tokens_match_raw_plus_eot": pack["tokens"] == raw["tokens"] + pack["documents"],
            "sequences": pack["sequences"],
            "bytes_per_token": pack["bytes_per_token"],
        },
        "reader_one_core_tokens_per_s": round(reader["tokens_per_s"]) if reader else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
