"""Ingestion: every record becomes a document or a quarantine row with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from assets.graph import run_stage
from pipelines import ingest, storage
from pipelines.config import load_config


def _cfg(input_dir: Path, data_dir: Path, **ingest_overrides):
    return load_config(
        overrides={
            "paths": {"input": str(input_dir), "data_dir": str(data_dir)},
            "raw": {"max_record_bytes": 4096, **ingest_overrides},
        }
    )


def _read_all(cfg) -> list[tuple[str, dict]]:
    out = []
    for split in ingest.plan_splits(cfg.paths.input, cfg.raw):
        out.extend(ingest.read_split(split, cfg.raw))
    return out


def test_every_bad_input_is_quarantined_with_its_reason(bad_corpus, tmp_path):
    root, expected = bad_corpus
    rows = _read_all(_cfg(root, tmp_path / "data"))
    reasons = Counter(r["reason"] for kind, r in rows if kind == "ledger")
    assert dict(reasons) == {k: v for k, v in expected.items() if k != "documents"}
    docs = [r for kind, r in rows if kind == "documents"]
    assert len(docs) == expected["documents"]
    assert {d["source"] for d in docs} == {"records.jsonl", "more.jsonl.gz", "note.txt"}
    quarantined = {r["reason"]: r for kind, r in rows if kind == "ledger"}
    assert (
        "byte 14" in quarantined["invalid-utf8"]["detail"]
        or "surrogate" in quarantined["invalid-utf8"]["detail"]
    )
    assert quarantined["unreadable-file"]["source"] == "truncated.jsonl.gz"


def test_document_ids_are_stable_and_meta_is_kept(bad_corpus, tmp_path):
    root, _ = bad_corpus
    cfg = _cfg(root, tmp_path / "data")
    first = [r for k, r in _read_all(cfg) if k == "documents"]
    second = [r for k, r in _read_all(cfg) if k == "documents"]
    assert [d["id"] for d in first] == [d["id"] for d in second]
    assert len({d["id"] for d in first}) == len(first)
    web = next(d for d in first if d["source"] == "records.jsonl" and d["offset"] == 0)
    assert json.loads(web["meta"]) == {"url": "https://example.org/1"}
    assert web["id"] == ingest.document_id("records.jsonl", 0, web["text"])


def test_byte_ranges_cover_a_file_exactly_once(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"text": f"document number {i} " + "word " * (i % 13)}) for i in range(500)]
    (src / "big.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _cfg(src, tmp_path / "data", split_bytes=1024)
    splits = ingest.plan_splits(cfg.paths.input, cfg.raw)
    assert len(splits) > 10
    docs = [r for k, r in _read_all(cfg) if k == "documents"]
    assert [d["text"] for d in docs] == [json.loads(line)["text"] for line in lines]


def test_text_separator_and_too_large(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("first doc\n===\nsecond doc\n===\n\n===\n" + "z" * 5000 + "\n===\nlast doc")
    cfg = _cfg(src, tmp_path / "data", txt_separator="\n===\n")
    rows = _read_all(cfg)
    docs = [r["text"].strip() for k, r in rows if k == "documents"]
    assert docs == ["first doc", "second doc", "last doc"]
    assert [r["reason"] for k, r in rows if k == "ledger"] == ["record-too-large"]


def test_parquet_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(
        pa.table({"content": ["alpha text", None, "", "gamma text"], "lang": ["en"] * 4}), src / "t.parquet"
    )
    rows = _read_all(_cfg(src, tmp_path / "data", text_field="content"))
    assert [r["text"] for k, r in rows if k == "documents"] == ["alpha text", "gamma text"]
    assert sorted(r["reason"] for k, r in rows if k == "ledger") == ["empty-text", "missing-text-field"]


def test_parquet_meta_with_timestamps_and_bytes_is_kept(tmp_path):
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in"
    src.mkdir()
    when = dt.datetime(2024, 5, 1, 12, 30)
    table = pa.table(
        {
            "text": ["alpha text", "beta text"],
            "crawled": pa.array([when, when], pa.timestamp("us")),
            "raw": [b"\x00\x01", b"\x02"],
            "price": pa.array([Decimal("1.50"), Decimal("2.00")], pa.decimal128(5, 2)),
        }
    )
    pq.write_table(table, src / "t.parquet")
    rows = _read_all(_cfg(src, tmp_path / "data"))
    assert [k for k, _ in rows] == ["documents", "documents"]
    meta = json.loads(rows[0][1]["meta"])
    assert meta["crawled"] == str(when) and meta["price"] == "1.50"


def test_text_separator_after_an_oversized_document_keeps_later_documents_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "_CHUNK", 16)  # small blocks: the separator straddles block edges
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("x" * 40 + "\n---\na\n---\nbcdef\n---\n" + "y" * 50 + "\n---\nlast")
    rows = _read_all(_cfg(src, tmp_path / "data", txt_separator="\n---\n", max_record_bytes=30))
    assert [r["text"] for k, r in rows if k == "documents"] == ["a", "bcdef", "last"]
    ledger = [r for k, r in rows if k == "ledger"]
    assert [(r["reason"], r["offset"]) for r in ledger] == [("record-too-large", 0), ("record-too-large", 61)]
    docs = [r for k, r in rows if k == "documents"]
    text = (src / "a.txt").read_bytes()
    for d in docs:  # offsets point at the document in the file
        assert text[d["offset"] : d["offset"] + len(d["text"])].decode() == d["text"]


def test_byte_range_starting_inside_a_huge_line_skips_it_with_bounded_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "_CHUNK", 64)
    src = tmp_path / "in"
    src.mkdir()
    big = json.dumps({"text": "w " * 3000})
    lines = [json.dumps({"text": "before"}), big, json.dumps({"text": "after"})]
    (src / "f.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _cfg(src, tmp_path / "data", split_bytes=1024, max_record_bytes=8192)
    sizes = []
    real_open = ingest._open_binary

    def spy(split):
        fh = real_open(split)
        original = fh.readline

        def readline(limit=-1):
            line = original(limit)
            sizes.append(len(line))
            return line

        fh.readline = readline
        return fh

    monkeypatch.setattr(ingest, "_open_binary", spy)
    rows = _read_all(cfg)
    assert [r["text"] for k, r in rows if k == "documents"] == ["before", "w " * 3000, "after"]
    assert max(sizes) <= 8192 + 1  # never the whole remainder of a line beyond the record limit


def test_hidden_files_and_broken_links_are_recorded_not_lost(tmp_path):
    src = tmp_path / "in"
    (src / ".cache").mkdir(parents=True)
    (src / "ok.txt").write_text("a document")
    (src / ".DS_Store").write_bytes(b"\x00" * 10)
    (src / ".cache" / "x.jsonl").write_text('{"text": "cached"}\n')
    (src / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    rows = _read_all(_cfg(src, tmp_path / "data"))
    assert [r["text"] for k, r in rows if k == "documents"] == ["a document"]
    ledger = sorted((r["source"], r["reason"]) for k, r in rows if k == "ledger")
    assert ledger == [
        (".DS_Store", "hidden-file"),
        (".cache/x.jsonl", "hidden-file"),
        ("dangling.txt", "unreadable-file"),
    ]


def test_a_dot_file_named_as_the_input_is_read(tmp_path):
    f = tmp_path / ".corpus.txt"
    f.write_text("explicitly chosen")
    rows = _read_all(_cfg(f, tmp_path / "data"))
    assert [r["text"] for k, r in rows if k == "documents"] == ["explicitly chosen"]


def test_missing_input_fails_fast(tmp_path):
    cfg = _cfg(tmp_path / "does-not-exist", tmp_path / "data")
    with pytest.raises(ingest.InputError, match="does not exist; set paths.input"):
        ingest.plan_splits(cfg.paths.input, cfg.raw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ingest.InputError, match="holds no files"):
        ingest.plan_splits(tmp_path / "empty", cfg.raw)


def test_ingest_work_counts_every_record_it_emits(bad_corpus, tmp_path):
    from collections import Counter

    root, expected = bad_corpus
    cfg = _cfg(root, tmp_path / "data")
    work = ingest.IngestWork(cfg.raw)
    seen: Counter[str] = Counter()
    records = 0
    for split in ingest.plan_splits(cfg.paths.input, cfg.raw):
        stats: dict = {}
        for kind, row in work.rows((split,), stats):
            seen[row["reason"] if kind == "ledger" else "documents"] += 1
        records += stats["records"]
    assert dict(seen) == dict(expected)
    assert records == sum(expected.values())


def test_run_commits_a_conserving_stage(bad_corpus, tmp_path, beam_options):
    root, expected = bad_corpus
    cfg = _cfg(root, tmp_path / "data")
    result = run_stage("raw", cfg, beam_options)
    stats = result.manifest["stats"]
    assert stats["conserved"]
    assert stats["documents_out"] == expected["documents"]
    assert stats["removed"] == sum(v for k, v in expected.items() if k != "documents")
    assert stats["documents_in"] == stats["documents_out"] + stats["removed"]
    version = storage.current_version(cfg.paths.data_dir, "raw")
    assert version.name == result.version.name
    rows = list(storage.iter_stage_rows(version))
    assert len(rows) == expected["documents"]
    # Re-running gives a new version with identical content (deterministic, idempotent).
    again = run_stage("raw", cfg, beam_options)
    assert again.version.name != result.version.name
    assert [s["sha256"] for s in again.manifest["documents"]["shards"]] == [
        s["sha256"] for s in result.manifest["documents"]["shards"]
    ]
    # Re-use skips the job when config and input are unchanged.
    reused = run_stage("raw", cfg, beam_options, reuse=True)
    assert reused.reused and reused.version.name == again.version.name


def test_multiprocessing_gives_the_same_shards(bad_corpus, tmp_path, beam_options):
    from pipelines.beam_stage import pipeline_options

    root, _ = bad_corpus
    cfg = _cfg(root, tmp_path / "data")
    single = run_stage("raw", cfg, beam_options)
    multi = run_stage("raw", cfg, pipeline_options(cfg.runner))  # multi_processing, 2 workers
    key = lambda m: sorted((s["path"], s["sha256"]) for s in m["documents"]["shards"])  # noqa: E731
    assert key(single.manifest) == key(multi.manifest)


def test_own_outputs_inside_the_input_are_not_read(tmp_path):
    src = tmp_path / "corpus"
    (src / "data" / "raw").mkdir(parents=True)
    (src / "home").mkdir()
    (src / "a.txt").write_text("a document")
    (src / "data" / "raw" / "part-00000.parquet").write_bytes(b"PAR1")
    (src / "home" / "runs.db").write_bytes(b"sqlite")
    splits = ingest.plan_splits(src, _cfg(src, src / "data").raw, exclude=(src / "data", str(src / "home")))
    assert [s.source for s in splits] == ["a.txt"]


def test_surrogate_in_a_metadata_field_quarantines_the_record_only(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = json.dumps({"text": "kept text", "title": "fine"})
    (src / "a.jsonl").write_text('{"text": "lost text", "title": "\\ud800bad"}\n' + good + "\n")
    rows = _read_all(_cfg(src, tmp_path / "data"))
    assert [r["text"] for k, r in rows if k == "documents"] == ["kept text"]
    assert [(r["reason"], r["offset"]) for k, r in rows if k == "ledger"] == [("invalid-utf8", 0)]


def test_a_utf8_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "first"}\n{"text": "second"}\n')
    rows = _read_all(_cfg(src, tmp_path / "data"))
    assert [r["text"] for k, r in rows if k == "documents"] == ["first", "second"]
