"""The dedup stage job end to end on hand-built corpora."""

from __future__ import annotations

import random

import apache_beam as beam
import dagster as dg
import pytest

from assets.graph import run_stage
from pipelines import storage
from pipelines.beam_stage import pipeline_options
from pipelines.config import load_config
from tests.conftest import commit_documents

WORDS = [
    "river",
    "mountain",
    "lantern",
    "harbor",
    "meadow",
    "copper",
    "violet",
    "thunder",
    "orchard",
    "pepper",
    "candle",
    "silver",
    "marble",
    "falcon",
    "garden",
    "window",
    "bridge",
    "castle",
    "forest",
    "island",
    "winter",
    "summer",
    "shadow",
    "mirror",
    "letter",
    "saddle",
    "compass",
    "anchor",
    "beacon",
    "tunnel",
    "valley",
    "canyon",
    "desert",
    "prairie",
    "glacier",
    "harvest",
    "kettle",
    "ladder",
    "needle",
]


def _text(seed: int, n: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(n))


def _edit(text: str, k: int, seed: int) -> str:
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), k):
        words[i] = "edited" + str(i)
    return " ".join(words)


ZH = (
    "春天来了，山上的雪慢慢融化，小河里的水一天比一天多。村里的孩子们放学以后就跑到河边，"
    "看大人们修理渔船，听老人讲过去的故事。傍晚的时候，炊烟从每家的屋顶升起来，远处传来牛羊的叫声，"
    "整个村子都安静下来。到了夜里，月亮挂在天上，照着田野和小路，也照着睡梦中的人们。"
)


def _corpus() -> list[dict]:
    a, c, d = _text(1), _text(3), _text(4)
    b = _edit(a, 2, 10)  # near A
    b2 = _edit(b, 2, 11)  # near B, further from A: chain
    zh_near = ZH.replace("孩子们", "小朋友们")
    docs = [
        {"id": "a", "text": a, "quality": 0.5},
        {
            "id": "a_copy",
            "text": a.upper(),
            "quality": 0.9,
        },  # exact after lowercasing; higher quality survives
        {"id": "b", "text": b, "quality": 0.5},
        {"id": "b2", "text": b2, "quality": 0.5},
        {"id": "c", "text": c, "quality": 0.5},
        {"id": "d", "text": d, "quality": 0.5},
        {"id": "zh1", "text": ZH, "quality": 0.5, "lang": "zh"},
        {"id": "zh2", "text": zh_near, "quality": 0.5, "lang": "zh"},
    ]
    return docs


def _run(tmp_path, docs, beam_options, name="data"):
    data = tmp_path / name
    commit_documents(data, "clean", docs, per_shard=3)
    cfg = load_config(overrides={"paths": {"data_dir": str(data)}})
    return cfg, run_stage("dedup", cfg, beam_options)


def _decisions(result) -> dict[str, dict]:
    return {r["doc_id"]: r for r in storage.iter_stage_rows(result.version, "clusters")}


def test_exact_near_chain_chinese_and_disjoint(tmp_path, beam_options):
    _, result = _run(tmp_path, _corpus(), beam_options)
    dec = _decisions(result)
    # a, a_copy (exact), b (near a), b2 (near b) form one cluster; a_copy survives on quality.
    assert {k for k, d in dec.items() if d["cluster_id"] == "a_copy"} == {"a", "a_copy", "b", "b2"}
    assert dec["a"]["kind"] == "exact" and not dec["a"]["kept"]
    assert dec["b"]["kind"] == "near" and 0.7 < dec["b"]["similarity"] < 1.0
    assert dec["zh1"]["cluster_id"] == dec["zh2"]["cluster_id"]
    assert dec["c"]["kind"] == "unique" and dec["c"]["kept"] and dec["d"]["kept"]
    stats = result.manifest["stats"]
    assert stats["removed_by_reason"] == {"exact-duplicate": 1, "near-duplicate": 3}
    assert stats["conserved"] and stats["documents_out"] == 4
    assert stats["cluster_size_histogram"] == {1: 2, 2: 1, 4: 1}
    assert stats["audit"] == {
        "clusters": 4,
        "no_survivor": 0,
        "two_survivors": 0,
        "unmatched_decisions": 0,
    }
    kept_ids = {r["id"] for r in storage.iter_stage_rows(result.version)}
    # equal quality: the longer text survives (zh2 has one more character than zh1)
    assert kept_ids == {"a_copy", "c", "d", "zh2"}
    ledger = {r["doc_id"]: r for r in storage.iter_stage_rows(result.version, "ledger")}
    assert ledger["b2"]["reason"] == "near-duplicate" and "a_copy" in ledger["b2"]["detail"]


