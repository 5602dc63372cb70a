"""Token dataset Beam job: encode/pack transform, exactly-once packing, manifest, splits, audits."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from tokenizers import Tokenizer

from assets.graph import run_stage
from pipelines import schemas, storage
from pipelines.beam_stage import shard_splits
from pipelines.config import load_config
from pipelines.stage import StageJob
from pipelines.tokens import dataset, tokenizer_stage, verify
from pipelines.tokens.bpe import load_tokenizer
from pipelines.tokens.splits import TRAIN, VAL, cluster_split_overrides, split_of
from tests.corpus_fixtures import make_document, synthetic_documents, write_documents_stage

SEQ_LEN, VAL_FRACTION, PER_SHARD = 15, 0.15, 7


def corpus() -> list[dict]:
    docs = synthetic_documents(90, seed=5)
    docs.append(make_document("x", lang="en", doc_id="tiny-one-token"))
    docs.append(make_document("   \n", lang="und", doc_id="whitespace-only"))
    docs.append(make_document("长" * 120 + "\n" + "long " * 40, lang="zh", doc_id="spans-many-windows"))
    return docs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("tokens")
    docs = corpus()
    write_documents_stage(data_dir, docs, shard_docs=20, row_group_rows=7)
    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(data_dir)},
            "tokenizer": {"vocab_size": 320},
            "tokens": {
                "seq_len": SEQ_LEN,
                "val_fraction": VAL_FRACTION,
                "sequences_per_shard": PER_SHARD,
                "encode_batch": 8,
            },
        }
    )
    tok_result = run_stage("tokenizer", cfg)
    return cfg, docs, tok_result


def reference_streams(docs: list[dict], tok: Tokenizer) -> dict[str, list[int]]:
    """Each split's token stream: documents in upstream order, each encoded alone, then EOT (0)."""
    streams: dict[str, list[int]] = {"train": [], "val": []}
    for d in docs:
        streams[split_of(d["id"], VAL_FRACTION)] += tok.encode(d["text"]).ids + [0]
    return streams


def read_split(version_dir: Path, manifest: dict, split: str) -> np.ndarray:
    rows = []
    for shard in manifest["splits"][split]["shards"]:
        with pa.memory_map(str(version_dir / shard["path"]), "r") as src:
            table = ipc.open_file(src).read_all()
            rows.append(
                np.asarray(table.column(0).combine_chunks().flatten()).reshape(-1, SEQ_LEN + 1).copy()
            )
    return np.concatenate(rows) if rows else np.empty((0, SEQ_LEN + 1), np.uint16)


