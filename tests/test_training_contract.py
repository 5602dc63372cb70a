"""Training owns its contract: torch-free config and token format, one FLOPs formula, CLI fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import torch

from training import flops, token_format
from training.config import (
    MODEL_PRESETS,
    PRESETS,
    TrainConfig,
    TrainConfigError,
    load_train_config,
    make_train_config,
)
from training.model import ModelConfig, preset_config
from training.train import main as train_main
from training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 64


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def progressions(n: int, seq_len: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = rng.integers(0, VOCAB - 3, size=(n, 1))
    step = rng.integers(1, 3, size=(n, 1))
    return 3 + (start + step * np.arange(seq_len + 1)) % (VOCAB - 3)


def tiny_dataset(root: Path, seq_len: int = 32) -> Path:
    splits = {"train": progressions(64, seq_len, 0), "val": progressions(8, seq_len, 1)}
    return token_format.write_token_dataset(root, splits, vocab_size=VOCAB, rows_per_batch=16)


def cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    common = ["--max-steps", "4", "--batch-size", "4", "--warmup-steps", "1", "--eval-every", "0"]
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        *common,
        "--eval-batches",
        "1",
        "--log-every",
        "2",
        *extra,
    ]


# --------------------------------------------------------------------------------------------- config


def test_config_format_and_flops_modules_do_not_import_torch():
    code = (
        "import sys, training, training.config, training.token_format, training.flops, training.progress\n"
        "import pipelines.config, pipelines.schemas\n"
        "bad = [m for m in ('torch', 'apache_beam', 'dagster_pipes') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_one_definition_of_train_config_and_presets():
    import pipelines.config as pc
    import training.model

    assert pc.TrainConfig is TrainConfig and pc.MODEL_PRESETS is MODEL_PRESETS
    assert training.model.PRESETS is PRESETS and tuple(PRESETS) == MODEL_PRESETS
    assert preset_config("small", vocab_size=100).d_model == PRESETS["small"]["d_model"]
    with pytest.raises(pc.ConfigError, match="model.preset must be one of tiny, small, 124m"):
        pc.load_config(overrides={"model": {"preset": "huge"}})


def test_train_config_files_the_asset_and_a_corpusforge_config(tmp_path):
    asset_file = tmp_path / "train_config.json"
    asset_file.write_text(json.dumps({"train": {"preset": "small", "max_steps": 7, "lr": 1}}))
    cfg = load_train_config(asset_file, {"max_steps": 9})
    assert (cfg.preset, cfg.max_steps, cfg.lr) == ("small", 9, 1.0)
    yaml_file = tmp_path / "corpusforge.yaml"
    yaml_file.write_text("tokens: {seq_len: 48}\nmodel:\n  seq_len: 48\n  compile: true\n")
    assert load_train_config(yaml_file).seq_len == 48 and load_train_config(yaml_file).compile is True
    assert load_train_config(None) == TrainConfig()

    both = tmp_path / "both.json"
    both.write_text(json.dumps({"train": {}, "model": {}}))
    with pytest.raises(TrainConfigError, match="both 'train' and 'model'"):
        load_train_config(both)
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) train.max_stepz"):
        make_train_config({"max_stepz": 3})
    with pytest.raises(TrainConfigError, match="train.compile: expected bool"):
        make_train_config({"compile": "yes"})
    with pytest.raises(TrainConfigError, match="train.batch_size must be >= 1"):
        make_train_config({"batch_size": 0})


# --------------------------------------------------------------------------------------- token format


def reference_shard(path: Path, windows: np.ndarray, dtype: str) -> None:
    """The pipeline's shard writer as it was before the format had its own module."""
    value_type = {"uint16": pa.uint16(), "uint32": pa.uint32()}[dtype]
    schema = pa.schema(
        [pa.field("tokens", pa.list_(value_type, windows.shape[1]), nullable=False)],
        metadata={"corpusforge.schema": "tokens/1", "dtype": dtype, "window": str(windows.shape[1])},
    )
    values = pa.array(np.ascontiguousarray(windows, dtype=token_format.DTYPES[dtype]).reshape(-1))
    table = pa.Table.from_arrays([pa.FixedSizeListArray.from_arrays(values, windows.shape[1])], schema=schema)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_shard_writer_bytes_and_reader(tmp_path, dtype):
    windows = np.random.default_rng(3).integers(0, 60_000, size=(37, 33))
    digest = token_format.write_shard(tmp_path / "a" / "part-00000.arrow", windows, dtype)
    reference_shard(tmp_path / "ref.arrow", windows, dtype)
    written = (tmp_path / "a" / "part-00000.arrow").read_bytes()
    assert written == (tmp_path / "ref.arrow").read_bytes()
    assert digest == token_format.file_sha256(tmp_path / "ref.arrow")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["part-00000.arrow"]  # no temporary left

    token_format.write_shard(tmp_path / "b.arrow", windows, dtype, rows_per_batch=16)
    assert token_format.shard_batch_rows(tmp_path / "b.arrow", dtype, 33) == [16, 16, 5]
    shard = token_format.MappedShard(tmp_path / "b.arrow")
    assert np.array_equal(shard.view(2, 33), windows[32:])
    shard.views.clear()
    shard.close()
    with pytest.raises(token_format.TokenDataError, match="schema is"):
        token_format.shard_batch_rows(tmp_path / "b.arrow", dtype, 17)


