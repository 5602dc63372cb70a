"""Incremental runs: a grown input directory costs what it adds (pipelines/carry.py)."""

from __future__ import annotations

import json
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from assets.graph import run_stage
from pipelines import storage
from pipelines.config import load_config

KINDS = ("documents", "ledger", "clusters")
BOOKS = Path(__file__).resolve().parents[1] / "sample_data" / "corpus" / "books"
WORDS = " ".join(p.read_text() for p in sorted(BOOKS.glob("en_book_*.txt"))).split()


def _write(path: Path, seed: int, docs: int = 30) -> None:
    lines = []
    for i in range(docs):
        start = ((seed * docs + i) * 17) % (len(WORDS) - 100)
        lines.append(json.dumps({"text": f"[{seed}.{i}] " + " ".join(WORDS[start : start + 100])}))
    path.write_text("\n".join(lines) + "\n")


def _options() -> PipelineOptions:
    return PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])


def _cfg(corpus: Path, data: Path, **output):
    return load_config(
        overrides={
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "output": {"keep_versions": 1, **output},
            "raw": {"coalesce_bytes": 0},  # one split per file: the tests count files
        }
    )


def _ids(version: storage.StageVersion) -> set[str]:
    return {r["id"] for r in storage.iter_stage_rows(version, columns=["id"])}


def test_a_new_batch_processes_only_new_and_changed_files_and_retracts_old_ones(tmp_path: Path) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(10):
        _write(corpus / f"f{f:02d}.jsonl", f)
    cfg = _cfg(corpus, data)
    first = {name: run_stage(name, cfg, _options()) for name in ("raw", "clean")}
    assert first["raw"].manifest["batch"]["number"] == 0
    assert first["raw"].manifest["resume"]["processed"] == 10

    _write(corpus / "f10.jsonl", 10)  # two new files
    _write(corpus / "f11.jsonl", 11)
    _write(corpus / "f03.jsonl", 103)  # a changed file: its old documents must go
    (corpus / "f07.jsonl").unlink()  # a removed file: likewise
    logs: list[str] = []
    second = {name: run_stage(name, cfg, _options(), log=logs.append) for name in ("raw", "clean")}
    raw = second["raw"].manifest
    assert raw["batch"] == {
        "number": 1,
        "previous": first["raw"].version.name,
        "new_files": 2,
        "changed_files": 1,
        "removed_files": 1,
        "documents": 90,
        "quarantined": 0,
    }
    assert raw["resume"]["carried"] == 8 and raw["resume"]["processed"] == 3
    assert second["clean"].manifest["resume"]["carried"] == 8
    assert second["clean"].manifest["resume"]["processed"] == 3
    assert any("raw: incremental: 8 of 11 splits unchanged" in m for m in logs)
    assert raw["carried_from"] == [first["raw"].version.name]
    assert raw["stats"]["conserved"] and raw["stats"]["documents_in"] == 11 * 30

    # the same final input, rebuilt from scratch: the same documents, byte-identical per-file output
    full = {
        name: run_stage(name, _cfg(corpus, tmp_path / "full", incremental=False), _options())
        for name in ("raw", "clean")
    }
    for name in ("raw", "clean"):
        assert _ids(second[name].version) == _ids(full[name].version)
        assert (
            second[name].manifest["stats"]["documents_out"] == full[name].manifest["stats"]["documents_out"]
        )
    assert {s["sha256"] for s in raw["documents"]["shards"]} == {
        s["sha256"] for s in full["raw"].manifest["documents"]["shards"]
    }
    old_text = {r["text"][:8] for r in storage.iter_stage_rows(second["raw"].version, columns=["text"])}
    assert "[3.0] " not in {t[:6] for t in old_text} and "[7.0] " not in {t[:6] for t in old_text}

    # keep_versions=1, yet the first version stays: the current one lists shards that live there
    assert (data / "raw" / first["raw"].version.name / "documents").is_dir()
    # nothing new: the next run carries every split and processes none
    third = run_stage("raw", cfg, _options())
    assert third.manifest["resume"]["carried"] == 11 and third.manifest["resume"]["processed"] == 0
    assert _ids(third.version) == _ids(second["raw"].version)