def test_survivors_do_not_depend_on_workers_or_input_order(tmp_path, beam_options):
    docs = _corpus()
    _, first = _run(tmp_path, docs, beam_options, "one")
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    cfg, _ = _run(tmp_path, shuffled, beam_options, "two")
    second = run_stage("dedup", cfg, pipeline_options(cfg.runner))  # multi_processing, 2 workers
    pick = lambda r: {k: (d["cluster_id"], d["kept"]) for k, d in _decisions(r).items()}  # noqa: E731
    assert pick(first) == pick(second)


def test_disjoint_corpus_removes_nothing(tmp_path, beam_options):
    docs = [{"id": f"u{i}", "text": _text(100 + i), "quality": 0.5} for i in range(10)]
    _, result = _run(tmp_path, docs, beam_options)
    assert result.manifest["stats"]["removed"] == 0
    assert result.manifest["stats"]["cluster_size_histogram"] == {1: 10}


def test_cluster_audit_flags_broken_decisions():
    from pipelines.dedup.steps import cluster_stats

    def row(doc, cluster):
        return {"doc_id": doc, "cluster_id": cluster}

    rows = [
        row("a", "a"),
        row("b", "a"),  # fine: one survivor named by the cluster id
        row("c", "c"),
        row("c", "c"),  # the same id decided twice: two survivors
        row("d", "x"),  # removed, pointing at a cluster with no survivor
    ]
    stats = cluster_stats(rows)
    assert (stats["audit_clusters"], stats["audit_no_survivor"], stats["audit_two_survivors"]) == (3, 1, 1)
    assert stats["cluster_size_histogram"] == {"2": 2, "1": 1}
    assert stats["largest_clusters"] == [[2, "c"], [2, "a"]]


def test_stats_are_one_element_written_by_the_pipeline_and_read_by_the_driver(tmp_path):
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipelines.beam_stage import WriteStat, read_stat, stat_path

    version = storage.StageVersion(tmp_path, "v")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | "Hist" >> beam.Create([{"1": 2, "3": 1}]) | WriteStat(version.path, "sizes")
        _ = p | "Nothing" >> beam.Create([]) | WriteStat(version.path, "nothing")
    assert stat_path(version.path, "sizes") == str(tmp_path / "v" / "_stats" / "sizes.json")
    assert read_stat(version, "sizes") == {"1": 2, "3": 1}
    assert read_stat(version, "nothing", default=[]) == []
    p = TestPipeline(runner="FnApiRunner")
    _ = p | beam.Create([1, 2]) | WriteStat(version.path, "two")
    with pytest.raises(Exception, match="combine it to one first"):
        p.run()


def test_missing_upstream_fails_with_what_to_do(tmp_path, beam_options):
    cfg = load_config(overrides={"paths": {"data_dir": str(tmp_path / "empty")}})
    with pytest.raises(storage.StageNotFoundError, match="materialize the 'clean' asset first"):
        run_stage("dedup", cfg, beam_options)


def test_dedup_asset_and_checks(tmp_path):
    from assets.resources import BeamRunner, CorpusforgeSettings
    from assets.stage_assets import stage_defs

    data = tmp_path / "data"
    commit_documents(data, "clean", _corpus(), per_shard=3)
    result = dg.materialize(
        stage_defs("dedup"),
        resources={
            "settings": CorpusforgeSettings(data_dir=str(data), input_path=str(tmp_path)),
            "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    evals = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert evals == {"conservation": True, "shards_valid": True, "one_survivor_per_cluster": True}
    meta = result.asset_materializations_for_node("dedup")[0].metadata
    assert meta["duplicate_clusters"].value == 2
    assert "image/png;base64" in meta["cluster_size_histogram"].value
    assert "survivor" in meta["example_clusters"].value
