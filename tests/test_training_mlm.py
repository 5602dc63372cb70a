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


def test_validation_masks_do_not_depend_on_batching_or_order():
    from training.batching import TokenSpec
    from training.evaluate import evaluate_loss
    from training.model import ModelConfig, Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=60, max_seq_len=16, causal=False))
    windows = torch.randint(3, 60, (6, 17), generator=torch.Generator().manual_seed(1))
    spec = TokenSpec(vocab_size=60, eot_id=0, pad_id=1, mask_id=2)

    def loss(batches):
        return evaluate_loss(model, batches, objective="mlm", seq_len=16, spec=spec, seed=5)["loss"]

    whole = loss([windows])
    assert loss([windows[:2], windows[2:4], windows[4:]]) == pytest.approx(whole, rel=1e-6)
    assert loss([windows.flip(0)]) == pytest.approx(whole, rel=1e-6)  # as if another rank held them
    assert loss([windows]) == whole  # deterministic
    assert evaluate_loss(model, [windows], objective="mlm", seq_len=16, spec=spec, seed=6)["loss"] != whole