def test_the_cli_ingests_a_grown_directory_as_a_batch_and_full_rebuilds_on_request(
    tmp_path, capsys, monkeypatch
):
    from assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORPUSFORGE_BEAM_MODE", "in_memory")
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(4):
        _write(corpus / f"f{f}.jsonl", f)
    args = ["run", "--input", str(corpus), "--data-dir", str(data), "--select", "raw,clean"]
    assert main(args) == 0
    _write(corpus / "f4.jsonl", 4)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    # 4 small files are still 4 splits (raw.min_splits), the new one is the next batch's
    assert (
        "batch 1: 1 new, 0 changed, 0 removed files, 30 documents; 1 of 5 splits processed, 4 carried" in out
    )
    assert main(["report", "--data-dir", str(data)]) == 0
    assert "this run: batch 1: 1 new" in capsys.readouterr().out
    assert main([*args, "--full"]) == 0
    out = capsys.readouterr().out
    assert "== raw: 150 in -> 150 out" in out and "carried" not in out
    manifest = storage.current_version(data, "clean").manifest()
    assert manifest["resume"]["processed"] == 5 and manifest["resume"]["carried"] == 0


def test_incremental_dedup_equals_a_full_dedup_of_the_same_corpus_and_keeps_published_survivors(tmp_path):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(6):
        _write(corpus / f"f{f:02d}.jsonl", f)  # overlapping windows: many near-duplicate clusters
    cfg = _cfg(corpus, data, keep_versions=2)
    stages = ("raw", "clean", "dedup", "filtered")
    first = {name: run_stage(name, cfg, _options()) for name in stages}
    for f in (6, 7):  # a batch that overlaps the first one's text
        _write(corpus / f"f{f:02d}.jsonl", f)
    second = {name: run_stage(name, cfg, _options()) for name in stages}
    dedup = second["dedup"].manifest
    old_docs = first["clean"].manifest["stats"]["documents_out"]
    assert dedup["stats"]["sketches_reused"] == old_docs  # old text was not read again
    assert dedup["resume"]["carried"] > 0 and dedup["resume"]["processed"] >= 2  # the batch + touched splits
    assert dedup["carried_from"] == [first["dedup"].version.name]
    assert second["filtered"].manifest["resume"]["carried"] >= dedup["resume"]["carried"]  # by shard content
    # an old split whose removals did not change re-uses its documents and ledger shards and re-writes
    # only its cluster rows (a survivor's kind changes when the batch brings it a duplicate)
    home = {kind: {s["split"]: s.get("version") for s in dedup[kind]["shards"]} for kind in KINDS}
    clusters_only = [
        k for k, v in home["clusters"].items() if v is None and home["documents"].get(k) is not None
    ]
    assert clusters_only
    assert all(home["ledger"].get(k) in (None, home["documents"][k]) for k in clusters_only)

    # the merge verified only buckets with a batch document, on top of the first version's edges
    assert dedup["edges"]["segments"] == [first["dedup"].version.name, second["dedup"].version.name]
    # a full dedup run of the same clean version decides exactly the same
    full = run_stage("dedup", _cfg(corpus, data, keep_versions=2, incremental=False), _options())
    assert full.manifest["stats"]["sketches_reused"] == 0
    for kind in ("documents", "ledger", "clusters"):
        assert [(s["path"], s["sha256"]) for s in dedup[kind]["shards"]] == [
            (s["path"], s["sha256"]) for s in full.manifest[kind]["shards"]
        ]

    # published survivors stay: nothing kept by the first run is removed by the second
    removed_now = {
        r["doc_id"] for r in storage.iter_stage_rows(second["dedup"].version, "ledger", ["doc_id"])
    }
    assert not (_ids(first["dedup"].version) & removed_now)
    # ...which is where a rebuild from scratch (every file one batch) may differ: only in clusters
    # that mix documents of both batches
    rebuilt = {
        name: run_stage(name, _cfg(corpus, tmp_path / "rebuilt", incremental=False), _options())
        for name in stages
    }
    differ = _ids(second["dedup"].version) ^ _ids(rebuilt["dedup"].version)
    clusters = {
        r["doc_id"]: r["cluster_id"]
        for r in storage.iter_stage_rows(rebuilt["dedup"].version, "clusters", ["doc_id", "cluster_id"])
    }
    batch_of = {
        r["id"]: r["source"]
        for r in storage.iter_stage_rows(rebuilt["raw"].version, columns=["id", "source"])
    }
    for doc in differ:
        members = [d for d, c in clusters.items() if c == clusters[doc]]
        assert {batch_of[d] in ("f06.jsonl", "f07.jsonl") for d in members} == {True, False}


