"""Pretraining loop: one function, ``train``, for CPU, one GPU or DDP under torchrun.

Optimisation. AdamW (betas 0.9/0.95, eps 1e-8; ``fused=True`` on CUDA). Weight decay applies to
the matrices of attention and MLP only; norm weights and the tied token embedding / output head
are not decayed (decaying the embedding shrinks rare tokens' rows, which get few gradient
updates). Learning rate: linear warmup from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps``,
then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``. Gradients are accumulated over
``grad_accum`` micro-batches (DDP syncs only on the last) and clipped to ``grad_clip``.

Precision. bf16 autocast on CUDA (``precision=auto``), fp32 on CPU; TF32 matmuls on CUDA.
``compile`` wraps the model in ``torch.compile`` on CUDA only; checkpoints and evaluation use the
plain module, so no ``_orig_mod.`` key ever reaches disk.

Distribution. Under torchrun (``WORLD_SIZE`` > 1) a process group is started (nccl on CUDA, gloo
on CPU), the model is wrapped in DDP and each rank reads a disjoint part of every global batch
through :class:`training.data.TokenDataset`; a global step covers ``batch_size * grad_accum *
world_size`` sequences. Only rank 0 logs and writes files.

Determinism. Initialisation, data order and (mlm) masks derive from ``seed``; masks for step s,
micro-batch m on rank r come from a generator seeded by (seed, r, s, m), so nothing random has to
be carried across a resume except what the checkpoint stores. A resumed CPU run reproduces the
uninterrupted loss curve exactly.

MFU is ``flops_per_token * tokens/s per GPU / peak`` with the PaLM FLOPs formula
(``Transformer.flops_per_token``) and the GPU's dense bf16 peak from :data:`PEAK_BF16_FLOPS`
(or ``CORPUSFORGE_PEAK_FLOPS``, which also gives a CPU run an MFU); otherwise None when the peak is
unknown or on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from pipelines.config import TrainConfig, to_dict, train_problems
from training.batching import TokenSpec, prepare_batch
from training.checkpoint import latest_checkpoint, load_checkpoint, read_state, save_checkpoint
from training.data import TokenDataset, TokenLoader, read_manifest
from training.evaluate import evaluate_loss, generate
from training.model import Transformer, preset_config

BETAS = (0.9, 0.95)
EPS = 1e-8

# Dense (not 2:4 sparse) bf16 tensor-core peaks, matched in order against torch.cuda.get_device_name().
PEAK_BF16_FLOPS: list[tuple[tuple[str, ...], float]] = [
    (("H100", "PCIE"), 756e12),
    (("H100", "NVL"), 835e12),
    (("GH200",), 989e12),
    (("H200", "NVL"), 835e12),
    (("H200",), 989e12),
    (("H100",), 989e12),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    (("H800",), 989e12),
    (("B200",), 2250e12),
    (("A100",), 312e12),
    (("A800",), 312e12),
    (("L40S",), 362e12),
    (("L40",), 181e12),
    (("L4",), 121e12),
    (("A10G",), 70e12),
]


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a GPU name (``CORPUSFORGE_PEAK_FLOPS`` overrides); None if unknown."""
    override = os.environ.get("CORPUSFORGE_PEAK_FLOPS")
    if override:
        return float(override)
    name = device_name.upper()
    for keys, flops in PEAK_BF16_FLOPS:
        if all(k in name for k in keys):
            return flops
    return None


def model_flops_utilization(
    flops_per_token: float, tokens_per_s: float | None, world_size: int, peak: float | None
) -> float | None:
    """MFU: achieved model FLOP/s per device over the device's peak (None without a peak or a rate)."""
    if not peak or not tokens_per_s:
        return None
    return flops_per_token * tokens_per_s / world_size / peak


