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
uninterrupted loss curve exactly, and ``train_log.jsonl`` is cut back to the checkpoint's step so
the steps replayed after a crash are not logged twice.

Metrics. Tokens/s leave out the first step (compilation, allocator warm-up) and the time spent
evaluating and checkpointing. MFU uses :mod:`training.flops` (PaLM FLOPs per token over the GPU's
dense bf16 peak, or ``CORPUSFORGE_PEAK_FLOPS``); without a known peak (a CPU run) there is no MFU
and the summary's ``mfu_note`` says why.

Tracking. ``cfg.tracking`` (default ``tensorboard``): TensorBoard event files under
``out_dir/tensorboard/`` and, when installed and configured, MLflow (:mod:`training.tracking`); the
loss curve also stays in the summary and ``train_log.jsonl``.

Layout. :func:`train` builds a :class:`_Run`; ``_Run.run`` is the loop, reading top-down:
``_optimizer_step`` (one step of micro-batches), ``_log_progress`` (log line + ``train_log.jsonl``),
``_evaluate_and_checkpoint`` (periodic), ``_finish`` (final evaluation, checkpoint, summary).
:class:`_Meter` keeps the throughput clock and :class:`_LossBuffer` the not-yet-synced losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from training.batching import TokenSpec, prepare_batch
from training.checkpoint import latest_checkpoint, load_checkpoint, read_state, save_checkpoint
from training.config import TrainConfig, TrainConfigError, trackers, train_problems
from training.data import TokenDataset, TokenLoader, read_manifest
from training.evaluate import evaluate_loss, generate
from training.flops import PEAK_BF16_FLOPS, mfu_note, model_flops_utilization, peak_bf16_flops
from training.model import Transformer, preset_config
from training.tracking import TENSORBOARD_DIR, Tracking

__all__ = [
    "PEAK_BF16_FLOPS",
    "ResumeMismatchError",
    "lr_at",
    "model_flops_utilization",
    "param_groups",
    "peak_bf16_flops",
    "setup_distributed",
    "train",
]

BETAS = (0.9, 0.95)
EPS = 1e-8
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "summary.json"


