"""Export to Hugging Face Llama: files, renaming, and (with transformers) identical logits."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import save_checkpoint
from training.evaluate import generate
from training.export import export_hf_llama
from training.model import ModelConfig, Transformer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。",
    "To be, or not to be, that is the question.",
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<pad>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS * 10, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def make_run(tmp_path, tokenizer_file, *, causal=True, sha=None):
    """A checkpoint with large random weights, so logits differ a lot between positions and ids."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=400, n_layer=2, n_head=4, d_model=64, d_ff=176, max_seq_len=48, causal=causal
    )
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    sha = sha if sha is not None else hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    data = {
        "eot_id": 0,
        "pad_id": 1,
        "mask_id": 2,
        "tokenizer_sha256": sha,
        "tokenizer_path": str(tokenizer_file),
    }
    save_checkpoint(tmp_path / "run", 5, model=model, state={"model_config": cfg.to_dict(), "data": data})
    return model, tmp_path / "run"


def test_export_writes_llama_files_and_splits_fused_weights(tmp_path, tokenizer_file):
    model, run = make_run(tmp_path, tokenizer_file)
    out = export_hf_llama(run, tokenizer_file, tmp_path / "hf")  # a run directory resolves to latest
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]) == (64, 176, 4)
    assert config["num_key_value_heads"] == 4 and config["eos_token_id"] == 0 and config["pad_token_id"] == 1
    w = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" not in w and len(w) == 1 + 2 * 9 + 1
    qkv = model.layers[1].self_attn.qkv_proj.weight
    assert torch.equal(w["model.layers.1.self_attn.k_proj.weight"], qkv[64:128])
    gate_up = model.layers[0].mlp.gate_up_proj.weight
    assert torch.equal(w["model.layers.0.mlp.up_proj.weight"], gate_up[176:])
    assert torch.equal(w["model.embed_tokens.weight"], model.embed_tokens.weight)
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (tok_cfg["eos_token"], tok_cfg["pad_token"], tok_cfg["mask_token"]) == (
        "<|endoftext|>",
        "<pad>",
        "<mask>",
    )
    assert (out / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()


def test_export_refuses_mlm_models_and_foreign_tokenizers(tmp_path, tokenizer_file):
    _, run = make_run(tmp_path / "a", tokenizer_file, causal=False)
    with pytest.raises(ValueError, match="mlm"):
        export_hf_llama(run, tokenizer_file, tmp_path / "hf")
    _, run = make_run(tmp_path / "b", tokenizer_file, sha="0" * 64)
    with pytest.raises(ValueError, match="sha256 differs"):
        export_hf_llama(run, tokenizer_file, tmp_path / "hf")
    export_hf_llama(run, tokenizer_file, tmp_path / "hf", check_tokenizer=False)
    # Without an explicit tokenizer the one recorded from the token dataset's manifest is used.
    _, run = make_run(tmp_path / "c", tokenizer_file)
    out = export_hf_llama(run, None, tmp_path / "hf2")
    assert (out / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()


def test_transformers_loads_the_export_with_identical_logits(tmp_path, tokenizer_file):
    transformers = pytest.importorskip("transformers")
    model, run = make_run(tmp_path, tokenizer_file)
    out = export_hf_llama(run, tokenizer_file, tmp_path / "hf")
    hf = transformers.LlamaForCausalLM.from_pretrained(str(out)).float().eval()
    x = torch.randint(0, 400, (2, 48), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, _ = model.eval()(x)
        theirs = hf(x).logits
    assert ours.abs().max() > 1.0  # logits far from trivial
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    prompt = x[0, :10]
    greedy = hf.generate(prompt[None], max_new_tokens=8, do_sample=False, pad_token_id=1, eos_token_id=None)
    assert torch.equal(greedy[0], generate(model, prompt, 8, temperature=0))

    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(tokenizer_file))
    ref.encode_special_tokens = True  # how the token dataset was encoded (pipelines.tokens.bpe)
    literal = "a document that quotes <|endoftext|> and <mask> as text"
    for text in [*TEXTS, literal]:
        assert hf_tok.encode(text) == ref.encode(text).ids
        assert hf_tok.decode(hf_tok.encode(text)) == text
    assert 0 not in hf_tok.encode(literal)  # never a fake document boundary
    assert hf_tok.eos_token_id == 0 and hf_tok.pad_token_id == 1
