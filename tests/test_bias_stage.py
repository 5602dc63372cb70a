"""Bias / toxicity stage job (pipelines/bias/job.py) and the bias report job (pipelines/bias/report.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from assets.graph import run_stage, stage
from pipelines import reports, schemas, storage
from pipelines.bias import job, report
from pipelines.bias.balance import keep_document, plan_balance
from pipelines.bias.toxicity import REASON_ALL_LINES, REASON_DOCUMENT
from pipelines.config import BiasConfig, load_config


def commit_stage(
    data_dir: Path,
    stage: str,
    docs: Iterable[Mapping[str, Any]],
    ledger: Iterable[Mapping[str, Any]] = (),
    upstream: Mapping[str, str] | None = None,
    shard_docs: int = 4,
) -> storage.StageVersion:
    """Commit hand-made documents (and ledger rows) as a stage version, ``shard_docs`` rows per shard."""
    version = storage.new_version(data_dir, stage, "fixture")
    for kind, rows, schema in (
        ("documents", list(docs), schemas.DOCUMENTS),
        ("ledger", list(ledger), schemas.LEDGER),
    ):
        for k in range(0, len(rows), shard_docs):
            writer = storage.ShardWriter(
                version.dir(kind),
                f"{k // shard_docs:05d}",
                schema,
                max_shard_bytes=1 << 40,
                row_group_rows=64,
            )
            for row in rows[k : k + shard_docs]:
                writer.write(row)
            writer.close()
    storage.commit(
        version,
        config={"fixture": True},
        upstream=dict(upstream or {}),
        entries={kind: storage.collect_shards(version.dir(kind)) for kind in ("documents", "ledger")},
    )
    return version


def make_doc(doc_id: str, text: str, lang: str = "en", source: str = "web/a.jsonl", **extra: Any) -> dict:
    meta = extra.pop("meta", None)
    return {
        "id": doc_id,
        "text": text,
        "source": source,
        "offset": 0,
        "lang": lang,
        "meta": json.dumps(meta) if meta is not None else None,
        "signals": extra.pop("signals", {}),
        "tags": [],
        **extra,
    }


def removed(doc: Mapping[str, Any], stage: str, reason: str) -> dict:
    return {**schemas.removal_from_document(doc, reason), "stage": stage}


def words(n: int) -> str:
    return " ".join(["word"] * n)


FILLER = "the river ran past the old mill " * 60  # 420 words, no flagged or identity term
CORPUS = [
    make_doc("clean", "The river ran past the old mill and the farmer watched the water all day."),
    make_doc("toxic", "fuck this shit " + words(7)),
    # one heavy line (weight 2 > line threshold 1) in 427 words: score 4.68 <= 5, kept by 'document'
    make_doc("lines", FILLER.strip() + "\nwhat the fuck is this shit, muslim\nThe end."),
    # a single line of weight 2 in 422 words: under 'lines' nothing is left
    make_doc("all-lines", "fuck shit " + FILLER),
    # two profanities on two lines (line weight 1, never cut): 2 / 400 words = 5.0, not above 5
    make_doc("at-threshold", "fuck " + words(199) + "\nshit " + words(199)),
    make_doc("over-threshold", "fuck " + words(199) + "\nshit " + words(198)),  # 2 / 399 = 5.01
    make_doc("identity", "She is a Muslim woman and he is a Christian man."),
    make_doc("zh-toxic", "你他妈的傻逼", lang="zh", source="zh/b.jsonl"),
    make_doc("zh-clean", "他说她是穆斯林女性。今天天气很好。", lang="zh", source="zh/b.jsonl"),
    # one profanity in a short document: score 47.6 but weight 1 < doc_min_weighted 2, kept
    make_doc("one-stray", "fuck " + words(20)),
]


def local(mode: str = "in_memory", workers: int = 1) -> PipelineOptions:
    return PipelineOptions(
        ["--runner=FnApiRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    )


def run_filter(
    tmp_path: Path, docs: list[dict], options: PipelineOptions | None = None, shard_docs: int = 3, **bias: Any
):
    data = tmp_path / "data"
    commit_stage(data, "dedup", docs, shard_docs=shard_docs)
    cfg = load_config(overrides={"paths": {"data_dir": str(data)}, "filtered": bias})
    result = run_stage("filtered", cfg, options or local())
    return result, storage.current_version(data, "dedup")


def rows_by_id(version: storage.StageVersion, kind: str = "documents") -> dict[str, dict]:
    key = "id" if kind == "documents" else "doc_id"
    return {r[key]: r for r in storage.iter_stage_rows(version, kind)}


# --------------------------------------------------------------------------------------------------
# pure helpers


def test_document_source_prefers_meta_then_first_path_component():
    assert job.document_source(make_doc("a", "x", meta={"source": "wiki", "url": "u"})) == "wiki"
    assert job.document_source(make_doc("a", "x", meta={"source": 7})) == "7"
    assert job.document_source(make_doc("a", "x", source="books/austen/emma.txt")) == "books"
    assert job.document_source(make_doc("a", "x", source="notes.txt", meta={"url": "u"})) == "notes.txt"
    assert job.document_source(make_doc("a", "x", source="/c/d.txt", meta={"source": ""})) == "c"
    doc = make_doc("a", "x", source="web/1.jsonl", meta={"source": "wiki", "site": "news"})
    assert job.document_source(doc, "site") == "news"
    assert job.document_source(doc, "") == "web"
    broken = {**make_doc("a", "x", source="b/c"), "meta": '{"source": oops'}
    assert job.document_source(broken) == "b"


def test_score_bins_cover_edges():
    assert job.score_bin(0.0) == "0"
    assert job.score_bin(0.5) == "(0, 0.5]"
    assert job.score_bin(5.0) == "(2, 5]"
    assert job.score_bin(5.01) == "(5, 10]"
    assert job.score_bin(1000.0) == "> 50"
    assert len(job.score_bins()) == len(job.SCORE_EDGES) + 2


# --------------------------------------------------------------------------------------------------
# the stage job


def test_document_policy_with_cda_removes_documents_adds_copies_and_conserves(tmp_path):
    result, upstream = run_filter(tmp_path, CORPUS, toxicity_policy="document", cda_fraction=1.0)
    stats = result.manifest["stats"]
    assert stats["removed_by_reason"] == {REASON_DOCUMENT: 3}
    assert stats["documents_in"] == len(CORPUS)
    ledger = rows_by_id(result.version, "ledger")
    assert set(ledger) == {"toxic", "over-threshold", "zh-toxic"}
    assert "fuckx1" in ledger["over-threshold"]["detail"]
    kept = rows_by_id(result.version)
    assert kept["lines"]["text"] == CORPUS[2]["text"]  # under 'document' lines are never cut
    assert kept["at-threshold"]["signals"]["toxicity.score"] == pytest.approx(5.0)
    assert "toxicity.removed_lines" not in kept["clean"]["signals"]
    assert kept["identity"]["signals"]["identity.religion"] == 1.0
    assert kept["identity"]["signals"]["identity.gender"] == 1.0
    assert kept["identity"]["signals"]["identity.age"] == 0.0
    assert kept["zh-clean"]["signals"]["identity.religion"] == 1.0
    tox = result.manifest["toxicity"]
    assert tox["documents_scanned"] == len(CORPUS)
    assert sum(b["documents"] for b in tox["score_histogram"]) == len(CORPUS)
    assert tox["lines_removed"] == 0

    # CDA: only the English document with gendered words gets a copy (not zh, not the others)
    copies = {i: d for i, d in kept.items() if i.endswith("#cda")}
    assert set(copies) == {"identity#cda"}
    copy = copies["identity#cda"]
    assert copy["text"] == "He is a Muslim man and she is a Christian woman."
    assert copy["tags"] == ["cda:gender-swap", "added:cda"]
    assert json.loads(copy["meta"])["counterfactual_of"] == "identity"
    assert stats["documents_added"] == 1 and stats["tags"]["cda:gender-swap"] == 1
    assert stats["documents_out"] == len(CORPUS) - 3 + 1
    assert tox["cda"]["documents"] == 1
    assert stats["conserved"]
    check = reports.conservation(result.version, upstream)
    assert check["passed"] and check["added"] == 1


def test_lines_policy_cuts_heavy_lines_and_drops_emptied_documents(tmp_path):
    result, upstream = run_filter(tmp_path, CORPUS, toxicity_policy="lines")
    stats = result.manifest["stats"]
    assert stats["removed_by_reason"] == {REASON_DOCUMENT: 3, REASON_ALL_LINES: 1}
    assert stats["conserved"] and reports.conservation(result.version, upstream)["passed"]
    kept = rows_by_id(result.version)
    assert kept["lines"]["text"] == FILLER.strip() + "\nThe end."
    assert kept["lines"]["signals"]["toxicity.removed_lines"] == 1.0
    # the only religion mention was on the removed line: the signal describes the stored text
    assert kept["lines"]["signals"]["identity.religion"] == 0.0
    assert kept["at-threshold"]["text"] == CORPUS[4]["text"]  # line weight 1.0 is not above 1.0
    assert rows_by_id(result.version, "ledger")["all-lines"]["reason"] == REASON_ALL_LINES
    tox = result.manifest["toxicity"]
    assert tox["lines_removed"] == 2 and tox["documents_with_lines_removed"] == 2
    assert tox["flagged_terms"]["fuck"] >= 5


def balance_corpus() -> list[dict]:
    sentence = "A plain sentence about rivers and hills, nothing else here."
    docs = [make_doc(f"w{i}", f"{sentence} {i:04d}", meta={"source": "web"}) for i in range(120)]
    docs += [make_doc(f"b{i}", f"{sentence} {i:04d}", source=f"books/{i}.txt") for i in range(50)]
    docs += [
        make_doc(f"n{i}", f"{sentence} {i:04d}", source="x/y.jsonl", meta={"source": "news"})
        for i in range(30)
    ]
    return docs


def test_balancing_caps_the_largest_source(tmp_path):
    docs = balance_corpus()
    result, upstream = run_filter(tmp_path, docs, shard_docs=50, max_source_fraction=0.4, seed=3)
    balance = result.manifest["balance"]
    n = len(docs[0]["text"])  # every document has the same length
    assert balance["char_totals"] == {"books": 50 * n, "news": 30 * n, "web": 120 * n}
    plan = plan_balance(balance["char_totals"], 0.4)
    assert balance["probabilities"] == pytest.approx(plan.probabilities)
    assert balance["probabilities"]["web"] == pytest.approx((0.4 * 80 / 0.6) / 120)
    assert balance["probabilities"]["books"] == 1.0
    ledger = rows_by_id(result.version, "ledger")
    expected_removed = {
        d["id"] for d in docs if not keep_document(d["id"], job.document_source(d), plan.probabilities, 3)
    }
    assert set(ledger) == expected_removed and all(i.startswith("w") for i in ledger)
    assert {r["reason"] for r in ledger.values()} == {job.REASON_BALANCE}
    # realised share of the capped source: the cap up to sampling noise (about 1 sd here)
    assert balance["realised_fractions"]["web"] == pytest.approx(0.4, abs=0.04)
    assert balance["max_realised_fraction"] <= 0.4 + 0.04
    assert result.manifest["stats"]["conserved"] and reports.conservation(result.version, upstream)["passed"]


def test_output_is_identical_for_in_memory_and_two_processes(tmp_path):
    docs = CORPUS + balance_corpus()[::5]
    bias = {"toxicity_policy": "lines", "cda_fraction": 0.5, "max_source_fraction": 0.5}
    one, _ = run_filter(tmp_path / "one", docs, local(), shard_docs=8, **bias)
    two, _ = run_filter(tmp_path / "two", docs, local("multi_processing", 2), shard_docs=8, **bias)

    def shards(manifest: dict, kind: str) -> list[tuple]:
        return [(s["path"], s["rows"], s["sha256"]) for s in manifest[kind]["shards"]]

    assert len(shards(one.manifest, "documents")) > 3
    for kind in ("documents", "ledger"):
        assert shards(one.manifest, kind) == shards(two.manifest, kind)
    for key in ("stats", "toxicity", "balance"):
        assert one.manifest[key] == two.manifest[key]


def test_bias_work_on_one_split(tmp_path):
    import pyarrow.parquet as pq

    cfg = BiasConfig(toxicity_policy="lines", cda_fraction=1.0)
    docs = [CORPUS[0], CORPUS[1], CORPUS[2], CORPUS[6], make_doc("f1", "Calm text.", meta={"source": "feed"})]
    shard = tmp_path / "shard.parquet"
    pq.write_table(schemas.to_table(docs, schemas.DOCUMENTS), shard)
    stats: dict = {}
    # balancing plan: keep probability 0 for 'feed'; 'web' is not listed, so kept
    rows = list(job.BiasWork(cfg).rows(str(shard), stats, plan={"probabilities": {"feed": 0.0}}))
    kept = [(d["id"], tuple(d["tags"])) for kind, d in rows if kind == "documents"]
    gone = [(r["doc_id"], r["reason"]) for kind, r in rows if kind == "ledger"]
    assert kept == [
        ("clean", ()),
        ("lines", ()),
        ("identity", ()),
        ("identity#cda", ("cda:gender-swap", "added:cda")),
    ]
    assert sorted(gone) == sorted([("toxic", REASON_DOCUMENT), ("f1", job.REASON_BALANCE)])
    # the split's accumulator survives JSON (its completion record) and combines like the Beam combiner
    summary = job.combine_split_stats([json.loads(json.dumps(stats))] * 2)
    assert (summary["documents_in"], summary["lines_removed"], summary["cda"]["documents"]) == (10, 2, 2)


def test_missing_upstream_names_the_asset(tmp_path):
    cfg = load_config(overrides={"paths": {"data_dir": str(tmp_path)}})
    with pytest.raises(storage.StageNotFoundError, match="dedup"):
        run_stage("filtered", cfg, local())


# --------------------------------------------------------------------------------------------------
# the report job


def lineage(data: Path) -> dict[str, storage.StageVersion]:
    """raw -> clean -> dedup -> filtered with hand-made removals (module docstring of report.py)."""
    raw = [
        make_doc("r0", "A Muslim family lives here."),
        make_doc("r1", "The Christian choir sang."),
        make_doc("r2", "Jewish holidays are in autumn."),
        make_doc("r3", "He is a Muslim."),
        make_doc("r4", "The weather was fine."),
        make_doc("r5", "Numbers and letters."),
        make_doc("r6", "She and her sister went home. She smiled."),
        make_doc("r7", "Trains run on time."),
    ]
    by_id = {d["id"]: d for d in raw}
    v_raw = commit_stage(data, "raw", raw)
    ghost = make_doc("zz", "not in raw")
    v_clean = commit_stage(
        data,
        "clean",
        [by_id[i] for i in ("r2", "r3", "r5", "r6", "r7")],
        [
            removed(by_id["r0"], "clean", "gopher_quality:word_count"),
            removed(by_id["r4"], "clean", "gopher_quality:word_count"),
            removed(by_id["r1"], "clean", "c4:lorem_ipsum"),
            removed(ghost, "clean", "c4:lorem_ipsum"),
        ],
        {"raw": v_raw.name},
    )
    # r5 carries an identity signal that its text does not show: signals win over a rescan
    dedup_docs = [by_id["r3"], {**by_id["r5"], "signals": {"identity.age": 1.0}}, by_id["r6"], by_id["r7"]]
    v_dedup = commit_stage(
        data, "dedup", dedup_docs, [removed(by_id["r2"], "dedup", "dedup:exact")], {"clean": v_clean.name}
    )
    v_filtered = commit_stage(
        data,
        "filtered",
        [by_id["r3"], by_id["r6"], by_id["r7"]],
        [removed(dedup_docs[1], "filtered", REASON_DOCUMENT)],
        {"dedup": v_dedup.name},
    )
    return {"raw": v_raw, "clean": v_clean, "dedup": v_dedup, "filtered": v_filtered}


def z(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    return (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))


def test_report_disparity_and_representation_on_a_known_lineage(tmp_path, beam_options):
    data = tmp_path / "data"
    versions = lineage(data)
    cfg = load_config(overrides={"paths": {"data_dir": str(data)}})
    result = run_stage("bias_report", cfg, beam_options)
    rep = report.load_report(result.version)
    assert rep["notes"] == []
    assert result.manifest["upstream"] == {s: v.name for s, v in versions.items()}
    assert set(rep["disparity"]["stages"]) == {"clean", "dedup", "filtered"}
    rows = {(r["stage"], r["rule"], r["axis"]): r for r in rep["disparity"]["rows"]}

    # clean: religion is mentioned by r0..r3; r0 and r1 removed (two rules), r4 of the other four
    any_rule = rows[("clean", "*", "religion")]
    assert (any_rule["docs_mention"], any_rule["removed_mention"]) == (4, 2)
    assert (any_rule["docs_no_mention"], any_rule["removed_no_mention"]) == (4, 1)
    assert any_rule["ratio"] == pytest.approx(2.0)
    assert any_rule["z"] == pytest.approx(z(2, 4, 1, 4))
    assert rows[("clean", "gopher_quality:word_count", "religion")]["ratio"] == pytest.approx(1.0)
    lorem = rows[("clean", "c4:lorem_ipsum", "religion")]
    assert lorem["rate_mention"] == 0.25 and lorem["rate_no_mention"] == 0.0 and lorem["ratio"] is None
    assert rep["disparity"]["unmatched_ledger_rows"] == {"clean": 1}  # 'zz' never was a raw document

    # dedup: r2 (religion) of r2, r3 mentioning; none of r5, r6, r7
    exact = rows[("dedup", "dedup:exact", "religion")]
    assert (exact["rate_mention"], exact["rate_no_mention"]) == (0.5, 0.0)
    assert exact["z"] == pytest.approx(z(1, 2, 0, 3))

    # filtered: r5 counts as 'age' from its signal and was removed; r3 (religion) kept
    age = rows[("filtered", REASON_DOCUMENT, "age")]
    assert (age["docs_mention"], age["removed_mention"], age["rate_no_mention"]) == (1, 1, 0.0)
    religion = rows[("filtered", REASON_DOCUMENT, "religion")]
    assert (religion["rate_mention"], religion["rate_no_mention"]) == (0.0, pytest.approx(1 / 3))

    before, after = rep["representation"]["before"], rep["representation"]["after"]
    assert (before["stage"], after["stage"]) == ("dedup", "filtered")
    assert before["counts"]["docs"] == 4 and after["counts"]["docs"] == 3
    assert before["counts"]["pronoun.male"] == 1 and before["counts"]["pronoun.female"] == 3
    assert before["summary"]["he_she_ratio"] == pytest.approx(1 / 3)
    assert after["counts"]["docs.axis.religion"] == 1
    cooc = {r["axis"]: r for r in rep["cooccurrence"]["before"]}
    assert cooc["religion"]["lines_mentioning"] == 1 and cooc["religion"]["lines_mentioning_flagged"] == 0


def test_report_skips_missing_stages_with_notes(tmp_path):
    data = tmp_path / "data"
    commit_stage(data, "dedup", [make_doc("a", "He is here.")], upstream={"clean": "v-gone"})
    params = stage("bias_report").job_params()
    plan = report.plan_report(str(data), params["lineage"], params["representation"])
    assert set(plan.versions) == {"dedup"} and plan.disparity == {}
    assert plan.representation == {"before": "dedup"}
    notes = " ".join(plan.notes)
    assert "filtered: not materialized" in notes and "v-gone is missing" in notes
    assert "representation after (filtered): not available" in notes