def test_pipeline_schema_and_manifest_come_from_the_format_module(tmp_path):
    from pipelines import schemas

    assert schemas.token_schema is token_format.token_schema
    root = tiny_dataset(tmp_path / "tokens")
    manifest = token_format.read_manifest(root)
    assert manifest["format"] == token_format.FORMAT and manifest["seq_len"] == 32
    assert manifest["splits"]["train"]["shards"][0]["path"] == token_format.shard_path("train", 0)
    (root / "manifest.json").write_text(json.dumps({**manifest, "format": "other/1"}))
    with pytest.raises(token_format.TokenDataError, match="expected 'corpusforge-tokens/1'"):
        token_format.read_manifest(root)


# ---------------------------------------------------------------------------------------------- flops


def test_one_flops_formula(tmp_path):
    cfg = ModelConfig(vocab_size=50_257, n_layer=12, n_head=12, d_model=768, d_ff=2048, max_seq_len=1024)
    expected = flops.flops_per_token(cfg.num_params(), 12, 12, 64, 1024)
    assert cfg.flops_per_token(1024) == expected == 6 * cfg.num_params() + 12 * 12 * 12 * 64 * 1024
    s = train(
        TrainConfig(max_steps=1, batch_size=4, eval_every=0, device="cpu"),
        tiny_dataset(tmp_path / "t"),
        tmp_path / "r",
        log=lambda _: None,
    )
    m = ModelConfig(**s["model_config"])
    assert s["flops_per_token"] == flops.flops_per_token(m.num_params(), m.n_layer, m.n_head, m.head_dim, 32)


# --------------------------------------------------------------------------------------------- fixes


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    data = tiny_dataset(tmp_path / "tokens")
    cfg = TrainConfig(
        max_steps=12, batch_size=4, warmup_steps=2, eval_every=0, checkpoint_every=4, log_every=2
    )
    full = train(cfg, data, tmp_path / "full", log=lambda _: None)
    # a crash after step 10: the last checkpoint is step 8, the log already holds steps 9 and 10
    train(cfg, data, tmp_path / "crashed", log=lambda _: None, stop_step=10, save_final=False)
    log_file = tmp_path / "crashed" / "train_log.jsonl"
    assert [json.loads(x)["step"] for x in log_file.read_text().splitlines()] == [2, 4, 6, 8, 10]
    with open(log_file, "a") as fh:
        fh.write('{"step": 11, "lo')  # a torn line
    resumed = train(cfg, data, tmp_path / "crashed", log=lambda _: None)
    assert resumed["start_step"] == 8 and resumed["loss_curve"] == full["loss_curve"]
    records = [json.loads(x) for x in log_file.read_text().splitlines()]
    expected = [json.loads(x) for x in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in records] == [r["loss"] for r in expected]


