"""BERT-style token masking for the masked-LM objective (Devlin et al. 2019, section 3.1).

Each position whose token is not special is selected with probability ``mask_prob``. A selected
position becomes the mask token with probability ``mask_frac`` (0.8), a uniformly drawn
non-special token with probability ``random_frac`` (0.1), and stays unchanged otherwise (0.1).
Labels hold the original token at selected positions and -100 (ignored by the loss) elsewhere.
All draws come from the given ``torch.Generator``, so the same generator state gives the same
masks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from training.model import IGNORE_INDEX


def mask_tokens(
    tokens: torch.Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    generator: torch.Generator,
    mask_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(inputs, labels)`` for integer ``tokens`` of any shape (CPU generator)."""
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be within [0, 1], not {mask_prob}")
    if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0:
        raise ValueError(f"mask_frac={mask_frac} and random_frac={random_frac} must be >= 0 and sum to <= 1")
    special = torch.tensor(sorted({int(i) for i in special_ids} | {int(mask_id)}), dtype=tokens.dtype)
    device = tokens.device
    tokens_cpu = tokens.cpu()
    eligible = ~torch.isin(tokens_cpu, special)
    selected = (torch.rand(tokens_cpu.shape, generator=generator) < mask_prob) & eligible
    action = torch.rand(tokens_cpu.shape, generator=generator)
    to_mask = selected & (action < mask_frac)
    to_random = selected & (action >= mask_frac) & (action < mask_frac + random_frac)

    allowed = torch.arange(vocab_size, dtype=tokens.dtype)
    allowed = allowed[~torch.isin(allowed, special)]
    draws = allowed[torch.randint(len(allowed), tokens_cpu.shape, generator=generator)]

    inputs = tokens_cpu.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = draws[to_random]
    labels = torch.where(selected, tokens_cpu, torch.full_like(tokens_cpu, IGNORE_INDEX))
    return inputs.to(device), labels.to(device)