class ResumeMismatchError(ValueError):
    """``out_dir`` holds checkpoints of a run this config cannot continue; says what differs."""


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
    decay: list[torch.nn.Parameter] = []
    keep: list[torch.nn.Parameter] = []
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
        raise TrainConfigError("invalid TrainConfig: " + "; ".join(problems))


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def tokenizer_location(manifest: dict[str, Any], data_dir: Path) -> str | None:
    """The token dataset's tokenizer as an absolute path (or object-store URI), so a checkpoint names
    it whatever directory reads it later. A relative path recorded in the manifest is taken relative
    to the working directory if it exists there, else to the data directory holding the dataset
    (``<data_dir>/<stage>/<version>``)."""
    recorded = (manifest.get("tokenizer") or {}).get("path")
    if not recorded or "://" in str(recorded) or Path(recorded).is_absolute():
        return recorded
    candidates = [Path.cwd() / recorded, *(base / recorded for base in data_dir.resolve().parents)]
    found = next((c for c in candidates if c.is_file()), candidates[0])
    return str(found.resolve())


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


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

    Resumes from ``out_dir``'s latest checkpoint when ``cfg.resume``. ``log`` receives every log
    line (rank 0 only). ``on_eval(step, metrics)`` is called on rank 0 after each evaluation.
    ``stop_step`` ends the run early (with a checkpoint) as if interrupted, keeping the schedule of
    ``max_steps``. ``prompts`` (token id lists) are continued for the summary's samples (default:
    the start of two validation windows). Returns the summary, also written to
    ``out_dir/summary.json``.
    """
    _check(cfg)
    ctx = setup_distributed(cfg.device)
    try:
        return _Run(cfg, Path(data_dir), Path(out_dir), ctx, log, on_eval).run(prompts, stop_step, save_final)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------- bookkeeping


@dataclass
class _Meter:
    """Throughput clock: steady-state tokens/s (without the first step and pauses), data-wait time,
    and the rate of the current logging interval."""

    tokens_per_step: int
    start: float | None = None  # end of the first step
    first_step: float = 0.0  # its duration
    paused: float = 0.0
    data: float = 0.0
    tokens: int = 0
    interval_start: float = 0.0
    interval_tokens: int = 0

    def step_done(self, t0: float, data_time: float, sync: Callable[[], None]) -> None:
        if self.start is None:
            sync()  # the first step (compilation, allocator warm-up) is left out of the throughput
            self.start = self.interval_start = time.perf_counter()
            self.first_step = self.start - t0
        else:
            self.data += data_time
            self.tokens += self.tokens_per_step
            self.interval_tokens += self.tokens_per_step

    def interval_rate(self) -> float | None:
        elapsed = time.perf_counter() - self.interval_start
        return self.interval_tokens / elapsed if self.interval_tokens else None

    def new_interval(self) -> None:
        self.interval_start, self.interval_tokens = time.perf_counter(), 0

    def steady_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused if self.start is not None else 0.0

    def eta(self, steps_left: int) -> float | None:
        """Seconds for ``steps_left`` more steps at the steady rate so far (None before a timed step)."""
        elapsed = self.steady_seconds()
        if not self.tokens or elapsed <= 0:
            return None
        return steps_left * self.tokens_per_step * elapsed / self.tokens

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time inside is not training time (evaluation, checkpoints)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            pause = time.perf_counter() - t
            self.paused += pause
            self.interval_start += pause

    def final_rate(self) -> tuple[float | None, float | None]:
        """(tokens/s, share of step time waiting for data), measured now."""
        steady = self.steady_seconds()
        if self.tokens and steady > 0:
            return self.tokens / steady, self.data / steady
        if self.first_step > 0:  # a one-step run: its only step, compilation included
            return self.tokens_per_step / self.first_step, None
        return None, None


class _LossBuffer:
    """Step losses kept on the device until a log line needs them (one host sync per interval)."""

    def __init__(self, history: dict[str, list], world_size: int) -> None:
        self.history, self.world_size = history, world_size
        self.losses: list[torch.Tensor] = []
        self.lrs: list[float] = []

    def add(self, loss: torch.Tensor, lr: float) -> None:
        self.losses.append(loss)
        self.lrs.append(lr)

    def flush(self, step: int) -> float | None:
        """Average the buffered losses over ranks, append them to the history; the last one."""
        if not self.losses:
            return None
        losses = torch.stack(self.losses).double()
        if self.world_size > 1:
            dist.all_reduce(losses)
            losses /= self.world_size
        values = losses.tolist()
        self.history["step"].extend(range(step - len(values) + 2, step + 2))
        self.history["loss"].extend(values)
        self.history["lr"].extend(self.lrs)
        self.losses.clear()
        self.lrs.clear()
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"training loss is not finite at step {step + 1}: {values[-1]}")
        return values[-1]


# ---------------------------------------------------------------------------------------------- run


class _Run:
    """State of one training run; ``run`` is the loop."""

    def __init__(
        self, cfg: TrainConfig, data_dir: Path, out_dir: Path, ctx: DistContext, log, on_eval
    ) -> None:
        self.cfg, self.data_dir, self.out_dir, self.ctx = cfg, data_dir, out_dir, ctx
        self._log, self.on_eval = log, on_eval
        self.manifest = read_manifest(data_dir)
        self.spec = TokenSpec.from_manifest(self.manifest)
        data_len = int(self.manifest["seq_len"])
        self.seq_len = cfg.seq_len or data_len
        if self.seq_len > data_len or data_len % self.seq_len:
            raise TrainConfigError(
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
        self.losses = _LossBuffer(self.history, ctx.world_size)
        self.start_step = 0
        self.resumed_from: str | None = None
        self.last_val: dict[str, Any] | None = None
        self.tracking = Tracking([], self.log)  # opened by run(), after resume
        self._tracked = 0  # history entries already sent to the trackers

        # a micro-batch of batch_size windows is batch_size * sequences_per_window training sequences
        self.tokens_per_step = (
            cfg.batch_size * self.sequences_per_window * self.seq_len * cfg.grad_accum * ctx.world_size
        )
        self.flops_per_token = self.model.flops_per_token(self.seq_len)
        self.gpu_name = torch.cuda.get_device_name(ctx.device) if self.cuda else None
        self.peak = peak_bf16_flops(self.gpu_name or "cpu")  # on CPU only CORPUSFORGE_PEAK_FLOPS gives one
        self.mfu_note = mfu_note(self.gpu_name or "cpu", self.peak)

    # ---------------------------------------------------------------------------------------- loop

    def run(self, prompts, stop_step: int | None, save_final: bool) -> dict[str, Any]:
        cfg = self.cfg
        self.resume()
        end_step = min(cfg.max_steps, stop_step) if stop_step is not None else cfg.max_steps
        train_model = self._wrap_for_training()
        self._announce()
        self._open_tracking()
        meter = _Meter(self.tokens_per_step)
        self.model.train()
        try:
            for step in range(self.start_step, end_step):
                t0 = time.perf_counter()
                lr, data_time = self._optimizer_step(train_model, step)
                meter.step_done(t0, data_time, self._sync)
                done = step + 1
                if done % cfg.log_every == 0 or done == end_step:
                    self._log_progress(step, lr, meter, end_step)
                with meter.pause():  # evaluation and saving are not training throughput
                    self._evaluate_and_checkpoint(step, end_step)
            return self._finish(meter, end_step, prompts, save_final)
        finally:
            self.tracking.close()

    def _open_tracking(self) -> None:
        """TensorBoard / MLflow on rank 0 (``cfg.tracking``); the history restored by a resume is
        already in the earlier run's files."""
        self.tracking = Tracking.open(
            trackers(self.cfg),
            self.out_dir,
            start_step=self.start_step,
            params={
                **dataclasses.asdict(self.cfg),
                "params": self.model.num_params(),
                "seq_len": self.seq_len,
            },
            log=self.log,
            enabled=self.ctx.is_main,
        )
        self._tracked = len(self.history["step"])

    def _track_history(self) -> None:
        """Send the per-step losses and learning rates not sent yet."""
        h = self.history
        for i in range(self._tracked, len(h["step"])):
            self.tracking.scalars(h["step"][i], {"train/loss": h["loss"][i], "train/lr": h["lr"][i]})
        self._tracked = len(h["step"])

    def _wrap_for_training(self) -> torch.nn.Module:
        """The module the loop calls: compiled on CUDA if asked, DDP under torchrun."""
        train_model: Any = self.model
        if self.cfg.compile and self.cuda:
            train_model = torch.compile(self.model)
        elif self.cfg.compile:
            self.log("compile is CUDA-only; running eager on CPU")
        if self.ctx.world_size > 1:
            train_model = DDP(train_model, device_ids=[self.ctx.local_rank] if self.cuda else None)
        return train_model

    def _announce(self) -> None:
        device = f"{self.ctx.world_size} x {self.gpu_name or 'cpu'}"
        mfu = f"MFU against a peak of {self.peak / 1e12:.4g} TFLOP/s" if self.peak else self.mfu_note
        self.log(
            f"model {self.cfg.preset}: {self.model.num_params():,} params, seq_len {self.seq_len}, "
            f"{self.tokens_per_step:,} tokens/step on {device}; {mfu}"
        )

    def _optimizer_step(self, train_model: torch.nn.Module, step: int) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (lr, seconds spent on data)."""
        cfg, ctx = self.cfg, self.ctx
        lr = lr_at(
            step, peak=cfg.lr, warmup=cfg.warmup_steps, max_steps=cfg.max_steps, min_ratio=cfg.min_lr_ratio
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=ctx.device)
        data_time = 0.0
        for micro in range(cfg.grad_accum):
            td = time.perf_counter()
            x, y = self._micro_batch(step, micro)
            data_time += time.perf_counter() - td
            last_micro = micro == cfg.grad_accum - 1
            no_sync = train_model.no_sync() if isinstance(train_model, DDP) and not last_micro else None
            with no_sync or contextlib.nullcontext():
                with self.autocast():
                    _, loss = train_model(x, y)
                (loss / cfg.grad_accum).backward()
            step_loss += loss.detach()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.add(step_loss / cfg.grad_accum, lr)
        return lr, data_time

    def _micro_batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of micro-batch ``micro`` of ``step``, on the device."""
        cfg = self.cfg
        windows = next(self.loader)
        gen = None
        if cfg.objective == "mlm":
            gen = torch.Generator().manual_seed(_derived_seed(cfg.seed, self.ctx.rank, step, micro))
        x, y = prepare_batch(
            windows,
            objective=cfg.objective,
            seq_len=self.seq_len,
            spec=self.spec,
            generator=gen,
            mask_prob=cfg.mlm_prob,
        )
        return x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)

    def _log_progress(self, step: int, lr: float, meter: _Meter, end_step: int) -> None:
        """The log line of step ``step + 1``: loss, lr, tokens/s, MFU (where a peak is known), ETA."""
        done = step + 1
        loss = self.losses.flush(step)
        tps = meter.interval_rate()
        mfu = model_flops_utilization(self.flops_per_token, tps, self.ctx.world_size, self.peak)
        eta = meter.eta(end_step - done)
        line = f"step {done}/{self.cfg.max_steps} | loss {loss:.4f} | lr {lr:.2e}"
        line += f" | {tps:,.0f} tok/s" if tps else ""
        line += f" | mfu {100 * mfu:.1f}%" if mfu is not None else ""
        line += f" | eta {_duration(eta)}" if eta is not None and done < end_step else ""
        self.log(line)
        record = {"step": done, "loss": loss, "lr": lr, "tokens_per_s": tps, "mfu": mfu, "eta_s": eta}
        self._append_log(record)
        self._track_history()
        self.tracking.scalars(done, {"train/tokens_per_s": tps, "train/mfu": mfu})
        self.tracking.flush()
        meter.new_interval()

    def _evaluate_and_checkpoint(self, step: int, end_step: int) -> None:
        """Periodic evaluation (not at ``max_steps``: ``_finish`` does it) and checkpoint (not at the
        run's last step: ``_finish`` writes that one)."""
        cfg, done = self.cfg, step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.max_steps:
            self.losses.flush(step)
            self.last_val = self.evaluate(done) or self.last_val
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end_step:
            self.losses.flush(step)
            self.checkpoint(done)

    def _finish(self, meter: _Meter, end_step: int, prompts, save_final: bool) -> dict[str, Any]:
        self._sync()
        self.losses.flush(end_step - 1)
        self._track_history()
        tps, data_frac = meter.final_rate()
        self.loader.close()
        finished = end_step >= self.cfg.max_steps
        if finished:
            self.last_val = self.evaluate(end_step) or self.last_val
        ckpt = self.checkpoint(end_step) if (save_final and end_step > self.start_step) else None
        summary = self.summary(end_step, tps, data_frac, ckpt)
        summary["samples"] = self.samples(prompts) if finished else []
        summary["checkpoint"] = str(ckpt) if ckpt else None
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return summary

    # ------------------------------------------------------------------------------------- metrics

    def summary(
        self, end_step: int, tps: float | None, data_frac: float | None, ckpt: Path | None
    ) -> dict[str, Any]:
        """The run's summary (``summary.json``; what ``training.progress`` reports to Dagster)."""
        cfg, ctx, model = self.cfg, self.ctx, self.model
        losses, last_val = self.history["loss"], self.last_val
        return {
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
            "gpu_name": self.gpu_name,
            "precision": "bf16" if self.amp_dtype is not None else "fp32",
            "compile": bool(cfg.compile and self.cuda),
            "start_step": self.start_step,
            "steps": end_step,
            "resumed_from": self.resumed_from,
            "tokens_per_step": self.tokens_per_step,
            "tokens_seen": end_step * self.tokens_per_step,
            "final_train_loss": losses[-1] if losses else None,
            "val_loss": last_val["loss"] if last_val else None,
            "val_ppl": last_val["ppl"] if last_val else None,
            "tokens_per_s": tps,
            "tokens_per_s_per_device": tps / ctx.world_size if tps else None,
            "flops_per_token": self.flops_per_token,
            "peak_flops": self.peak,
            "mfu": model_flops_utilization(self.flops_per_token, tps, ctx.world_size, self.peak),
            "mfu_note": self.mfu_note,
            "data_time_frac": data_frac,
            "peak_memory_bytes": _peak_memory(ctx.device),
            "loss_curve": {k: self.history[k] for k in ("step", "loss", "lr")},
            "val_curve": {
                "step": self.history["val_step"],
                "loss": self.history["val_loss"],
                "ppl": self.history["val_ppl"],
            },
        }

    # ---------------------------------------------------------------------------- helpers, evaluation

    def log(self, msg: str) -> None:
        if self.ctx.is_main:
            self._log(msg)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.ctx.device)

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
        self._track_history()  # the train curve up to this step first, so the scalars stay in order
        self.tracking.scalars(step, {"val/loss": metrics["loss"], "val/ppl": metrics["ppl"]})
        if self.on_eval is not None and self.ctx.is_main:
            self.on_eval(step, dict(metrics))
        return metrics

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

    # ---------------------------------------------------------------------- checkpoints and resume

    def checkpoint(self, step: int) -> Path | None:
        if not self.ctx.is_main:
            return None
        state = {
            "model_config": self.model_cfg.to_dict(),
            "train_config": dataclasses.asdict(self.cfg),
            "data": {
                "path": str(self.data_dir.resolve()),
                "seq_len": self.seq_len,
                **{
                    k: self.manifest.get(k)
                    for k in ("vocab_size", "eot_id", "pad_id", "mask_id", "tokenizer_sha256")
                },
                "tokenizer_path": tokenizer_location(self.manifest, self.data_dir),
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

    def resume(self) -> None:
        """Continue from ``out_dir``'s latest checkpoint (``resume``), or clear an earlier run."""
        if not self.cfg.resume:
            self._start_fresh()
            return
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            self._cut_log(0)  # a run that crashed before its first checkpoint left only log lines
            return
        saved = read_state(ckpt)
        if saved.get("model_config") != self.model_cfg.to_dict():
            raise ResumeMismatchError(self._mismatch(ckpt, saved))
        doc = load_checkpoint(ckpt, model=self.model, optimizer=self.optimizer)
        self.loader.load_state_dict(doc["reader"])
        self.start_step = int(doc["step"])
        self.history.update({k: list(v) for k, v in doc.get("history", {}).items()})  # in place: shared
        self.resumed_from = str(ckpt)
        self._cut_log(self.start_step)
        self.log(f"resumed from {ckpt} at step {self.start_step}")

    def _mismatch(self, ckpt: Path, saved: dict[str, Any]) -> str:
        old, new = saved.get("model_config") or {}, self.model_cfg.to_dict()
        old_preset = (saved.get("train_config") or {}).get("preset")
        diffs = [f"preset {old_preset} -> {self.cfg.preset}"] if old_preset != self.cfg.preset else []
        diffs += [f"{k} {old.get(k)} -> {new.get(k)}" for k in new | old if old.get(k) != new.get(k)]
        return (
            f"{self.out_dir} holds a run whose model differs from this one ({', '.join(diffs)}; "
            f"latest checkpoint {ckpt.name}). To continue that run, use its settings; to start fresh, "
            "pass --no-resume (config: resume: false), which deletes its checkpoints and log, or use "
            "another --out directory."
        )

    def _start_fresh(self) -> None:
        """``resume=False``: an earlier run's checkpoints and log in ``out_dir`` are removed, so they can
        neither be mistaken for this run's nor outrank its checkpoints in retention."""
        ckpts, log_file = self.out_dir / "checkpoints", self.out_dir / LOG_FILE
        events = self.out_dir / TENSORBOARD_DIR
        if not self.ctx.is_main:
            return
        if not (ckpts.exists() or log_file.exists()):
            shutil.rmtree(events, ignore_errors=True)
            return
        old = sorted(p.name for p in ckpts.glob("step-*")) if ckpts.exists() else []
        self.log(
            f"resume is off: removing {len(old)} checkpoint(s) and the log of an earlier run in {self.out_dir}"
        )
        shutil.rmtree(ckpts, ignore_errors=True)
        shutil.rmtree(events, ignore_errors=True)
        log_file.unlink(missing_ok=True)

    def _cut_log(self, step: int) -> None:
        """Drop ``train_log.jsonl`` records after ``step`` (and a torn last line): they are replayed."""
        file = self.out_dir / LOG_FILE
        if not self.ctx.is_main or not file.is_file():
            return
        kept = []
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
        tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, file)

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