def test_a_chain_of_delta_merges_equals_a_full_merge_and_a_changed_file_starts_a_new_chain(tmp_path):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(4):
        _write(corpus / f"f{f:02d}.jsonl", f)
    cfg = _cfg(corpus, data, keep_versions=2)
    stages = ("raw", "clean", "dedup")
    names = []
    for batch in ((), (4, 5), (6,)):
        for f in batch:
            _write(corpus / f"f{f:02d}.jsonl", f)
        names.append({name: run_stage(name, cfg, _options()) for name in stages}["dedup"].version.name)
    current = storage.current_version(data, "dedup")
    assert current.manifest()["edges"]["segments"] == names  # three segments: a full merge, two deltas
    assert set(names[:2]) <= set(current.manifest()["carried_from"])  # pruning keeps the chain
    full = run_stage("dedup", _cfg(corpus, data, keep_versions=2, incremental=False), _options())
    assert full.manifest["edges"]["segments"] == [full.version.name]
    for kind in KINDS:
        assert [(s["path"], s["sha256"]) for s in current.manifest()[kind]["shards"]] == [
            (s["path"], s["sha256"]) for s in full.manifest[kind]["shards"]
        ]
    # an old file changes: its documents leave the corpus, the chunks are no longer a prefix
    _write(corpus / "f01.jsonl", 11)
    changed = {name: run_stage(name, cfg, _options()) for name in stages}["dedup"]
    assert changed.manifest["edges"]["segments"] == [changed.version.name]


def test_new_batches_are_tokenized_with_the_current_tokenizer_and_appended(tmp_path):
    from pipelines.tokens import verify
    from training.data import TokenDataset

    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(4):
        _write(corpus / f"f{f:02d}.jsonl", f * 11)
    overrides = {
        "tokenizer": {"vocab_size": 300, "sample_bytes": 200_000},
        "tokens": {"seq_len": 32},
        "raw": {"coalesce_bytes": 0},
    }
    cfg = load_config(overrides={"paths": {"input": str(corpus), "data_dir": str(data)}, **overrides})
    stages = ("raw", "clean", "dedup", "filtered", "bias_report", "tokenizer", "tokens")
    first = {name: run_stage(name, cfg, _options()) for name in stages}
    _write(corpus / "f04.jsonl", 97)
    logs: list[str] = []
    second = {name: run_stage(name, cfg, _options(), log=logs.append) for name in stages}
    assert second["tokenizer"].version.name == first["tokenizer"].version.name  # kept, not retrained
    assert any("tokenizer: keeping" in m for m in logs)
    tokens = second["tokens"].manifest
    assert tokens["appended"] and tokens["carried_from"] == [first["tokens"].version.name]
    train = tokens["splits"]["train"]["shards"]
    old = first["tokens"].manifest["splits"]["train"]["shards"]
    assert [s["sha256"] for s in train[: len(old)]] == [s["sha256"] for s in old]  # old shards untouched
    assert train[len(old)].get("batch_start") and "version" not in train[len(old)]
    assert verify.audit_shards(second["tokens"].version.path)["problems"] == []
    assert verify.audit_splits(second["tokens"].version.path)["problems"] == []

    # the same documents and tokens as a dataset rebuilt at once; at most one more padded window per split
    full_cfg = load_config(
        overrides={
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "output": {"incremental": False},
            **overrides,
        }
    )
    rebuilt = run_stage("tokens", full_cfg, _options())
    for split in ("train", "val"):
        a, b = tokens["splits"][split], rebuilt.manifest["splits"][split]
        assert (a["documents"], a["tokens"]) == (b["documents"], b["tokens"])
        assert b["sequences"] <= a["sequences"] <= b["sequences"] + 1
    # the bias report re-used the partial results of every shard that did not change
    from pipelines.bias.report import load_report

    report = second["bias_report"].manifest
    assert 0 < report["partials_reused"] < len(report["partials"])
    assert report["carried_from"] == [first["bias_report"].version.name]
    fresh = run_stage("bias_report", full_cfg, _options())
    assert fresh.manifest["partials_reused"] == 0
    a, b = load_report(second["bias_report"].version), load_report(fresh.version)
    assert (a["representation"], a["disparity"]) == (b["representation"], b["disparity"])
    # the trainer's loader reads the old and the new shards
    windows = sum(1 for _ in TokenDataset(second["tokens"].version.path, "train", shuffle=False))
    assert windows == tokens["splits"]["train"]["sequences"]


