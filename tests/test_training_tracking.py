"""Experiment tracking: TensorBoard event files from a tiny training run, resume, MLflow (faked)."""

from __future__ import annotations

import struct
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.config import TrainConfig
from training.config import TrainConfigError, make_train_config
from training.data import write_token_dataset
from training.tracking import TENSORBOARD_DIR, masked_crc
from training.trainer import train

VOCAB = 64


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    windows = 3 + (rng.integers(0, 60, size=(64, 1)) + np.arange(17)) % (VOCAB - 3)
    return write_token_dataset(
        tmp_path_factory.mktemp("tokens"), {"train": windows[:48], "val": windows[48:]}, vocab_size=VOCAB
    )


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=6, batch_size=4, warmup_steps=1, eval_every=3, eval_batches=2, log_every=2)
    base.update(checkpoint_every=3, device="cpu", lr=3e-3)
    return replace(TrainConfig(), **{**base, **kw})


def quiet(_: str) -> None:
    pass


def tfrecords(path: Path) -> list[bytes]:
    """The records of a TFRecord file, checking both masked CRCs of each."""
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        header = data[i : i + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[i + 8 : i + 12])[0] == masked_crc(header)
        body = data[i + 12 : i + 12 + length]
        assert struct.unpack("<I", data[i + 12 + length : i + 16 + length])[0] == masked_crc(body)
        out.append(body)
        i += 16 + length
    return out


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard's own reader finds in the run's event files."""
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(run / TENSORBOARD_DIR), size_guidance={ea_mod.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_training_run_writes_tensorboard_scalars(data_dir, tmp_path):
    out = tmp_path / "run"
    summary = train(cfg(), data_dir, out, log=quiet)
    files = sorted((out / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert len(files) == 1 and len(tfrecords(files[0])) >= 1 + 6
    series = scalars(out)
    loss = series["train/loss"]
    assert [s for s, _ in loss] == summary["loss_curve"]["step"] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in loss], summary["loss_curve"]["loss"], rtol=1e-6)
    assert [s for s, _ in series["train/lr"]] == list(range(1, 7))
    assert [s for s, _ in series["val/loss"]] == summary["val_curve"]["step"] == [3, 6]
    np.testing.assert_allclose([v for _, v in series["val/ppl"]], summary["val_curve"]["ppl"], rtol=1e-6)
    assert [s for s, _ in series["train/tokens_per_s"]] == [2, 4, 6]


def test_a_resumed_run_leaves_one_value_per_step(data_dir, tmp_path):
    out = tmp_path / "run"
    train(cfg(), data_dir, out, log=quiet, stop_step=5)  # checkpoint at 3, then an "interrupted" 4 and 5
    (out / "checkpoints" / "step-0000005").rename(out / "lost")  # as if it crashed before saving step 5
    (out / "checkpoints" / "latest").write_text("step-0000003\n", encoding="utf-8")
    summary = train(cfg(), data_dir, out, log=quiet)  # resumes from step 3
    assert summary["start_step"] == 3
    assert len(list((out / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    loss = scalars(out)["train/loss"]
    assert [s for s, _ in loss] == list(range(1, 7))  # steps 4-5 of the first attempt purged
    np.testing.assert_allclose([v for _, v in loss], summary["loss_curve"]["loss"], rtol=1e-6)


def test_tracking_off_writes_no_event_files(data_dir, tmp_path):
    train(cfg(max_steps=2, tracking=""), data_dir, tmp_path / "run", log=quiet)
    assert not (tmp_path / "run" / TENSORBOARD_DIR).exists()


def fake_mlflow(calls: list) -> types.ModuleType:
    mod = types.ModuleType("mlflow")

    def start_run(run_id=None, run_name=None, tags=None):
        calls.append(("start_run", run_id, run_name))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "run-1"))

    mod.start_run = start_run  # type: ignore[attr-defined]
    mod.log_params = lambda params: calls.append(("log_params", dict(params)))  # type: ignore[attr-defined]
    mod.log_metrics = lambda metrics, step: calls.append(("log_metrics", step, dict(metrics)))  # type: ignore[attr-defined]
    mod.end_run = lambda: calls.append(("end_run",))  # type: ignore[attr-defined]
    return mod


def test_mlflow_logs_params_and_metrics_when_configured(data_dir, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    out = tmp_path / "run"
    summary = train(cfg(tracking="tensorboard,mlflow"), data_dir, out, log=quiet)
    assert calls[0] == ("start_run", None, "run") and calls[-1] == ("end_run",)
    params = next(c[1] for c in calls if c[0] == "log_params")
    assert params["preset"] == "tiny" and params["max_steps"] == 6
    losses = {c[1]: c[2]["train/loss"] for c in calls if c[0] == "log_metrics" and "train/loss" in c[2]}
    assert list(losses) == list(range(1, 7))
    np.testing.assert_allclose(list(losses.values()), summary["loss_curve"]["loss"], rtol=1e-6)
    assert (out / TENSORBOARD_DIR).is_dir()  # both trackers
    # a resumed run continues the same MLflow run
    calls.clear()
    train(cfg(tracking="mlflow", max_steps=7), data_dir, out, log=quiet)
    assert calls[0] == ("start_run", "run-1", None)


def test_mlflow_is_skipped_without_a_tracking_uri_or_package(data_dir, tmp_path, monkeypatch):
    lines: list[str] = []
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(cfg(max_steps=1, tracking="mlflow"), data_dir, tmp_path / "a", log=lines.append)
    assert any("mlflow: skipped (MLFLOW_TRACKING_URI is not set)" in x for x in lines)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///nowhere")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails
    lines.clear()
    train(cfg(max_steps=1, tracking="mlflow"), data_dir, tmp_path / "b", log=lines.append)
    assert any("mlflow: skipped (the mlflow package is not installed" in x for x in lines)


def test_tracking_and_ablation_seeds_are_validated():
    assert make_train_config({"tracking": " TensorBoard , mlflow"}).tracking == " TensorBoard , mlflow"
    with pytest.raises(
        TrainConfigError, match="train.tracking must list tensorboard and/or mlflow, not 'wandb'"
    ):
        make_train_config({"tracking": "tensorboard,wandb"})
    with pytest.raises(TrainConfigError, match="ablation_seeds must be >= 1"):
        make_train_config({"ablation_seeds": 0})
    assert TrainConfig().tracking == "tensorboard" and TrainConfig().ablation_seeds == 3
