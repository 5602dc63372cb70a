"""Dagster: materialize tokenizer + tokens and their blocking checks on a small upstream."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.resources import BeamRunner, CorpusforgeSettings
from assets.stage_assets import stage_asset_def, stage_defs
from pipelines import storage
from tests.corpus_fixtures import synthetic_documents, write_documents_stage

TOKEN_DEFS = stage_defs("tokenizer", "tokens")
TOKEN_ASSETS = TOKEN_DEFS[:2]
tokenizer, tokens = stage_asset_def("tokenizer"), stage_asset_def("tokens")


def _resources(data_dir: Path) -> dict:
    return {
        "settings": CorpusforgeSettings(data_dir=str(data_dir), input_path=str(data_dir / "unused")),
        "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
    }


RUN_CONFIG = dg.RunConfig(
    ops={
        "tokenizer": {"config": {"vocab_size": 330, "sample_bytes": 1_000_000}},
        "tokens": {"config": {"seq_len": 24, "sequences_per_shard": 6, "val_fraction": 0.01}},
    }
)


def test_materialize_tokenizer_and_dataset_with_checks(tmp_path: Path):
    docs = synthetic_documents(120, seed=2)
    write_documents_stage(tmp_path, docs, shard_docs=40)
    result = dg.materialize(
        TOKEN_DEFS,
        resources=_resources(tmp_path),
        run_config=RUN_CONFIG,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    tok_meta = result.asset_materializations_for_node("tokenizer")[0].metadata
    assert tok_meta["vocab_size"].value == 330
    assert tok_meta["bytes_per_token_zh"].value > 1.0 and 0 < tok_meta["vocab_share_used_en"].value <= 1
    ds_meta = result.asset_materializations_for_node("tokens")[0].metadata
    manifest = storage.current_version(tmp_path, "tokens").manifest()
    assert ds_meta["dtype"].value == "uint16"
    assert ds_meta["train_tokens"].value == manifest["splits"]["train"]["tokens"] > 0
    assert ds_meta["val_shards"].value == len(manifest["splits"]["val"]["shards"])
    assert ds_meta["train_documents"].value + ds_meta["val_documents"].value == len(docs)
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        ("tokenizer", "tokenizer_valid"): True,
        ("tokens", "shards_match_manifest"): True,
        ("tokens", "splits_disjoint"): True,
    }
    assert manifest["seq_len"] == 24  # the launchpad config reached the Beam job
    assert manifest["upstream"]["tokenizer"] == storage.current_version(tmp_path, "tokenizer").name


def test_checks_fail_clearly_on_missing_and_corrupt_shards(tmp_path: Path):
    write_documents_stage(tmp_path, synthetic_documents(60, seed=4), shard_docs=30)
    resources = _resources(tmp_path)
    assert dg.materialize(TOKEN_ASSETS, resources=resources, run_config=RUN_CONFIG).success
    version = storage.current_version(tmp_path, "tokens")
    shards = version.manifest()["splits"]["train"]["shards"]
    (version.path / shards[0]["path"]).unlink()
    (version.path / shards[1]["path"]).write_bytes(b"\0" * 64)
    (storage.current_version(tmp_path, "tokenizer").path / "tokenizer.json").write_text("{}")
    result = dg.materialize(
        [tokenizer.to_source_asset(), tokens.to_source_asset(), *TOKEN_DEFS[2:]],
        resources=resources,
        selection=dg.AssetSelection.checks_for_assets(tokenizer, tokens),
        raise_on_error=False,
    )
    evals = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert evals["shards_match_manifest"].passed is False
    problems = evals["shards_match_manifest"].metadata["problems"].value
    assert f"{shards[0]['path']}: missing" in problems
    assert f"{shards[1]['path']}: sha256 mismatch" in problems
    assert evals["shards_match_manifest"].description.startswith(shards[0]["path"])
    assert evals["splits_disjoint"].passed is True  # the document indexes are intact
    assert evals["tokenizer_valid"].passed is False
    assert "sha256 mismatch" in evals["tokenizer_valid"].metadata["problems"].value