def test_encode_pack_transform_with_test_pipeline(built, tmp_path: Path):
    cfg, docs, tok_result = built
    tok_file = tokenizer_stage.tokenizer_path(tok_result.version)
    upstream = storage.current_version(cfg.paths.data_dir, "filtered")
    streams = reference_streams(docs, load_tokenizer(tok_file))
    window = SEQ_LEN + 1
    expected = []
    for split, stream in streams.items():
        padded = stream + [1] * (-len(stream) % window)
        rows = [padded[i : i + window] for i in range(0, len(padded), window)]
        for k in range(0, len(rows), PER_SHARD):
            expected.append((split, k // PER_SHARD, rows[k : k + PER_SHARD]))

    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        packed = (
            p
            | beam.Create(dataset.work_units(shard_splits(upstream)))
            | dataset.TokenizePack(tok_file, str(tmp_path / "work"), cfg.tokens, "uint16")
            | beam.Map(lambda s: (s.split, s.index, s.windows.tolist()))
        )
        assert_that(packed, equal_to(expected))


@pytest.fixture(scope="module")
def committed(built):
    cfg, docs, _ = built
    opts = beam.options.pipeline_options.PipelineOptions(
        ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )
    return run_stage("tokens", cfg, opts)


def test_manifest_has_the_contract_structure(built, committed):
    cfg, docs, tok_result = built
    m = json.loads((committed.version.path / "manifest.json").read_text())
    assert m["format"] == "corpusforge-tokens/1"
    assert (m["seq_len"], m["dtype"], m["vocab_size"]) == (SEQ_LEN, "uint16", 320)
    assert (m["eot_id"], m["pad_id"], m["mask_id"]) == (0, 1, 2)
    assert m["tokenizer_sha256"] == tok_result.manifest["tokenizer"]["sha256"]
    assert set(m["splits"]) == {"train", "val"}
    for split, entry in m["splits"].items():
        assert set(entry) == {"sequences", "tokens", "documents", "shards"}
        assert [set(s) for s in entry["shards"]] == [{"path", "sequences", "sha256"}] * len(entry["shards"])
        assert [s["path"] for s in entry["shards"]] == [
            f"{split}/part-{k:05d}.arrow" for k in range(len(entry["shards"]))
        ]
        sizes = [s["sequences"] for s in entry["shards"]]
        assert all(n == PER_SHARD for n in sizes[:-1]) and 0 < sizes[-1] <= PER_SHARD
        assert entry["documents"] == sum(split_of(d["id"], VAL_FRACTION) == split for d in docs)
    assert (committed.version.path / "_SUCCESS").is_file()
    assert storage.current_version(cfg.paths.data_dir, "tokens").name == committed.version.name
    assert not (committed.version.path / "_work").exists()
    assert not list(committed.version.path.rglob("*.shard.json"))


def test_every_token_exactly_once_and_only_last_window_padded(built, committed):
    cfg, docs, tok_result = built
    tok = load_tokenizer(tokenizer_stage.tokenizer_path(tok_result.version))
    m = committed.manifest
    for split, stream in reference_streams(docs, tok).items():
        windows = read_split(committed.version.path, m, split)
        assert windows.dtype == np.uint16
        flat = windows.reshape(-1)
        assert flat[: len(stream)].tolist() == stream
        assert (flat[len(stream) :] == 1).all() and len(flat) - len(stream) < SEQ_LEN + 1
        assert m["splits"][split]["tokens"] == len(stream)
        assert m["splits"][split]["sequences"] == len(windows)


def test_doc_index_reconstructs_every_document(built, committed):
    cfg, docs, tok_result = built
    tok = load_tokenizer(tokenizer_stage.tokenizer_path(tok_result.version))
    m, root = committed.manifest, committed.version.path
    texts = {d["id"]: d["text"] for d in docs}
    for split in ("train", "val"):
        windows = read_split(root, m, split)
        index = pq.read_table(root / "doc_index" / split)
        assert index.schema.equals(schemas.DOC_INDEX, check_metadata=False)
        pieces: dict[str, list[int]] = {}
        for r in index.to_pylist():
            assert r["doc_token_start"] == len(pieces.get(r["doc_id"], []))  # pieces arrive in order
            w = windows[r["sequence"]]
            pieces.setdefault(r["doc_id"], []).extend(
                w[r["window_start"] : r["window_start"] + r["length"]].tolist()
            )
        assert set(pieces) == {i for i in texts if split_of(i, VAL_FRACTION) == split}
        for doc_id, ids in pieces.items():
            assert ids[-1] == 0 and 0 not in ids[:-1]
            assert tok.decode(ids[:-1]) == unicodedata.normalize("NFC", texts[doc_id])
    spans = pq.read_table(root / "doc_index").filter(
        pa.compute.equal(pa.compute.field("doc_id"), "spans-many-windows")
    )
    assert spans.num_rows >= 3


def test_audits_pass_on_a_fresh_dataset(committed):
    shards = verify.audit_shards(committed.version.path)
    assert shards["problems"] == []
    for split, entry in committed.manifest["splits"].items():
        got = shards["measured"][split]
        assert (got["sequences"], got["tokens"], got["documents"]) == (
            entry["sequences"],
            entry["tokens"],
            entry["documents"],
        )
    splits = verify.audit_splits(committed.version.path)
    assert splits["problems"] == []
    assert splits["documents"] == {k: v["documents"] for k, v in committed.manifest["splits"].items()}


def test_training_reader_reads_the_dataset(committed):
    data = pytest.importorskip("training.data")
    ds = data.TokenDataset(committed.version.path, "val", verify=True)
    rows = [r.numpy() for r in ds]
    assert len(rows) == committed.manifest["splits"]["val"]["sequences"]
    assert rows[0].shape == (SEQ_LEN + 1,)


def copy_version(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_audits_report_corrupt_missing_and_overlapping(committed, tmp_path: Path):
    root = copy_version(committed.version.path, tmp_path / "tokens" / committed.version.name)
    m = committed.manifest
    first, second = m["splits"]["train"]["shards"][0], m["splits"]["train"]["shards"][1]
    data = bytearray((root / first["path"]).read_bytes())
    data[-200] ^= 0xFF  # flip a byte inside the IPC footer region
    (root / first["path"]).write_bytes(bytes(data))
    (root / second["path"]).unlink()
    problems = verify.audit_shards(root)["problems"]
    assert any(first["path"] in p and "sha256 mismatch" in p for p in problems)
    assert any(second["path"] in p and "missing" in p for p in problems)
    assert any("split train: shards hold" in p for p in problems)

    (root / m["splits"]["val"]["shards"][0]["path"]).write_bytes(b"not arrow at all")
    problems = verify.audit_shards(root)["problems"]
    assert any("unreadable Arrow IPC file" in p for p in problems)

    # a train document id that also appears in the val index
    val_file = root / m["doc_index"]["val"]["files"][0]["path"]
    train_id = pq.read_table(root / m["doc_index"]["train"]["files"][0]["path"]).column("doc_id")[0].as_py()
    table = pq.read_table(val_file)
    ids = table.column("doc_id").to_pylist()
    ids[0] = train_id
    pq.write_table(table.set_column(1, "doc_id", pa.array(ids, pa.string())), val_file)
    problems = verify.audit_splits(root)["problems"]
    assert any(train_id in p and "both train and val" in p for p in problems)


def test_empty_validation_split_and_uint32_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_documents_stage(tmp_path, synthetic_documents(12, seed=8), shard_docs=5)
    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(tmp_path)},
            "tokenizer": {"vocab_size": 300},
            "tokens": {"seq_len": 8, "val_fraction": 0.0, "sequences_per_shard": 1000},
        }
    )
    run_stage("tokenizer", cfg)
    monkeypatch.setattr(dataset, "token_dtype", lambda vocab: "uint32")  # as if the vocab were > 65,536
    opts = beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])
    m = run_stage("tokens", cfg, opts).manifest
    assert m["dtype"] == "uint32"
    assert m["splits"]["val"] == {"sequences": 0, "tokens": 0, "documents": 0, "shards": []}
    assert m["splits"]["train"]["documents"] == 12 and len(m["splits"]["train"]["shards"]) == 1
    root = storage.current_version(tmp_path, "tokens").path
    assert verify.audit_shards(root)["problems"] == [] and verify.audit_splits(root)["problems"] == []
    with pa.memory_map(str(root / m["splits"]["train"]["shards"][0]["path"])) as src:
        assert ipc.open_file(src).schema.field(0).type == pa.list_(pa.uint32(), 9)


