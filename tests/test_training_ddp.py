"""DDP under torchrun on CPU (gloo): two ranks reproduce one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.test_training_trainer import ROOT, VOCAB, progressions, quiet, small_cfg
from training.data import write_token_dataset
from training.trainer import train


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_dir(tmp_path):
    splits = {"train": progressions(96, 32, 0), "val": progressions(16, 32, 1)}
    return write_token_dataset(tmp_path / "tokens", splits, vocab_size=VOCAB, rows_per_batch=16)


@pytest.mark.slow
def test_two_rank_ddp_matches_one_process_with_the_same_global_batch(data_dir, tmp_path):
    single = train(small_cfg(batch_size=4, max_steps=4, eval_every=0), data_dir, tmp_path / "one", log=quiet)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    cmd += [
        "-m",
        "training.train",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "two"),
        "--batch-size",
        "2",
    ]
    cmd += [
        "--max-steps",
        "4",
        "--lr",
        "0.003",
        "--warmup-steps",
        "3",
        "--eval-every",
        "0",
        "--eval-batches",
        "2",
    ]
    cmd += ["--checkpoint-every", "0", "--log-every", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["tokens_per_step"] == single["tokens_per_step"]
    np.testing.assert_allclose(ddp["loss_curve"]["loss"], single["loss_curve"]["loss"], rtol=0, atol=1e-5)
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], abs=1e-5)