def lr_at(step: int, *, peak: float, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Learning rate of 0-based optimizer step ``step`` (linear warmup, cosine decay)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if max_steps <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / (max_steps - warmup))
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed matrices, and undecayed norms + token embedding."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (keep if p.dim() < 2 or name.startswith("embed_tokens") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistContext:
    """Device from ``device`` (auto/cpu/cuda) and, under torchrun, the process group."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            dist.init_process_group(backend="nccl", device_id=dev)
        else:
            dist.init_process_group(backend="gloo")
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world, local, dev, owns)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _derived_seed(*parts: Any) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _check(cfg: TrainConfig) -> None:
    problems = train_problems(cfg)
    if problems:
        raise ValueError("invalid TrainConfig: " + "; ".join(problems))


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train(
    cfg: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    log: Callable[[str], Any] = print,
    on_eval: Callable[[int, dict[str, Any]], Any] | None = None,
    prompts: list[list[int]] | None = None,
    stop_step: int | None = None,
    save_final: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.preset`` on the token dataset ``data_dir``; checkpoints and logs go to ``out_dir``.

    Resumes from ``out_dir``'s latest checkpoint when ``cfg.resume``. ``on_eval(step, metrics)`` is
    called on rank 0 after each evaluation. ``stop_step`` ends the run early (with a checkpoint)
    as if interrupted, keeping the schedule of ``max_steps``. ``prompts`` (token id lists) are
    continued for the summary's samples (default: the start of two validation windows). Returns
    the summary, also written to ``out_dir/summary.json``.
    """
    _check(cfg)
    ctx = setup_distributed(cfg.device)
    try:
        return _Run(cfg, Path(data_dir), Path(out_dir), ctx, log, on_eval).run(prompts, stop_step, save_final)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


