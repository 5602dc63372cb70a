"""Decoder-only Transformer in plain PyTorch, laid out like Llama.

Pre-norm blocks of RMSNorm -> attention (rotary positions, ``F.scaled_dot_product_attention``) and
RMSNorm -> SwiGLU MLP; no biases; the token embedding doubles as the output head (tied).

Parameter names follow Hugging Face's ``LlamaForCausalLM`` without its ``model.`` prefix, so
export is a renaming: the only difference is that q/k/v are stored fused as
``self_attn.qkv_proj`` (rows ``[q; k; v]``) and gate/up as ``mlp.gate_up_proj`` (rows
``[gate; up]``), one matmul each; ``training/export.py`` splits them. Rotary embeddings use the
``rotate_half`` convention (first half / second half of each head), which is HF Llama's, so no
permutation of q/k rows is needed.

With ``causal=False`` (the ``mlm`` objective) attention is bidirectional.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training import flops
from training.config import PRESETS  # model shapes by preset name (torch-free, with TrainConfig)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`Transformer`."""

    vocab_size: int = 32_000
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 176  # SwiGLU hidden width
    max_seq_len: int = 256
    causal: bool = True
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not a multiple of n_head={self.n_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError(f"head_dim={self.d_model // self.n_head} must be even for rotary embeddings")
        for name in ("vocab_size", "n_layer", "n_head", "d_ff", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def num_params(self, *, exclude_embedding: bool = False) -> int:
        """Parameter count from the shapes; equals :meth:`Transformer.num_params`."""
        d = self.d_model
        per_layer = 4 * d * d + 3 * d * self.d_ff + 2 * d
        body = self.n_layer * per_layer + d
        return body if exclude_embedding else body + self.vocab_size * d

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token at context ``seq_len`` (:func:`training.flops.flops_per_token`)."""
        return flops.flops_per_token(self.num_params(), self.n_layer, self.n_head, self.head_dim, seq_len)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**data)


def preset_config(
    name: str, *, vocab_size: int, max_seq_len: int | None = None, causal: bool = True
) -> ModelConfig:
    """The named preset (``tiny``, ``small``, ``124m``) for a vocabulary and context length.

    ``124m`` is GPT-2 small's shape (12 layers, width 768, 12 heads, 1024 context); its parameter
    count is 124M with GPT-2's 50,257-token vocabulary and about 110M with a 32,000 one.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    cfg = ModelConfig(vocab_size=vocab_size, causal=causal, **PRESETS[name])
    return replace(cfg, max_seq_len=max_seq_len) if max_seq_len else cfg


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32 (as HF Llama), scaled by a learned weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim), frequencies repeated for both halves."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, time, head_dim) ``x`` by the position tables (time, head_dim)."""
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.causal = cfg.n_head, cfg.head_dim, cfg.causal
        self.qkv_proj = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv_proj(x).view(b, t, 3, self.n_head, self.head_dim).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, c))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


RESIDUAL_PROJECTIONS = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


class Transformer(nn.Module):
    """Token ids (batch, time) -> logits (batch, time, vocab), and the loss when targets are given."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 / Llama init: N(0, std) matrices, residual projections std / sqrt(2 * n_layer), norms 1."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = math.sqrt(2 * self.config.n_layer) if name.endswith(RESIDUAL_PROJECTIONS) else 1.0
                nn.init.normal_(p, mean=0.0, std=std / scale)
            else:
                nn.init.ones_(p)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = idx.shape[1]
        if t > self.config.max_seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds max_seq_len={self.config.max_seq_len}")
        x = self.embed_tokens(idx)
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]  # type: ignore[index]  # registered buffers
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = F.linear(self.norm(x), self.embed_tokens.weight)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def num_params(self, *, exclude_embedding: bool = False) -> int:
        """Unique parameters; the tied embedding / output head matrix is counted once."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.weight.numel() if exclude_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (see :meth:`ModelConfig.flops_per_token`)."""
        c = self.config
        return flops.flops_per_token(self.num_params(), c.n_layer, c.n_head, c.head_dim, seq_len)
