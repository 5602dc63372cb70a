"""Training throughput benchmark: prints ONE JSON line.

    python bench/train_throughput.py                      # 124m + bf16 + compile on CUDA, tiny on CPU
    python bench/train_throughput.py --preset small --steps 20 --data /path/to/tokens
    torchrun --nproc_per_node=8 bench/train_throughput.py # DDP
    python bench/train_throughput.py --reader             # token reader alone, one core

Runs ``training.trainer.train`` for ``--steps`` optimizer steps on real token shards (``--data``)
or on synthetic ones (uniform random ids, written to a temporary directory), and reports
tokens/s (the first step, which compiles, is not timed), MFU against the GPU's dense bf16 peak
(``--peak-tflops`` overrides the table), peak memory (CUDA allocator peak, or max RSS on CPU) and
the share of step time spent waiting for data. ``--reader`` instead measures the shard reader's
tokens/s on one core, in batch and in single-sequence mode, and its RSS growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import TrainConfig  # noqa: E402
from training.data import TokenDataset, write_token_dataset  # noqa: E402
from training.trainer import train  # noqa: E402


def synthetic_dataset(root: Path, sequences: int, seq_len: int, vocab_size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    windows = rng.integers(3, vocab_size, size=(sequences, seq_len + 1), dtype=np.uint16)
    val = rng.integers(3, vocab_size, size=(max(8, sequences // 50), seq_len + 1), dtype=np.uint16)
    return write_token_dataset(
        root, {"train": windows, "val": val}, vocab_size=vocab_size, sequences_per_shard=8192
    )


def _rss_file_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def bench_reader(args: argparse.Namespace, tmp: Path) -> dict:
    torch.set_num_threads(1)
    data = (
        Path(args.data)
        if args.data
        else synthetic_dataset(tmp / "tokens", 40_000, args.seq_len or 1024, 32_000)
    )
    out: dict = {"bench": "token_reader", "threads": 1}
    for mode, batch in (("batch", args.batch_size or 16), ("sequence", None)):
        ds = TokenDataset(data, "train", seed=1, batch_size=batch)
        out.update(sequences=ds.num_sequences, seq_len=ds.seq_len)
        total = 2 * ds.num_sequences
        it, n, rss0 = iter(ds), 0, _rss_file_bytes()
        start = time.perf_counter()
        while n < total:
            item = next(it)
            n += len(item) if batch else 1
        elapsed = time.perf_counter() - start
        out[f"tokens_per_s_{mode}"] = n * ds.seq_len / elapsed
        out[f"rss_file_growth_bytes_{mode}"] = _rss_file_bytes() - rss0
    return out


def bench_train(args: argparse.Namespace, tmp: Path) -> dict:
    cuda = torch.cuda.is_available() and args.device != "cpu"
    preset = args.preset or ("124m" if cuda else "tiny")
    batch = args.batch_size or (16 if cuda else 8)
    seq_len = args.seq_len or (1024 if cuda else 256)
    compile_ = cuda if args.compile is None else args.compile
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.data:
        data = Path(args.data)
    else:
        need = (args.steps + 2) * batch * args.grad_accum * world
        data = synthetic_dataset(tmp / "tokens", need, seq_len, args.vocab_size)
    if args.peak_tflops:
        os.environ["CORPUSFORGE_PEAK_FLOPS"] = str(args.peak_tflops * 1e12)
    cfg = TrainConfig(
        preset=preset,
        max_steps=args.steps,
        batch_size=batch,
        grad_accum=args.grad_accum,
        warmup_steps=min(10, args.steps),
        eval_every=0,
        eval_batches=1,
        checkpoint_every=0,
        log_every=max(1, args.steps // 5),
        device="cuda" if cuda else "cpu",
        compile=compile_,
        precision=args.precision,
        seq_len=seq_len if args.data and args.seq_len else 0,
        num_workers=args.num_workers,
        resume=False,
        seed=1,
    )
    s = train(cfg, data, tmp / "run", log=lambda m: print(m, file=sys.stderr), prompts=[], save_final=False)
    return {
        "bench": "train_throughput",
        "device": s["device"],
        "gpu_name": s["gpu_name"],
        "preset": preset,
        "params": s["params"],
        "seq_len": s["seq_len"],
        "batch_size": s["batch_size"],
        "grad_accum": s["grad_accum"],
        "world_size": s["world_size"],
        "tokens_per_step": s["tokens_per_step"],
        "steps": s["steps"],
        "timed_steps": s["steps"] - 1,
        "precision": s["precision"],
        "compile": s["compile"],
        "tokens_per_s": s["tokens_per_s"],
        "tokens_per_s_per_device": s["tokens_per_s_per_device"],
        "flops_per_token": s["flops_per_token"],
        "peak_flops": s["peak_flops"],
        "mfu": s["mfu"],
        "peak_memory_bytes": s["peak_memory_bytes"],
        "data_time_frac": s["data_time_frac"],
        "final_loss": s["final_train_loss"],
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["tiny", "small", "124m"], help="default: 124m on CUDA, tiny on CPU")
    p.add_argument("--data", help="token dataset directory; default: synthetic shards")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument(
        "--batch-size", type=int, help="sequences per micro-batch per rank (default 16 CUDA / 8 CPU)"
    )
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--seq-len", type=int, help="context (default 1024 CUDA / 256 CPU)")
    p.add_argument("--vocab-size", type=int, default=32_000, help="synthetic data vocabulary")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on with CUDA"
    )
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu"], default="auto")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak to compute MFU against")
    p.add_argument("--reader", action="store_true", help="benchmark the token reader alone")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        result = bench_reader(args, Path(tmp)) if args.reader else bench_train(args, Path(tmp))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
