"""Transformer: shapes, causality, parameter and FLOP accounting, initialisation, learning."""

from __future__ import annotations

import math

import pytest
import torch

from training.model import ModelConfig, Transformer, apply_rope, preset_config, rope_tables


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box has 2 shared cores; OpenMP spinning makes 2 threads slower
    yield
    torch.set_num_threads(before)


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=101, max_seq_len=32, **kw))


def test_forward_shapes_and_loss_at_init_is_near_uniform():
    model = tiny()
    x, y = torch.randint(0, 101, (3, 20)), torch.randint(0, 101, (3, 20))
    logits, loss = model(x, y)
    assert logits.shape == (3, 20, 101)
    assert abs(loss.item() - math.log(101)) < 0.1  # std-0.02 init: nearly uniform predictions


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    model = tiny().eval()
    x = torch.randint(0, 101, (2, 24))
    y = x.clone()
    y[:, 15] = (y[:, 15] + 1) % 101
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[:, :15], b[:, :15], atol=1e-6, rtol=0)
    assert (a[:, 15:] - b[:, 15:]).abs().max() > 1e-3


def test_bidirectional_model_sees_the_future():
    model = tiny(causal=False).eval()
    x = torch.randint(0, 101, (1, 24))
    y = x.clone()
    y[0, 20] = (y[0, 20] + 1) % 101
    assert (model(x)[0][:, :20] - model(y)[0][:, :20]).abs().max() > 1e-4


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(16, 64, 10_000.0)
    torch.manual_seed(1)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        qi = apply_rope(q.view(1, 1, 1, 16), cos[i], sin[i])
        kj = apply_rope(k.view(1, 1, 1, 16), cos[j], sin[j])
        return (qi * kj).sum().item()

    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_parameter_count_matches_the_architecture():
    cfg = ModelConfig(vocab_size=101, n_layer=3, n_head=4, d_model=32, d_ff=96, max_seq_len=16)
    model = Transformer(cfg)
    d, ff = 32, 96
    per_layer = 3 * d * d + d * d + 2 * ff * d + ff * d + 2 * d
    assert model.num_params() == 101 * d + 3 * per_layer + d  # head tied: embedding counted once
    assert model.num_params(exclude_embedding=True) == 3 * per_layer + d
    assert cfg.num_params() == model.num_params() and cfg.flops_per_token(16) == model.flops_per_token(16)
    assert "lm_head.weight" not in model.state_dict()


def test_124m_preset_is_gpt2_small_sized_and_flops_follow_palm():
    c = preset_config("124m", vocab_size=50_257)
    n = c.num_params()
    assert 122e6 < n < 125e6  # GPT-2 small is 124M including 0.8M position embeddings and biases
    assert (c.n_layer, c.d_model, c.n_head, c.max_seq_len) == (12, 768, 12, 1024)
    expected = 6 * n + 12 * 12 * 12 * 64 * 1024
    assert c.flops_per_token(1024) == expected
    assert 0.84e9 < expected < 0.87e9  # ~0.855 GFLOP/token for GPT-2 124M at T=1024


def test_small_preset_is_between_10_and_20_million_parameters():
    assert 10e6 < preset_config("small", vocab_size=32_000).num_params() < 20e6


def test_unknown_preset_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        preset_config("huge", vocab_size=10)
    with pytest.raises(ValueError, match="not a multiple"):
        ModelConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny()(torch.zeros(1, 33, dtype=torch.long))


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=1000, n_layer=8, d_model=128, n_head=4, d_ff=352))
    sd = model.state_dict()
    assert sd["layers.0.self_attn.qkv_proj.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert sd["layers.3.mlp.down_proj.weight"].std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert sd["layers.3.self_attn.o_proj.weight"].std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert torch.equal(sd["norm.weight"], torch.ones(128))


def test_tiny_model_overfits_a_tiny_batch():
    model = tiny()
    torch.manual_seed(1)
    x = torch.randint(0, 101, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        _, loss = model(x[:, :-1], x[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 4.0 and loss.item() < 0.3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_compiled_forward_matches_fp32_on_cuda():
    model = tiny().cuda()
    x = torch.randint(0, 101, (2, 32), device="cuda")
    ref, _ = model(x)
    compiled = torch.compile(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got, loss = compiled(x, x)
    assert got.dtype == torch.bfloat16 and torch.isfinite(loss)
    assert (got.float() - ref).abs().max() < 0.05


@pytest.mark.parametrize("causal", [True, False])
def test_model_compiles_as_one_graph_and_matches_eager(causal):
    """No graph breaks (fullgraph) and the traced forward/backward equal eager, on CPU.

    ``aot_eager`` traces exactly what inductor would receive (dynamo + AOTAutograd) without generating
    kernels, so a graph break or a trace-time error in the model shows up here without a GPU.
    """
    torch._dynamo.reset()
    model = tiny(causal=causal)
    x, y = torch.randint(0, 101, (2, 24)), torch.randint(0, 101, (2, 24))
    ref_logits, ref_loss = model(x, y)
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    logits, loss = compiled(x, y)
    loss.backward()
    assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=0)
    assert torch.allclose(loss, ref_loss, atol=1e-6, rtol=0)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[name], atol=1e-6, rtol=1e-4), name
