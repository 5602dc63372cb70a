"""Live progress: lines computed from finished shards while a stage's job runs, in the Dagster log."""

from __future__ import annotations

import json

import dagster as dg

from assets.resources import BeamRunner, CorpusforgeSettings
from assets.stage_assets import stage_defs
from pipelines.progress import format_eta, progress_line


def test_progress_line_has_counts_rates_and_eta():
    line = progress_line("clean", 900, 100, 5_000_000, 10.0, 4000)
    assert line.startswith("clean: 1,000 documents (900 kept, 100 removed), 5.0 MB")
    assert "100 docs/s" in line and "0.5 MB/s" in line and "25.0% of 4,000" in line and "ETA 30s" in line
    assert "ETA" not in progress_line("raw", 5, 0, 10, 1.0, None)
    assert format_eta(3725) == "1h02m" and format_eta(65) == "1m05s"


def test_progress_lines_reach_the_dagster_log_while_a_stage_runs(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "The river runs past the mill and the old stone bridge near the town. " * 8
    for f in range(40):
        with open(corpus / f"part-{f:02d}.jsonl", "w") as fh:
            for i in range(300):
                fh.write(json.dumps({"text": f"{i} {f} {text}"}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text("output:\n  progress_seconds: 0.05\n")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        stage_defs("raw"),
        instance=instance,
        resources={
            "settings": CorpusforgeSettings(
                config_file=str(config), input_path=str(corpus), data_dir=str(tmp_path / "data")
            ),
            "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
        },
    )
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    progress = [m for m in messages if m.startswith("raw: ") and " documents (" in m]
    assert progress, messages[-20:]
    done = result.asset_materializations_for_node("raw")[0].metadata["documents_out"].value
    assert all(int(m.split(" documents")[0].split(": ")[1].replace(",", "")) <= done for m in progress)
