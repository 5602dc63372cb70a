"""Trainer, checkpoints and CLI: learning, exact resume, checkpoint files, schedule, DDP."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pipelines.config import TrainConfig
from training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    strip_prefixes,
)
from training.data import write_token_dataset
from training.model import ModelConfig, Transformer
from training.train import build_parser
from training.trainer import lr_at, model_flops_utilization, param_groups, peak_bf16_flops, train

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 64


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # exact comparisons with the subprocess, which runs with OMP_NUM_THREADS=1
    yield
    torch.set_num_threads(before)


def progressions(n: int, seq_len: int, seed: int) -> np.ndarray:
    """Rows counting up from a random start by a random step of 1 or 2: learnable from context."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, VOCAB - 3, size=(n, 1))
    step = rng.integers(1, 3, size=(n, 1))
    return 3 + (start + step * np.arange(seq_len + 1)) % (VOCAB - 3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    return write_token_dataset(
        root,
        {"train": progressions(96, 32, 0), "val": progressions(16, 32, 1)},
        vocab_size=VOCAB,
        rows_per_batch=16,
    )


def small_cfg(**kw) -> TrainConfig:
    base = {
        "max_steps": 12,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_steps": 3,
        "eval_every": 4,
        "eval_batches": 2,
        "checkpoint_every": 0,
        "log_every": 3,
    }
    return TrainConfig(**{**base, **kw})


def quiet(_msg: str) -> None:
    pass


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    kw = {"peak": 1.0, "warmup": 10, "max_steps": 110, "min_ratio": 0.1}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(4, **kw) == pytest.approx(0.5)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half-way: floor + (peak - floor) / 2
    assert lr_at(110, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_norms_and_embedding_are_not_decayed():
    model = Transformer(ModelConfig(vocab_size=50, max_seq_len=8))
    decay, keep = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    kept = {names[id(p)] for p in keep["params"]}
    assert "embed_tokens.weight" in kept and "norm.weight" in kept
    assert "layers.1.post_attention_layernorm.weight" in kept
    assert all(names[id(p)].endswith("_proj.weight") for p in decay["params"])
    assert len(decay["params"]) + len(keep["params"]) == len(list(model.parameters()))


def test_peak_flops_table(monkeypatch):
    monkeypatch.delenv("CORPUSFORGE_PEAK_FLOPS", raising=False)
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA H100 NVL") == 835e12
    assert peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("NVIDIA H200 NVL") == 835e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("NVIDIA L40S") == 362e12
    assert peak_bf16_flops("NVIDIA L4") == 121e12
    assert peak_bf16_flops("Tesla T4") is None
    monkeypatch.setenv("CORPUSFORGE_PEAK_FLOPS", "1e15")
    assert peak_bf16_flops("Tesla T4") == 1e15


def test_mfu_formula_by_hand():
    # GPT-2-small shape, T=1024, vocab 50,257: 6 * 123.7M + 12 * 12 * 12 * 64 * 1024 = 0.8366 GFLOP/token
    cfg = ModelConfig(vocab_size=50_257, n_layer=12, n_head=12, d_model=768, d_ff=2048, max_seq_len=1024)
    per_token = cfg.flops_per_token(1024)
    assert per_token == 6 * cfg.num_params() + 12 * 12 * 12 * 64 * 1024
    # 2 GPUs together at 1e6 tokens/s on 989 TFLOP/s parts: each does 5e5 tokens/s
    assert model_flops_utilization(per_token, 1e6, 2, 989e12) == pytest.approx(per_token * 5e5 / 989e12)
    assert model_flops_utilization(1e9, 5e5, 1, 1e15) == pytest.approx(0.5)
    assert model_flops_utilization(1e9, 5e5, 1, None) is None
    assert model_flops_utilization(1e9, None, 1, 1e15) is None


def test_peak_override_gives_a_cpu_run_its_mfu(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CORPUSFORGE_PEAK_FLOPS", "1e12")
    s = train(small_cfg(max_steps=4, eval_every=0), data_dir, tmp_path / "run", log=quiet)
    assert s["peak_flops"] == 1e12
    assert s["mfu"] == pytest.approx(s["flops_per_token"] * s["tokens_per_s"] / 1e12)


def test_a_fresh_run_replaces_an_earlier_runs_checkpoints(data_dir, tmp_path):
    out = tmp_path / "run"
    train(
        small_cfg(max_steps=8, checkpoint_every=2, keep_checkpoints=2, eval_every=0), data_dir, out, log=quiet
    )
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-0000006", "step-0000008"]
    s = train(
        small_cfg(max_steps=4, checkpoint_every=2, keep_checkpoints=2, eval_every=0, resume=False),
        data_dir,
        out,
        log=quiet,
    )
    assert s["start_step"] == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-0000002", "step-0000004"]
    assert latest_checkpoint(out).name == "step-0000004"  # never a pointer to a deleted checkpoint
    log = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log == [3, 4]  # only this run's lines


def test_retention_never_deletes_the_checkpoint_just_written(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, max_seq_len=8))
    for step in (100, 200, 300, 50):
        path = save_checkpoint(tmp_path, step, model=model, keep=2)
    assert path.is_dir() and latest_checkpoint(tmp_path).name == "step-0000050"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == [
        "step-0000050",
        "step-0000300",
    ]


def test_training_learns_and_reports(data_dir, tmp_path):
    evals = []
    lines = []
    summary = train(
        small_cfg(max_steps=40, eval_every=10, checkpoint_every=20, log_every=10),
        data_dir,
        tmp_path / "run",
        log=lines.append,
        on_eval=lambda step, m: evals.append((step, m["loss"])),
    )
    curve = summary["loss_curve"]
    assert curve["step"] == list(range(1, 41)) and len(curve["loss"]) == 40
    assert curve["loss"][0] > 3.5 and summary["final_train_loss"] < 2.0
    assert [s for s, _ in evals] == [10, 20, 30, 40]
    assert evals[-1][1] < evals[0][1] - 1.0
    assert summary["val_loss"] == evals[-1][1] and summary["val_ppl"] == pytest.approx(
        math.exp(summary["val_loss"])
    )
    assert summary["mfu"] is None and summary["device"] == "cpu" and summary["tokens_per_s"] > 0
    assert summary["params"] == Transformer(ModelConfig(**summary["model_config"])).num_params()
    assert [len(s["completion"]) for s in summary["samples"]] == [32, 32]
    assert sum(line.startswith("step ") for line in lines) == 4
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["val_loss"] == summary["val_loss"]
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step-0000040" and (ckpt.parent / "step-0000020").is_dir()
    keys = load_file(str(ckpt / "model.safetensors")).keys()
    assert "embed_tokens.weight" in keys and not any(k.startswith(("_orig_mod.", "module.")) for k in keys)


def _cli(data_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [
        "--max-steps",
        "12",
        "--batch-size",
        "4",
        "--lr",
        "0.003",
        "--warmup-steps",
        "3",
        "--eval-every",
        "4",
    ]
    args += ["--eval-batches", "2", "--checkpoint-every", "0", "--log-every", "3", *extra]
    cmd = [sys.executable, "-m", "training.train", "--data", str(data_dir), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_resume_in_a_fresh_process_continues_the_exact_loss_curve(data_dir, tmp_path):
    full = train(small_cfg(), data_dir, tmp_path / "full", log=quiet)
    half = train(small_cfg(), data_dir, tmp_path / "half", log=quiet, stop_step=6)
    assert half["steps"] == 6 and half["val_loss"] == full["val_curve"]["loss"][0]
    done = _cli(data_dir, tmp_path / "half")
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    resumed = json.loads((tmp_path / "half" / "summary.json").read_text())
    assert resumed["start_step"] == 6
    assert resumed["loss_curve"] == full["loss_curve"]  # bit-identical on CPU
    assert resumed["val_curve"] == full["val_curve"]
    assert resumed["samples"] == full["samples"]


def test_mlm_resume_with_grad_accumulation_is_exact(data_dir, tmp_path):
    cfg = small_cfg(objective="mlm", grad_accum=2, max_steps=8)
    full = train(cfg, data_dir, tmp_path / "full", log=quiet)
    train(cfg, data_dir, tmp_path / "half", log=quiet, stop_step=3)
    resumed = train(cfg, data_dir, tmp_path / "half", log=quiet)
    assert resumed["start_step"] == 3 and resumed["loss_curve"] == full["loss_curve"]
    assert full["samples"] == [] and full["val_loss"] is not None


def test_resume_refuses_a_different_model(data_dir, tmp_path):
    train(small_cfg(max_steps=2, eval_every=0), data_dir, tmp_path / "run", log=quiet)
    with pytest.raises(ValueError, match="differs"):
        train(small_cfg(max_steps=4, preset="small"), data_dir, tmp_path / "run", log=quiet)


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, max_seq_len=8)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95))
    x = torch.randint(0, 50, (2, 8))
    for _ in range(2):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    path = save_checkpoint(tmp_path, 2, model=model, optimizer=opt, state={"note": "中文 ok"})
    expected_draw = torch.rand(3)

    torch.manual_seed(123)
    fresh = Transformer(cfg)
    fresh_opt = torch.optim.AdamW(param_groups(fresh, 0.1), lr=5.0)
    doc = load_checkpoint(path, model=fresh, optimizer=fresh_opt)
    assert doc["step"] == 2 and doc["note"] == "中文 ok"
    assert torch.equal(torch.rand(3), expected_draw)  # torch RNG restored to the saved state
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert b["param_groups"][0]["lr"] == 1e-3 and b["param_groups"][0]["betas"] == (0.9, 0.95)
    for idx, st in a["state"].items():
        for key, value in st.items():
            assert torch.equal(value, b["state"][idx][key]), (idx, key)


def test_weights_with_compile_and_ddp_prefixes_load(tmp_path):
    model = Transformer(ModelConfig(vocab_size=50, max_seq_len=8))
    wrapped = {f"module._orig_mod.{k}": v.clone() for k, v in model.state_dict().items()}
    save_file(wrapped, str(tmp_path / "w.safetensors"))
    other = Transformer(ModelConfig(vocab_size=50, max_seq_len=8))
    load_weights(other, tmp_path / "w.safetensors")
    assert torch.equal(other.embed_tokens.weight, model.embed_tokens.weight)
    assert strip_prefixes({"_orig_mod.module.a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_latest_pointer_retention_and_leftovers(tmp_path):
    model = Transformer(ModelConfig(vocab_size=20, max_seq_len=8))
    assert latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model=model, keep=2)
    root = tmp_path / "checkpoints"
    (root / ".step-0000004.tmp-999").mkdir()  # a crashed writer's leftover is never "latest"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000002", "step-0000003"]
    assert latest_checkpoint(tmp_path) == root / "step-0000003"
    shutil.rmtree(root / "step-0000003")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        latest_checkpoint(tmp_path)


def test_cli_exposes_every_train_config_field():
    args = build_parser().parse_args(
        ["--data", "d", "--out", "o", "--no-resume", "--compile", "--max-steps", "7"]
    )
    assert args.resume is False and args.compile is True and args.max_steps == 7 and args.lr is None


def test_bad_config_is_rejected(data_dir, tmp_path):
    with pytest.raises(ValueError, match="precision must be"):
        train(replace(small_cfg(), precision="fp8"), data_dir, tmp_path, log=quiet)
    with pytest.raises(ValueError, match="must divide the dataset's seq_len=32"):
        train(small_cfg(seq_len=64), data_dir, tmp_path, log=quiet)
    with pytest.raises(ValueError, match="must divide the dataset's seq_len=32"):
        train(small_cfg(seq_len=12), data_dir, tmp_path, log=quiet)


def test_a_shorter_context_trains_on_every_token_of_each_window(data_dir, tmp_path):
    full = train(small_cfg(max_steps=2, eval_every=0), data_dir, tmp_path / "a", log=quiet)
    short = train(small_cfg(max_steps=2, eval_every=0, seq_len=8), data_dir, tmp_path / "b", log=quiet)
    assert short["seq_len"] == 8 and short["tokens_per_step"] == full["tokens_per_step"] == 4 * 32


def test_prepare_batch_cuts_windows_into_whole_sequences():
    from training.batching import TokenSpec, prepare_batch

    windows = torch.arange(2 * 9).view(2, 9)  # 2 windows of seq_len 8 (+1)
    x, y = prepare_batch(windows, objective="clm", seq_len=4, spec=TokenSpec(vocab_size=100))
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [9, 10, 11, 12], [13, 14, 15, 16]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [10, 11, 12, 13], [14, 15, 16, 17]]
    x8, y8 = prepare_batch(windows, objective="clm", seq_len=8, spec=TokenSpec(vocab_size=100))
    assert x8.tolist() == [list(range(8)), list(range(9, 17))] and y8[0].tolist() == list(range(1, 9))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_compiled_training(data_dir, tmp_path):
    s = train(small_cfg(max_steps=6, compile=True, device="cuda"), data_dir, tmp_path / "gpu", log=quiet)
    assert s["device"] == "cuda" and s["precision"] == "bf16" and s["compile"] is True
    assert math.isfinite(s["final_train_loss"]) and s["peak_memory_bytes"] > 0
    assert (s["mfu"] is None) == (peak_bf16_flops(s["gpu_name"]) is None)
    keys = load_file(str(Path(s["checkpoint"]) / "model.safetensors")).keys()
    assert not any("_orig_mod" in k for k in keys)
