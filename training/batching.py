"""Turn token windows into model inputs and targets for the clm and mlm objectives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from training.mlm import mask_tokens
from training.model import IGNORE_INDEX


@dataclass(frozen=True)
class TokenSpec:
    """Vocabulary size and special ids of a token dataset (from its manifest)."""

    vocab_size: int
    eot_id: int | None = None
    pad_id: int | None = None
    mask_id: int | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> TokenSpec:
        def opt(key: str) -> int | None:
            value = manifest.get(key)
            return None if value is None else int(value)

        return cls(int(manifest["vocab_size"]), opt("eot_id"), opt("pad_id"), opt("mask_id"))

    @property
    def special_ids(self) -> tuple[int, ...]:
        return tuple(i for i in (self.eot_id, self.pad_id) if i is not None)


def prepare_batch(
    windows: torch.Tensor,
    *,
    objective: str,
    seq_len: int,
    spec: TokenSpec,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of shape (batch * k, seq_len) from windows (batch, >= seq_len + 1).

    A window of ``W`` tokens gives ``k = (W - 1) // seq_len`` training sequences: sub-window ``i``
    holds tokens ``i*seq_len .. (i+1)*seq_len`` (next-token targets overlap the next sub-window by
    one token, as windows do), so a context shorter than the dataset's trains on every token when it
    divides the dataset's ``seq_len``.
    clm: inputs are the sub-windows' first ``seq_len`` tokens, targets the next tokens, with pad
    targets ignored. mlm: the sub-windows masked by :func:`training.mlm.mask_tokens` (needs
    ``generator`` and a ``mask_id``); targets are the originals at masked positions.
    """
    if windows.shape[-1] < seq_len + 1:
        raise ValueError(
            f"windows of {windows.shape[-1]} tokens are shorter than seq_len + 1 = {seq_len + 1}"
        )
    n = (windows.shape[-1] - 1) // seq_len * seq_len
    if objective == "clm":
        inputs = windows[:, :n].reshape(-1, seq_len)
        targets = windows[:, 1 : n + 1].reshape(-1, seq_len).clone()
        if spec.pad_id is not None:
            targets[targets == spec.pad_id] = IGNORE_INDEX
        return inputs, targets
    if objective == "mlm":
        if spec.mask_id is None:
            raise ValueError("the mlm objective needs a mask_id in the token dataset manifest")
        if generator is None:
            raise ValueError("the mlm objective needs a torch.Generator for masking")
        return mask_tokens(
            windows[:, :n].reshape(-1, seq_len),
            vocab_size=spec.vocab_size,
            mask_id=spec.mask_id,
            special_ids=spec.special_ids,
            generator=generator,
            mask_prob=mask_prob,
        )
    raise ValueError(f"unknown objective {objective!r}; use clm or mlm")
