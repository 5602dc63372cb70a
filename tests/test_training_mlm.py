"""BERT-style masking: rates, the 80/10/10 split, special tokens, determinism."""

from __future__ import annotations

import pytest
import torch

from training.mlm import mask_tokens
from training.model import IGNORE_INDEX

VOCAB, EOT, PAD, MASK = 500, 0, 1, 2


def run(tokens, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return mask_tokens(tokens, vocab_size=VOCAB, mask_id=MASK, special_ids=[EOT, PAD], generator=g, **kw)


def corpus(n=400_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (n // 1000, 1000), generator=g)
    tokens[:, ::50] = EOT  # document separators
    tokens[:, -40:] = PAD  # padded tail
    return tokens


def test_rates_follow_15_percent_and_80_10_10():
    tokens = corpus()
    inputs, labels = run(tokens)
    eligible = (tokens != EOT) & (tokens != PAD)
    selected = labels != IGNORE_INDEX
    rate = selected.sum().item() / eligible.sum().item()
    assert rate == pytest.approx(0.15, abs=0.003)
    n = selected.sum().item()
    masked = (selected & (inputs == MASK)).sum().item() / n
    unchanged = (selected & (inputs == tokens)).sum().item() / n
    replaced = (selected & (inputs != MASK) & (inputs != tokens)).sum().item() / n
    assert masked == pytest.approx(0.8, abs=0.01)
    # A random draw equals the original 1 time in 497: it then counts as unchanged.
    assert replaced == pytest.approx(0.1 * (1 - 1 / 497), abs=0.01)
    assert unchanged == pytest.approx(0.1 + 0.1 / 497, abs=0.01)
    assert not (~selected & (inputs != tokens)).any()  # nothing changes outside the selection


def test_special_tokens_are_never_selected_and_never_drawn():
    tokens = corpus(50_000)
    inputs, labels = run(tokens, mask_prob=0.9)
    special = (tokens == EOT) | (tokens == PAD)
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[special], tokens[special])
    drawn = (labels != IGNORE_INDEX) & (inputs != MASK) & (inputs != tokens)
    assert drawn.sum() > 100
    assert not torch.isin(inputs[drawn], torch.tensor([EOT, PAD, MASK])).any()


def test_labels_hold_originals_exactly_where_selected():
    tokens = corpus(20_000)
    inputs, labels = run(tokens)
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], tokens[selected])
    assert inputs.dtype == tokens.dtype and inputs.shape == tokens.shape


def test_same_seed_same_masks_other_seed_differs():
    tokens = corpus(20_000)
    a, b, c = run(tokens, seed=7), run(tokens, seed=7), run(tokens, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_probability_edges():
    tokens = corpus(10_000)
    inputs, labels = run(tokens, mask_prob=0.0)
    assert (labels == IGNORE_INDEX).all() and torch.equal(inputs, tokens)
    inputs, labels = run(tokens, mask_prob=1.0, mask_frac=1.0, random_frac=0.0)
    eligible = (tokens != EOT) & (tokens != PAD)
    assert torch.equal(labels != IGNORE_INDEX, eligible)
    assert (inputs[eligible] == MASK).all()
    with pytest.raises(ValueError, match="mask_prob"):
        run(tokens, mask_prob=1.5)
    with pytest.raises(ValueError, match="sum to <= 1"):
        run(tokens, mask_frac=0.8, random_frac=0.3)
