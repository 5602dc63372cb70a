"""The packed token dataset is byte-identical for one in-process worker and two worker processes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from assets.graph import run_stage
from pipelines.config import load_config
from tests.corpus_fixtures import synthetic_documents, write_documents_stage


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_one_and_two_workers_give_identical_shards(tmp_path: Path):
    write_documents_stage(tmp_path, synthetic_documents(160, seed=9), shard_docs=40, row_group_rows=9)
    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(tmp_path)},
            "output": {"incremental": False},  # the second run recomputes, not appends nothing
            "tokenizer": {"vocab_size": 300},
            "tokens": {"seq_len": 31, "val_fraction": 0.2, "sequences_per_shard": 5, "encode_batch": 3},
        }
    )
    run_stage("tokenizer", cfg)
    runs = {}
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        opts = PipelineOptions(
            ["--runner=FnApiRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
        )
        result = run_stage("tokens", cfg, opts)
        runs[mode] = (file_digests(result.version.path), result.manifest)
    (one, m1), (two, m2) = runs["in_memory"], runs["multi_processing"]
    assert len(one) > 10 and one == two  # shards, doc indexes and _SUCCESS, byte for byte
    assert m1["splits"] == m2["splits"] and m1["stats"] == m2["stats"]
    assert len(m1["splits"]["train"]["shards"]) > 2
