"""Dagster: materialize filtered + bias_report and their checks on a hand-made dedup stage."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.bias import disparity_chart, disparity_table
from assets.resources import BeamRunner, CorpusforgeSettings
from assets.stage_assets import stage_defs
from pipelines import storage
from pipelines.bias.toxicity import REASON_DOCUMENT
from tests.test_bias_stage import CORPUS, commit_stage, make_doc


def _resources(data_dir: Path) -> dict:
    return {
        "settings": CorpusforgeSettings(input_path=str(data_dir / "unused"), data_dir=str(data_dir)),
        "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
    }


def test_materialize_filtered_documents_and_bias_report_with_checks(tmp_path):
    data = tmp_path / "data"
    docs = [*CORPUS, make_doc("his", "He told his brother that he would come.")]
    commit_stage(data, "dedup", docs)
    run_config = dg.RunConfig(ops={"filtered": {"config": {"toxicity_policy": "lines", "cda_fraction": 1.0}}})
    result = dg.materialize(
        stage_defs("filtered", "bias_report"),
        resources=_resources(data),
        run_config=run_config,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        ("filtered", "conservation"): True,
        ("filtered", "shards_valid"): True,
        ("bias_report", "report_complete"): True,
    }

    meta = result.asset_materializations_for_node("filtered")[0].metadata
    manifest = storage.current_version(data, "filtered").manifest()
    assert meta["documents_in"].value == len(docs)
    assert meta["removed"].value == 4  # 3 x toxicity:document + 1 x toxicity:all-lines
    assert meta["lines_removed"].value == 2 == manifest["toxicity"]["lines_removed"]
    assert meta["cda_documents_added"].value == 2  # 'identity' and 'his'
    assert "> 50" in meta["toxicity_score_distribution"].value
    assert "toxicity:all-lines" in meta["removals_by_reason"].value

    rep_meta = result.asset_materializations_for_node("bias_report")[0].metadata
    assert rep_meta["documents_before"].value == len(docs)
    assert rep_meta["documents_after"].value == manifest["stats"]["documents_out"]
    representation = rep_meta["representation"].value
    assert "he/she ratio" in representation and "documents mentioning religion" in representation
    # CDA copies swap he <-> she, so the after-ratio moves toward 1
    assert rep_meta["he_she_ratio_before"].value != rep_meta["he_she_ratio_after"].value
    assert REASON_DOCUMENT in rep_meta["filter_disparity"].value
    assert rep_meta["disparity_chart"].value.startswith("![")
    assert "clean" in rep_meta["notes"].value  # no cleaning stage here: skipped with a note
    assert "religion" in rep_meta["identity_flagged_cooccurrence"].value


def test_disparity_table_and_chart_from_rows():
    def row(stage, rule, axis, n_m, r_m, n_o, r_o):
        rate_m, rate_o = r_m / n_m if n_m else None, r_o / n_o
        return {
            "stage": stage,
            "rule": rule,
            "axis": axis,
            "docs_mention": n_m,
            "docs_no_mention": n_o,
            "removed_mention": r_m,
            "removed_no_mention": r_o,
            "rate_mention": rate_m,
            "rate_no_mention": rate_o,
            "ratio": rate_m / rate_o if rate_m is not None and rate_o else None,
            "z": 2.5 if axis == "religion" else None,
        }

    rows = [
        row("filtered", REASON_DOCUMENT, "religion", 10, 5, 90, 9),
        row("filtered", REASON_DOCUMENT, "age", 0, 0, 100, 14),
        row("filtered", REASON_DOCUMENT, "any", 10, 5, 90, 9),
    ]
    table = disparity_table(rows)
    assert "| filtered | toxicity:document | religion | 10 | 50.00% | 10.00% | 5.00 | 2.50 |" in table
    assert "| age |" not in table  # no document mentions age: nothing to compare
    assert disparity_chart(rows).startswith("![Removal rate by identity axis")
    assert disparity_chart([]).startswith("_")
