"""`export_hf_llama(run_dir, None, out)` finds the checkpoint's tokenizer from any working directory."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.config import TrainConfig
from training.checkpoint import latest_checkpoint, read_state, save_checkpoint
from training.data import write_token_dataset
from training.export import export_hf_llama
from training.model import ModelConfig, Transformer
from training.trainer import train

TEXTS = ["The quick brown fox jumps over the lazy dog.", "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。"]
VOCAB = 300


def make_tokenizer(path: Path) -> Path:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<|pad|>", "<|mask|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS * 10, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def old_style_run(repo: Path) -> Path:
    """A data directory inside ``repo`` whose model checkpoint records the tokenizer relative to
    ``repo`` (as the token dataset's manifest had it when training ran there)."""
    tok = make_tokenizer(repo / "data" / "tokenizer" / "v-1" / "tokenizer.json")
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=32, d_ff=96, max_seq_len=16)
    data = {
        "path": "data/tokens/v-2",
        "eot_id": 0,
        "pad_id": 1,
        "mask_id": 2,
        "tokenizer_sha256": hashlib.sha256(tok.read_bytes()).hexdigest(),
        "tokenizer_path": "data/tokenizer/v-1/tokenizer.json",
    }
    run = repo / "data" / "model" / "v-3"
    save_checkpoint(run, 4, model=Transformer(cfg), state={"model_config": cfg.to_dict(), "data": data})
    return run


def test_relative_tokenizer_path_resolves_from_another_directory(tmp_path, monkeypatch):
    run = old_style_run(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = export_hf_llama(run, None, tmp_path / "hf")
    expected = tmp_path / "repo" / "data" / "tokenizer" / "v-1" / "tokenizer.json"
    assert (out / "tokenizer.json").read_bytes() == expected.read_bytes()


def test_a_moved_data_directory_is_found_by_the_tokenizer_checksum(tmp_path, monkeypatch):
    run = old_style_run(tmp_path / "repo")
    ckpt = latest_checkpoint(run)
    state = json.loads((ckpt / "state.json").read_text())
    state["data"]["tokenizer_path"] = str(tmp_path / "gone" / "data" / "tokenizer" / "v-1" / "tokenizer.json")
    (ckpt / "state.json").write_text(json.dumps(state))
    shutil.move(tmp_path / "repo", tmp_path / "moved")  # the whole data directory moved
    monkeypatch.chdir(tmp_path)
    out = export_hf_llama(tmp_path / "moved" / "data" / "model" / "v-3", None, tmp_path / "hf")
    assert (out / "tokenizer.json").is_file()
    # a file with the same path but other content is not taken for the tokenizer
    state["data"]["tokenizer_sha256"] = "0" * 64
    ckpt = latest_checkpoint(tmp_path / "moved" / "data" / "model" / "v-3")
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(FileNotFoundError, match="not found"):
        export_hf_llama(ckpt, None, tmp_path / "hf2")


def test_the_trainer_records_an_absolute_tokenizer_path(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    tok = make_tokenizer(repo / "data" / "tokenizer" / "v-1" / "tokenizer.json")
    rng = np.random.default_rng(0)
    tokens = write_token_dataset(
        repo / "data" / "tokens" / "v-2",
        {"train": rng.integers(3, VOCAB, size=(16, 17)), "val": rng.integers(3, VOCAB, size=(4, 17))},
        vocab_size=VOCAB,
        tokenizer_sha256=hashlib.sha256(tok.read_bytes()).hexdigest(),
    )
    manifest = json.loads((tokens / "manifest.json").read_text())
    manifest["tokenizer"] = {"path": "data/tokenizer/v-1/tokenizer.json"}  # relative to where training runs
    (tokens / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(repo)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = replace(TrainConfig(), max_steps=1, batch_size=2, eval_every=0, warmup_steps=1, device="cpu")
        train(cfg, Path("data/tokens/v-2"), repo / "data" / "model" / "v-3", log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    data = read_state(latest_checkpoint(repo / "data" / "model" / "v-3"))["data"]
    assert data["tokenizer_path"] == str(tok.resolve()) and Path(data["path"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    out = export_hf_llama(repo / "data" / "model" / "v-3", None, tmp_path / "hf")
    assert (out / "tokenizer.json").read_bytes() == tok.read_bytes()