def test_cli_checks_seq_len_against_the_dataset_not_the_config_default(tmp_path, capsys):
    data = tiny_dataset(tmp_path / "tokens", seq_len=48)
    assert train_main(cli_args(data, tmp_path / "a", "--seq-len", "48")) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["seq_len"] == 48
    assert train_main(cli_args(data, tmp_path / "b", "--seq-len", "24")) == 0
    assert train_main(cli_args(data, tmp_path / "c", "--seq-len", "32")) == 2
    assert "error: train.seq_len=32 must divide the dataset's seq_len=48" in capsys.readouterr().err


def test_reused_out_dir_with_another_preset_says_what_differs(tmp_path, capsys):
    data = tiny_dataset(tmp_path / "tokens")
    assert train_main(cli_args(data, tmp_path / "run")) == 0
    capsys.readouterr()
    assert train_main(cli_args(data, tmp_path / "run", "--preset", "small")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "model differs" in err and "preset tiny -> small" in err and "n_layer 2 -> 8" in err
    assert "--no-resume" in err and "another --out" in err
    assert "{" not in err  # no dicts
    assert train_main(cli_args(data, tmp_path / "run", "--preset", "small", "--no-resume")) == 0


def test_cpu_run_prints_no_mfu_and_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CORPUSFORGE_PEAK_FLOPS", raising=False)
    assert train_main(cli_args(tiny_dataset(tmp_path / "tokens"), tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "no MFU: no known dense bf16 peak for cpu (set CORPUSFORGE_PEAK_FLOPS" in out
    assert "mfu" not in "\n".join(line for line in out.splitlines() if line.startswith("step "))
    brief = json.loads(out.splitlines()[-1])
    assert "mfu" not in brief and brief["mfu_note"].startswith("no MFU")
    assert "MFU None" not in out and "mfu None" not in out

    monkeypatch.setenv("CORPUSFORGE_PEAK_FLOPS", "1e12")
    assert train_main(cli_args(tiny_dataset(tmp_path / "tokens"), tmp_path / "run2")) == 0
    out = capsys.readouterr().out
    assert "MFU against a peak of 1 TFLOP/s" in out and " | mfu " in out
    assert json.loads(out.splitlines()[-1])["mfu"] > 0


# ------------------------------------------------------------------------------------------- progress


def test_progress_prints_without_pipes_and_only_rank_zero_opens_pipes(monkeypatch, capsys):
    from training import progress

    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    with progress.open_progress() as p:
        assert not p.streaming
        p.log("step 1/2 | loss 1.0")
        p.report(progress.TRAIN_SUMMARY, {"steps": 2})  # nothing to send without Pipes
    assert capsys.readouterr().out == "step 1/2 | loss 1.0\n"
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", "x")
    monkeypatch.setenv("DAGSTER_PIPES_MESSAGES", "x")
    monkeypatch.setenv("RANK", "1")
    with progress.open_progress() as p:
        assert not p.streaming  # another torchrun rank: never opens Pipes (it would fail on "x")

    messages = [
        {"kind": progress.TRAIN_SUMMARY, "schema": 1, "summary": {"steps": 2}},
        "something else",
        {"kind": progress.EVAL_RESULT, "schema": 1, "result": {"val_ppl": 3.0}},
    ]
    assert progress.read_report(messages, progress.TRAIN_SUMMARY) == {"steps": 2}
    assert progress.read_report(messages) == {"val_ppl": 3.0}
    with pytest.raises(KeyError, match="no 'corpusforge.train.summary'"):
        progress.read_report(messages[1:], progress.TRAIN_SUMMARY)
