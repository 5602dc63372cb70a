"""The one FLOPs formula and MFU, torch-free (trainer, model, benchmarks and reports use these).

Training FLOPs per token follow PaLM (Chowdhery et al. 2022, App. B): ``6N + 12 * L * H * Q * T``.
N counts every matrix that takes part in a matmul, with the tied embedding counted once because it
is the output head's matmul (the lookup is free); L layers, H heads, Q head dim, T context length;
causal sparsity is not discounted. MFU is achieved model FLOP/s per device over the device's dense
bf16 peak, from :data:`PEAK_BF16_FLOPS` or ``CORPUSFORGE_PEAK_FLOPS`` (which also gives a CPU run
an MFU); without a known peak there is no MFU, and :func:`mfu_note` says why.
"""

from __future__ import annotations

import os

PEAK_ENV = "CORPUSFORGE_PEAK_FLOPS"

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


def flops_per_token(num_params: int, n_layer: int, n_head: int, head_dim: int, seq_len: int) -> float:
    """Training FLOPs per token: ``6N + 12 * L * H * Q * T`` (PaLM, App. B)."""
    return 6.0 * num_params + 12.0 * n_layer * n_head * head_dim * seq_len


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a GPU name (``CORPUSFORGE_PEAK_FLOPS`` overrides); None if unknown."""
    override = os.environ.get(PEAK_ENV)
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


def mfu_note(device_name: str, peak: float | None) -> str | None:
    """Why a run reports no MFU (None when it does)."""
    if peak:
        return None
    return f"no MFU: no known dense bf16 peak for {device_name} (set {PEAK_ENV}=<FLOP/s> to compute one)"


def format_mfu(mfu: float | None, note: str | None = None) -> str:
    """``"12.3%"``, or the reason there is none."""
    return f"{100 * mfu:.1f}%" if mfu is not None else (note or "no MFU: no known peak for this device")
