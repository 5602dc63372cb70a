"""``training.train`` and ``training.run_eval`` under a real ``dagster.PipesSubprocessClient``: the log
lines stream into the step's event log and the summary / result arrive as custom messages."""

import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from training.progress import EVAL_RESULT, TRAIN_SUMMARY, read_report
from training.token_format import write_token_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CORPUSFORGE_PEAK_FLOPS": ""}


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    rows = 3 + (rng.integers(0, 61, (72, 1)) + rng.integers(1, 3, (72, 1)) * np.arange(33)) % 61
    return write_token_dataset(tmp_path / "tokens", {"train": rows[:64], "val": rows[64:]}, vocab_size=64)


def train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["--max-steps", "6", "--batch-size", "4", "--warmup-steps", "2", "--log-every", "2"]
    args += ["--eval-every", "3", "--eval-batches", "1", "--checkpoint-every", "0", *extra]
    return [sys.executable, "-m", "training.train", "--data", str(data), "--out", str(out), *args]


def log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


@pytest.mark.slow
def test_progress_and_summary_arrive_through_pipes(data_dir, tmp_path):
    out = tmp_path / "run"

    @dg.asset
    def tiny_model(
        context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        trained = pipes.run(context=context, command=train_cmd(data_dir, out), env=ENV, cwd=str(ROOT))
        summary = read_report(trained.get_custom_messages(), TRAIN_SUMMARY)
        cmd = [sys.executable, "-m", "training.run_eval", "--checkpoint", str(out), "--data", str(data_dir)]
        evaluated = pipes.run(context=context, command=cmd, env=ENV, cwd=str(ROOT))
        result = read_report(evaluated.get_custom_messages(), EVAL_RESULT)
        return dg.MaterializeResult(
            metadata={
                "final_train_loss": summary["final_train_loss"],
                "steps": summary["steps"],
                "loss_curve": dg.MetadataValue.json(summary["loss_curve"]),
                "mfu_note": summary["mfu_note"],
                "val_ppl": result["val_ppl"],
                "val_tokens": result["val_tokens"],
            }
        )

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([tiny_model], resources={"pipes": dg.PipesSubprocessClient()}, instance=instance)
    assert result.success
    logs = log_messages(instance, result.run_id)
    steps = [m for m in logs if m.startswith("step ")]
    assert [m.split(" | ")[0] for m in steps] == ["step 2/6", "step 4/6", "step 6/6"]
    assert all(" | loss " in m and " | lr " in m and " tok/s" in m for m in steps)
    assert " | eta " in steps[0] and " | mfu " not in steps[0]  # no peak is known for a CPU
    assert any(m.startswith("model tiny:") and "no MFU: no known dense bf16 peak for cpu" in m for m in logs)
    assert any(m.startswith("eval step 3 | val loss ") for m in logs)
    assert any(m.startswith(f"evaluating {out}") for m in logs)
    assert any(m.startswith("eval: step 6 | val loss ") for m in logs)

    metadata = result.asset_materializations_for_node("tiny_model")[0].metadata
    assert metadata["steps"].value == 6 and metadata["final_train_loss"].value > 0
    assert metadata["loss_curve"].value["step"] == [1, 2, 3, 4, 5, 6]
    assert metadata["mfu_note"].value.startswith("no MFU") and metadata["val_ppl"].value > 1
    assert metadata["val_tokens"].value == 8 * 32
    assert (out / "summary.json").is_file()  # still written as a run artefact


@pytest.mark.slow
def test_a_failed_run_reports_its_error_through_pipes(data_dir, tmp_path):
    @dg.asset
    def broken(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient) -> None:
        pipes.run(context=context, command=train_cmd(data_dir, tmp_path / "run", "--seq-len", "5"), env=ENV)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [broken], resources={"pipes": dg.PipesSubprocessClient()}, instance=instance, raise_on_error=False
    )
    assert not result.success
    closed = [
        e
        for e in instance.all_logs(result.run_id)
        if e.dagster_event and "closed with exception" in (e.dagster_event.message or "")
    ]
    assert closed, "Pipes was not closed with the exception"
    error = closed[0].dagster_event.engine_event_data.error
    assert "must divide the dataset's seq_len=32" in error.message


@pytest.mark.slow
@pytest.mark.parametrize(("every", "expected"), [(3600.0, []), (0.0, ["step 2/6", "step 4/6", "step 6/6"])])
def test_the_cli_display_gets_the_step_lines_thinned_in_time(
    data_dir, tmp_path, monkeypatch, every, expected
):
    from assets.stage_assets import LISTENERS, pipes_launcher

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    shown: list[str] = []

    @dg.asset
    def tiny_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        summary = pipes_launcher(context, "tiny", every=every)(train_cmd(data_dir, tmp_path / "run"), None)
        return dg.MaterializeResult(metadata={"steps": summary["steps"]})

    LISTENERS.append(shown.append)
    try:
        assert dg.materialize([tiny_model], instance=dg.DagsterInstance.ephemeral()).success
    finally:
        LISTENERS.remove(shown.append)
    assert [m.split(" | ")[0] for m in shown] == [f"tiny: {s}" for s in expected]
    assert all(" | loss " in m and " tok/s" in m for m in shown)