class _Run:
    """State of one training run; ``run`` is the loop."""

    def __init__(self, cfg, data_dir: Path, out_dir: Path, ctx: DistContext, log, on_eval) -> None:
        self.cfg, self.data_dir, self.out_dir, self.ctx = cfg, data_dir, out_dir, ctx
        self._log, self.on_eval = log, on_eval
        self.manifest = read_manifest(data_dir)
        self.spec = TokenSpec.from_manifest(self.manifest)
        data_len = int(self.manifest["seq_len"])
        self.seq_len = cfg.seq_len or data_len
        if self.seq_len > data_len or data_len % self.seq_len:
            raise ValueError(
                f"train.seq_len={cfg.seq_len} must divide the dataset's seq_len={data_len} (each window "
                "is cut into whole training sequences, so no token is dropped); use 0 for the dataset's"
            )
        self.sequences_per_window = data_len // self.seq_len
        self.cuda = ctx.device.type == "cuda"
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.cuda)
        self.amp_dtype = torch.bfloat16 if bf16 else None
        if self.cuda:
            torch.set_float32_matmul_precision("high")

        _seed_everything(cfg.seed)
        self.model_cfg = preset_config(
            cfg.preset,
            vocab_size=self.spec.vocab_size,
            max_seq_len=self.seq_len,
            causal=cfg.objective == "clm",
        )
        self.model = Transformer(self.model_cfg).to(ctx.device)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            betas=BETAS,
            eps=EPS,
            fused=True if self.cuda else None,
        )
        train_ds = TokenDataset(
            data_dir,
            "train",
            seed=cfg.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            batch_size=cfg.batch_size,
        )
        self.loader = TokenLoader(train_ds, num_workers=cfg.num_workers, pin_memory=self.cuda)
        val = self.manifest["splits"].get("val")
        self.val_ds = None
        if val and int(val.get("sequences", 0)) > 0:
            self.val_ds = TokenDataset(
                data_dir,
                "val",
                rank=ctx.rank,
                world_size=ctx.world_size,
                batch_size=cfg.batch_size,
                shuffle=False,
            )
        self.history: dict[str, list] = {
            "step": [],
            "loss": [],
            "lr": [],
            "val_step": [],
            "val_loss": [],
            "val_ppl": [],
        }
        self.start_step, self.resumed_from = 0, None

    # ------------------------------------------------------------------------------------- helpers

    def log(self, msg: str) -> None:
        if self.ctx.is_main:
            self._log(msg)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    def resume(self) -> None:
        if not self.cfg.resume:
            self._start_fresh()
            return
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            return
        saved = read_state(ckpt).get("model_config")
        if saved != self.model_cfg.to_dict():
            raise ValueError(
                f"{ckpt}: checkpoint model {saved} differs from this run's {self.model_cfg.to_dict()}"
            )
        doc = load_checkpoint(ckpt, model=self.model, optimizer=self.optimizer)
        self.loader.load_state_dict(doc["reader"])
        self.start_step = int(doc["step"])
        self.history = {k: list(v) for k, v in doc.get("history", self.history).items()}
        self.resumed_from = str(ckpt)
        self.log(f"resumed from {ckpt} at step {self.start_step}")

    def _start_fresh(self) -> None:
        """``resume=False``: an earlier run's checkpoints and log in ``out_dir`` are removed, so they can
        neither be mistaken for this run's nor outrank its checkpoints in retention."""
        ckpts, log_file = self.out_dir / "checkpoints", self.out_dir / "train_log.jsonl"
        if not self.ctx.is_main or not (ckpts.exists() or log_file.exists()):
            return
        old = sorted(p.name for p in ckpts.glob("step-*")) if ckpts.exists() else []
        self.log(
            f"resume is off: removing {len(old)} checkpoint(s) and the log of an earlier run in {self.out_dir}"
        )
        shutil.rmtree(ckpts, ignore_errors=True)
        log_file.unlink(missing_ok=True)

    def evaluate(self, step: int) -> dict[str, Any] | None:
        if self.val_ds is None:
            return None
        metrics = evaluate_loss(
            self.model,
            iter(self.val_ds),
            objective=self.cfg.objective,
            seq_len=self.seq_len,
            spec=self.spec,
            device=self.ctx.device,
            max_batches=self.cfg.eval_batches,
            autocast_dtype=self.amp_dtype,
            mask_prob=self.cfg.mlm_prob,
            seed=_derived_seed(self.cfg.seed, "val"),  # masks follow the windows, not the rank
        )
        if metrics["loss"] is None:
            return None
        for key, value in (("val_step", step), ("val_loss", metrics["loss"]), ("val_ppl", metrics["ppl"])):
            self.history[key].append(value)
        self.log(f"eval step {step} | val loss {metrics['loss']:.4f} | ppl {metrics['ppl']:.2f}")
        if self.on_eval is not None and self.ctx.is_main:
            self.on_eval(step, dict(metrics))
        return metrics

    def checkpoint(self, step: int) -> Path | None:
        if not self.ctx.is_main:
            return None
        state = {
            "model_config": self.model_cfg.to_dict(),
            "train_config": to_dict(self.cfg),
            "data": {
                "path": str(self.data_dir),
                "seq_len": self.seq_len,
                **{
                    k: self.manifest.get(k)
                    for k in ("vocab_size", "eot_id", "pad_id", "mask_id", "tokenizer_sha256")
                },
                "tokenizer_path": (self.manifest.get("tokenizer") or {}).get("path"),
            },
            "world_size": self.ctx.world_size,
            "reader": self.loader.state_dict(),
            "history": self.history,
        }
        path = save_checkpoint(
            self.out_dir,
            step,
            model=self.model,
            optimizer=self.optimizer,
            state=state,
            keep=self.cfg.keep_checkpoints,
        )
        self.log(f"saved checkpoint {path}")
        return path

    def samples(self, prompts: list[list[int]] | None) -> list[dict[str, list[int]]]:
        if not self.model_cfg.causal or not self.ctx.is_main:
            return []
        if prompts is None:
            source = self.val_ds if self.val_ds is not None else self.loader.dataset
            n = min(2, source.num_sequences)
            prompts = [row[:16].tolist() for row in source.read(list(range(n)))]
        gen = torch.Generator().manual_seed(self.cfg.seed)
        out = []
        for prompt in prompts:
            ids = generate(self.model, torch.tensor(prompt, dtype=torch.long), 32, 0.8, 50, gen)
            out.append({"prompt": list(prompt), "completion": ids[len(prompt) :].tolist()})
        return out

    # ---------------------------------------------------------------------------------------- loop

    def run(self, prompts, stop_step: int | None, save_final: bool) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        self.resume()
        end_step = min(cfg.max_steps, stop_step) if stop_step is not None else cfg.max_steps
        model = self.model
        train_model: torch.nn.Module = model
        if cfg.compile and self.cuda:
            train_model = torch.compile(model)
        elif cfg.compile:
            self.log("compile is CUDA-only; running eager on CPU")
        if ctx.world_size > 1:
            train_model = DDP(train_model, device_ids=[ctx.local_rank] if self.cuda else None)

        # a micro-batch of batch_size windows is batch_size * sequences_per_window training sequences
        tokens_per_step = (
            cfg.batch_size * self.sequences_per_window * self.seq_len * cfg.grad_accum * ctx.world_size
        )
        flops_per_token = model.flops_per_token(self.seq_len)
        gpu_name = torch.cuda.get_device_name(ctx.device) if self.cuda else None
        peak = peak_bf16_flops(gpu_name or "cpu")  # on CPU only CORPUSFORGE_PEAK_FLOPS gives one
        self.log(
            f"model {cfg.preset}: {model.num_params():,} params, seq_len {self.seq_len}, "
            f"{tokens_per_step:,} tokens/step on {ctx.world_size} x {gpu_name or 'cpu'}"
        )

        pending: list[torch.Tensor] = []
        pending_lr: list[float] = []
        timing = {"start": None, "paused": 0.0, "data": 0.0, "tokens": 0, "first_step": 0.0}
        interval_start, interval_tokens = time.perf_counter(), 0
        last_val = None

        def sync() -> None:
            if self.cuda:
                torch.cuda.synchronize(ctx.device)

        def flush(step: int) -> float:
            losses = torch.stack(pending).double()
            if ctx.world_size > 1:
                dist.all_reduce(losses)
                losses /= ctx.world_size
            values = losses.tolist()
            self.history["step"].extend(range(step - len(values) + 2, step + 2))
            self.history["loss"].extend(values)
            self.history["lr"].extend(pending_lr)
            pending.clear()
            pending_lr.clear()
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(f"training loss is not finite at step {step + 1}: {values[-1]}")
            return values[-1]

        model.train()
        for step in range(self.start_step, end_step):
            t0 = time.perf_counter()
            lr = lr_at(
                step,
                peak=cfg.lr,
                warmup=cfg.warmup_steps,
                max_steps=cfg.max_steps,
                min_ratio=cfg.min_lr_ratio,
            )
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            step_loss = torch.zeros((), device=ctx.device)
            data_time = 0.0
            for micro in range(cfg.grad_accum):
                td = time.perf_counter()
                windows = next(self.loader)
                gen = None
                if cfg.objective == "mlm":
                    gen = torch.Generator().manual_seed(_derived_seed(cfg.seed, ctx.rank, step, micro))
                x, y = prepare_batch(
                    windows,
                    objective=cfg.objective,
                    seq_len=self.seq_len,
                    spec=self.spec,
                    generator=gen,
                    mask_prob=cfg.mlm_prob,
                )
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                data_time += time.perf_counter() - td
                last_micro = micro == cfg.grad_accum - 1
                no_sync = train_model.no_sync() if isinstance(train_model, DDP) and not last_micro else None
                with no_sync or contextlib.nullcontext():
                    with self.autocast():
                        _, loss = train_model(x, y)
                    (loss / cfg.grad_accum).backward()
                step_loss += loss.detach()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            pending.append(step_loss / cfg.grad_accum)
            pending_lr.append(lr)
            done = step + 1

            if timing["start"] is None:
                sync()  # the first step (compilation, allocator warm-up) is left out of the throughput
                timing["start"] = interval_start = time.perf_counter()
                timing["first_step"] = timing["start"] - t0
            else:
                timing["data"] += data_time
                timing["tokens"] += tokens_per_step
                interval_tokens += tokens_per_step
            if done % cfg.log_every == 0 or done == end_step:
                loss_value = flush(step)
                elapsed = time.perf_counter() - interval_start
                tps = interval_tokens / elapsed if interval_tokens else None
                mfu = model_flops_utilization(flops_per_token, tps, ctx.world_size, peak)
                line = f"step {done}/{cfg.max_steps} | loss {loss_value:.4f} | lr {lr:.2e}"
                line += f" | {tps:,.0f} tok/s" if tps else ""
                line += f" | mfu {100 * mfu:.1f}%" if mfu is not None else ""
                self.log(line)
                self._append_log(
                    {"step": done, "loss": loss_value, "lr": lr, "tokens_per_s": tps, "mfu": mfu}
                )
                interval_start, interval_tokens = time.perf_counter(), 0
            paused = time.perf_counter()
            if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.max_steps:
                if pending:
                    flush(step)
                last_val = self.evaluate(done) or last_val
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end_step:
                if pending:
                    flush(step)
                self.checkpoint(done)
            pause = time.perf_counter() - paused  # evaluation and saving are not training throughput
            timing["paused"] += pause
            interval_start += pause

        sync()
        if pending:
            flush(end_step - 1)
        steady = (
            time.perf_counter() - timing["start"] - timing["paused"] if timing["start"] is not None else 0.0
        )
        self.loader.close()
        finished = end_step >= cfg.max_steps
        if finished:
            last_val = self.evaluate(end_step) or last_val
        ckpt = self.checkpoint(end_step) if (save_final and end_step > self.start_step) else None

        if timing["tokens"] and steady > 0:
            tps, data_frac = timing["tokens"] / steady, timing["data"] / steady
        elif timing["first_step"] > 0:
            tps, data_frac = tokens_per_step / timing["first_step"], None
        else:
            tps, data_frac = None, None
        mfu = model_flops_utilization(flops_per_token, tps, ctx.world_size, peak)
        losses = self.history["loss"]
        summary = {
            "preset": cfg.preset,
            "objective": cfg.objective,
            "params": model.num_params(),
            "non_embedding_params": model.num_params(exclude_embedding=True),
            "model_config": self.model_cfg.to_dict(),
            "seq_len": self.seq_len,
            "batch_size": cfg.batch_size,
            "grad_accum": cfg.grad_accum,
            "world_size": ctx.world_size,
            "device": ctx.device.type,
            "gpu_name": gpu_name,
            "precision": "bf16" if self.amp_dtype is not None else "fp32",
            "compile": bool(cfg.compile and self.cuda),
            "start_step": self.start_step,
            "steps": end_step,
            "resumed_from": self.resumed_from,
            "tokens_per_step": tokens_per_step,
            "tokens_seen": end_step * tokens_per_step,
            "final_train_loss": losses[-1] if losses else None,
            "val_loss": last_val["loss"] if last_val else None,
            "val_ppl": last_val["ppl"] if last_val else None,
            "tokens_per_s": tps,
            "tokens_per_s_per_device": tps / ctx.world_size if tps else None,
            "flops_per_token": flops_per_token,
            "peak_flops": peak,
            "mfu": mfu,
            "data_time_frac": data_frac,
            "peak_memory_bytes": _peak_memory(ctx.device),
            "loss_curve": {k: self.history[k] for k in ("step", "loss", "lr")},
            "val_curve": {
                "step": self.history["val_step"],
                "loss": self.history["val_loss"],
                "ppl": self.history["val_ppl"],
            },
            "samples": self.samples(prompts) if finished else [],
            "checkpoint": str(ckpt) if ckpt else None,
        }
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return summary

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
