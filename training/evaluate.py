"""Validation loss / perplexity and text generation."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from training.batching import TokenSpec, prepare_batch
from training.model import IGNORE_INDEX


def window_seed(seed: int, window: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and a window's tokens (BLAKE2b), independent of batch and rank."""
    h = hashlib.blake2b(window.to(torch.int64).numpy().tobytes(), digest_size=8, key=str(seed).encode())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    objective: str,
    seq_len: int,
    spec: TokenSpec,
    device: torch.device | str = "cpu",
    max_batches: int = 0,
    autocast_dtype: torch.dtype | None = None,
    mask_prob: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Token-weighted mean loss and perplexity over ``batches`` of windows (all of them when
    ``max_batches`` is 0). Under torch.distributed the sums are all-reduced.

    mlm masks each window with a generator seeded from ``seed`` and the window's tokens, so the same
    validation windows are scored with the same masks however they are batched or spread over ranks.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i, windows in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        if objective == "mlm":
            parts = [
                prepare_batch(
                    w[None],
                    objective=objective,
                    seq_len=seq_len,
                    spec=spec,
                    generator=torch.Generator().manual_seed(window_seed(seed, w)),
                    mask_prob=mask_prob,
                )
                for w in windows
            ]
            inputs, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            inputs, targets = prepare_batch(windows, objective=objective, seq_len=seq_len, spec=spec)
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        ctx = (
            torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        )
        with ctx:
            logits, _ = model(inputs)
        loss = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total += torch.stack([loss.double(), (targets != IGNORE_INDEX).sum().double()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    model.train(was_training)
    loss_sum, count = total.tolist()
    if count == 0:
        return {"loss": None, "ppl": None, "tokens": 0}
    mean = loss_sum / count
    return {"loss": mean, "ppl": math.exp(min(mean, 700.0)), "tokens": int(count)}


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``tokens`` (1-D or (batch, time)) by ``max_new_tokens`` ids.

    ``temperature <= 0`` is greedy decoding; otherwise sample from the softmax of the logits
    divided by ``temperature``, restricted to the ``top_k`` most likely ids when given, drawing
    from ``generator`` (a CPU generator is fine for a model on another device).
    """
    config = getattr(model, "config", None)
    if config is not None and not config.causal:
        raise ValueError("generate needs a causal model; this one was trained with the mlm objective")
    single = tokens.dim() == 1
    x = tokens.unsqueeze(0) if single else tokens
    device = next(model.parameters()).device
    x = x.to(device)
    max_len = config.max_seq_len if config is not None else x.shape[1] + max_new_tokens
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        logits, _ = model(x[:, -max_len:])
        logits = logits[:, -1, :].float()
        if temperature <= 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            if generator is not None and generator.device != probs.device:
                probs = probs.to(generator.device)
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)
        x = torch.cat([x, nxt], dim=1)
    model.train(was_training)
    return x[0] if single else x
