"""Dagster: materialize raw + clean and their checks on a small corpus."""

from __future__ import annotations

import dagster as dg

from assets.resources import BeamRunner, CorpusforgeSettings
from assets.stage_assets import stage_asset_def, stage_defs
from pipelines import storage


def _resources(input_dir, data_dir):
    return {
        "settings": CorpusforgeSettings(input_path=str(input_dir), data_dir=str(data_dir)),
        "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
    }


def test_materialize_raw_and_clean_with_checks(bad_corpus, tmp_path):
    root, expected = bad_corpus
    data = tmp_path / "data"
    run_config = dg.RunConfig(
        ops={
            "raw": {"config": {"max_record_bytes": 4096}},
            # the tiny corpus is far below Gopher's 50-word minimum: relax it for this test
            "clean": {"config": {"gopher_quality": {"min_words": 5}, "langid": {"languages": []}}},
        }
    )
    result = dg.materialize(
        stage_defs("raw", "clean"),
        resources=_resources(root, data),
        run_config=run_config,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    raw_meta = result.asset_materializations_for_node("raw")[0].metadata
    assert raw_meta["documents_out"].value == expected["documents"]
    assert raw_meta["removed"].value == sum(v for k, v in expected.items() if k != "documents")
    assert "malformed-json" in raw_meta["removals_by_reason"].value
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        ("raw", "conservation"): True,
        ("raw", "shards_valid"): True,
        ("clean", "conservation"): True,
        ("clean", "shards_valid"): True,
    }
    clean = storage.current_version(data, "clean").manifest()
    assert clean["upstream"]["raw"] == storage.current_version(data, "raw").name
    assert clean["stats"]["documents_in"] == expected["documents"]


def test_conservation_check_fails_on_a_tampered_ledger(bad_corpus, tmp_path):
    root, _ = bad_corpus
    data = tmp_path / "data"
    resources = _resources(root, data)
    run_config = dg.RunConfig(ops={"raw": {"config": {"max_record_bytes": 4096}}})
    assert dg.materialize([stage_asset_def("raw")], resources=resources, run_config=run_config).success
    version = storage.current_version(data, "raw")
    # Lose one ledger shard behind the manifest's back: the recount no longer balances.
    manifest = version.manifest()
    manifest["ledger"]["rows"] -= 1
    manifest["ledger"]["shards"][0]["rows"] -= 1
    storage.atomic_write_json(version.path / storage.MANIFEST, manifest)
    result = dg.materialize(
        [stage_asset_def("raw").to_source_asset(), *stage_defs("raw")[1:]],
        resources=resources,
        selection=dg.AssetSelection.checks_for_assets(stage_asset_def("raw")),
        raise_on_error=False,
    )
    evals = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert evals["conservation"].passed is False
    assert evals["shards_valid"].passed is False  # row count disagrees with the shard file