def test_filtering_with_source_balancing_is_never_carried(tmp_path):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for f in range(3):
        _write(corpus / f"f{f:02d}.jsonl", f * 13)
    overrides = {
        "paths": {"input": str(corpus), "data_dir": str(data)},
        "filtered": {"max_source_fraction": 0.5},
        "raw": {"coalesce_bytes": 0},
    }
    cfg = load_config(overrides=overrides)
    stages = ("raw", "clean", "dedup", "filtered")
    for name in stages:
        run_stage(name, cfg, _options())
    _write(corpus / "f03.jsonl", 50)
    second = {name: run_stage(name, cfg, _options()) for name in stages}
    assert second["clean"].manifest["resume"]["carried"] == 3
    work = second["filtered"].manifest["resume"]
    assert work["carried"] == 0 and work["processed"] == work["splits"]  # the plan depends on all splits


def test_small_files_are_read_together_and_a_changed_one_rereads_only_its_group(tmp_path):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()

    def write(f: int, version: int = 0) -> None:  # every file the same size
        lines = [json.dumps({"text": f"document {f:02d}.{i} v{version} " + "word " * 40}) for i in range(5)]
        (corpus / f"f{f:02d}.jsonl").write_text("\n".join(lines) + "\n")

    for f in range(12):
        write(f)
    size = (corpus / "f00.jsonl").stat().st_size
    cfg = load_config(
        overrides={
            "paths": {"input": str(corpus), "data_dir": str(data)},
            "raw": {"coalesce_bytes": 4 * size, "min_splits": 1},
        }
    )
    first = run_stage("raw", cfg, _options())
    assert first.manifest["resume"]["splits"] == 3  # 12 files, 4 per split
    assert len(first.manifest["documents"]["shards"]) == 3
    write(5, version=1)  # changes the second group
    write(12)
    second = run_stage("raw", cfg, _options())
    work = second.manifest["resume"]
    assert (work["carried"], work["processed"]) == (2, 2)  # groups 1 and 3 carried; 5 files in 2 new splits
    # and without the floor the same 12 files would make at least raw.min_splits splits
    few = load_config(overrides={"paths": {"input": str(corpus), "data_dir": str(tmp_path / "d8")}})
    assert run_stage("raw", few, _options()).manifest["resume"]["splits"] >= 8
    assert second.manifest["batch"]["changed_files"] == 1 and second.manifest["batch"]["new_files"] == 1
    full = run_stage("raw", _cfg(corpus, tmp_path / "full", incremental=False), _options())
    assert _ids(second.version) == _ids(full.version)