def test_cluster_split_overrides_only_name_copies_that_would_cross_splits():
    rows = [{"doc_id": f"m{i}", "cluster_id": "s-val" if i % 2 else "s-train"} for i in range(200)]
    rows.append({"doc_id": "s-val", "cluster_id": "s-val"})
    f = 0.5
    got = cluster_split_overrides(rows, f)
    for r in rows:
        want = split_of(r["cluster_id"], f)
        assert got.get(r["doc_id"], split_of(r["doc_id"], f)) == want  # every copy ends with its survivor
    assert all(split_of(d, f) != s for d, s in got.items())  # and only the ones that needed moving
    assert "s-val" not in got


def test_raw_copies_of_validation_documents_follow_their_survivor(tmp_path: Path):
    docs = synthetic_documents(30, seed=8)
    write_documents_stage(tmp_path, docs, shard_docs=10)
    f = 0.3
    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(tmp_path)},
            "tokenizer": {"vocab_size": 300},
            "tokens": {"seq_len": 8, "val_fraction": f, "sequences_per_shard": 1000},
        }
    )
    run_stage("tokenizer", cfg)
    survivor = next(d for d in docs if split_of(d["id"], f) == VAL)
    copy_id = next(c for c in (f"copy-{i}" for i in range(1000)) if split_of(c, f) == TRAIN)
    write_documents_stage(tmp_path, [*docs, {**survivor, "id": copy_id}], stage="raw", shard_docs=10)
    version = storage.new_version(tmp_path, "dedup", "fixture")
    writer = storage.ShardWriter(
        version.dir("clusters"), "00000", schemas.CLUSTERS, max_shard_bytes=1 << 30, row_group_rows=64
    )
    for d in docs:
        writer.write(
            {"doc_id": d["id"], "cluster_id": d["id"], "kept": True, "kind": "unique", "similarity": 1.0}
        )
    writer.write(
        {"doc_id": copy_id, "cluster_id": survivor["id"], "kept": False, "kind": "exact", "similarity": 1.0}
    )
    writer.close()
    storage.commit(
        version, config={}, upstream={}, entries={"clusters": storage.collect_shards(version.dir("clusters"))}
    )

    opts = beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])

    def val_ids(stage: str, by_cluster: bool) -> set[str]:
        upstream = ("raw", "tokenizer", "dedup") if by_cluster else ("raw", "tokenizer")
        params = {"split_by_cluster": by_cluster}
        dataset.run(StageJob(name=stage, upstream=upstream, cfg=cfg, options=opts, params=params))
        version = storage.current_version(tmp_path, stage)
        files = version.manifest()["doc_index"]["val"]["files"]
        return {
            i for f in files for i in pq.read_table(version.path / f["path"]).column("doc_id").to_pylist()
        }

    assert copy_id not in val_ids("plain", False)  # by its own id the copy would train
    grouped = val_ids("grouped", True)
    assert {copy_id, survivor["id"]} <= grouped
    assert grouped == {d["id"] for d in docs if split_of(d["id"], f) == VAL} | {copy_id}
