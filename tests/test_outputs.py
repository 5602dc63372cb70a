"""Outputs anywhere (docs/outputs.md): `corpusforge path / card / export` on a small committed graph.

One module fixture runs the real stages on a tiny corpus (raw -> clean -> dedup -> filtered ->
bias_report, tokenizer -> tokens, ablation_tokens; then the model and the 3-seed ablation, trained
for two steps in this process), and every test reads its outputs back with the consumers' own
readers: `datasets`, DuckDB, Polars, an independent Megatron `.idx` reader and `transformers`.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from assets.cli import main
from assets.graph import run_stage
from pipelines import storage
from pipelines.config import load_config
from pipelines.tokens.bpe import load_tokenizer
from pipelines.tokens.splits import split_of
from tests.conftest import SAMPLE_CORPUS
from tests.inprocess_launch import inprocess_launch

SEQ_LEN, VAL_FRACTION = 32, 0.2
RANT = "\n".join(
    [
        "The landlord called the tenant a worthless bastard and then slammed the door in the hallway.",
        "Every morning the neighbour shouts that the council is full of shit and nobody ever listens.",
        "He wrote that the new manager was a stupid bastard who should have stayed at home today.",
        "The crowd kept yelling damn fools at the players until the match was finally abandoned.",
        "Some people in the forum said the whole plan was bullshit from the very first day.",
        "The old sailor cursed the bloody weather and called the captain an arrogant bastard again.",
        "She said the report was shit, the budget was shit and the meeting was a total waste.",
        "By the evening everyone agreed that the bastard who stole the bikes would never be found.",
    ]
)
DATA_STAGES = ("raw", "clean", "dedup", "filtered", "bias_report", "tokenizer", "tokens", "ablation_tokens")


def write_input(root: Path) -> None:
    """Books (en, zh), web pages with three exact duplicates, a too-short page, a page with PII,
    a toxic page and the bad records of the sample corpus."""
    (root / "books").mkdir(parents=True)
    for p in sorted((SAMPLE_CORPUS / "books").glob("*.txt"))[::3]:
        shutil.copy(p, root / "books" / p.name)
    pages = (SAMPLE_CORPUS / "web" / "en_pages.jsonl").read_text(encoding="utf-8").splitlines()[:24]
    extra = [
        {"text": "Buy now. Click here."},
        {"text": RANT, "url": "https://example.org/rant"},
    ]
    lines = pages + pages[:3] + [json.dumps(x) for x in extra]
    (root / "web.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(SAMPLE_CORPUS / "bad" / "broken.jsonl", root / "broken.jsonl")


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("outputs")
    write_input(root / "input")
    cfg = load_config(
        overrides={
            "paths": {"input": str(root / "input"), "data_dir": str(root / "data")},
            "filtered": {"toxicity_policy": "document"},
            "tokenizer": {"vocab_size": 400},
            "tokens": {"seq_len": SEQ_LEN, "val_fraction": VAL_FRACTION, "sequences_per_shard": 64},
            "model": {
                "preset": "tiny",
                "max_steps": 2,
                "batch_size": 4,
                "warmup_steps": 1,
                "eval_every": 0,
                "eval_batches": 2,
                "checkpoint_every": 0,
                "log_every": 1,
                "device": "cpu",
            },
        }
    )
    opts = PipelineOptions(
        ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )
    results = {s: run_stage(s, cfg, opts) for s in DATA_STAGES}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two cores shared with the Beam stages' leftovers: one thread is faster
    try:
        for s in ("model", "ablation"):
            results[s] = run_stage(s, cfg, launch=inprocess_launch, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    return cfg, results


def data_args(cfg) -> list[str]:
    return ["--data-dir", cfg.paths.data_dir]


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


# ------------------------------------------------------------------------------------------ path


def test_path_prints_the_current_version_directory_or_fails_clearly(graph, capsys):
    cfg, results = graph
    assert main(["path", "tokens", *data_args(cfg)]) == 0
    assert capsys.readouterr().out.strip() == str(results["tokens"].version.path)
    assert main(["path", "evaluation", *data_args(cfg)]) == 2  # never materialized here
    err = capsys.readouterr().err
    assert "'evaluation' has no committed version" in err and "materialize" in err


# ----------------------------------------------------------------------------------------- card


def test_card_of_the_committed_graph_has_the_header_and_the_counts(graph, capsys):
    cfg, results = graph
    assert main(["card", *data_args(cfg)]) == 0
    card = capsys.readouterr().out
    head = front_matter(card)
    assert head["language"] == ["en", "zh"] and head["license"] == "other" and head["license_name"]
    assert head["task_categories"] == ["text-generation"] and head["size_categories"] == ["n<1K"]
    for stage in ("raw", "clean", "dedup", "filtered"):
        st = results[stage].manifest["stats"]
        row = f"| {stage} | {st['documents_in']:,} | {st['documents_added']:,} | {st['removed']:,} | {st['documents_out']:,} |"
        assert row in card, row
        for reason, n in st["removed_by_reason"].items():
            assert f"| {stage} | `{reason}` | {n:,} |" in card
    raw_reasons = results["raw"].manifest["stats"]["removed_by_reason"]
    assert {"malformed-json", "missing-text-field"} <= set(raw_reasons)
    assert results["dedup"].manifest["stats"]["removed_by_reason"]["exact-duplicate"] == 3
    assert "toxicity:document" in results["filtered"].manifest["stats"]["removed_by_reason"]
    pii = results["clean"].manifest["stats"]["pii"]
    assert pii and "## Personal information" in card
    assert "| stage | " + " | ".join(sorted(pii)) + " |" in card
    assert "| clean | " + " | ".join(f"{pii[k]:,}" for k in sorted(pii)) + " |" in card
    # the bias report's tables and the ablation over seeds
    assert "### Representation" in card and "he/she ratio" in card and "### Filter disparity" in card
    assert "| dedup | `exact-duplicate` |" in card
    assert "## Curation ablation" in card and "(n=3)" in card and "raw_val" in card


def test_card_of_an_export_follows_its_lineage(graph, capsys):
    cfg, results = graph
    assert main(["card", "--stage", "filtered", *data_args(cfg), "--license", "cc-by-4.0"]) == 0
    card = capsys.readouterr().out
    assert front_matter(card)["license"] == "cc-by-4.0"
    assert "| filtered |" in card and "### Representation" in card  # the bias report measured this lineage
    assert "Token dataset" not in card  # not upstream of `filtered`
    assert results["filtered"].version.name in card


def test_card_metadata_for_the_dagster_ui(graph):
    from assets.card import card_metadata, dataset_metadata

    _, results = graph
    meta = card_metadata(results["tokens"])
    text = meta["dataset_card"].value
    assert front_matter(text)["pretty_name"] and "## Tokens" in text and "## Removals by reason" in text
    merged = dataset_metadata(results["tokens"])
    assert "dataset_card" in merged and len(merged) > 1


# ------------------------------------------------------------------------------------ documents


def test_documents_export_opens_in_datasets_duckdb_and_polars(graph, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg, results = graph
    out = tmp_path / "docs"
    assert main(["export", "documents", str(out), *data_args(cfg)]) == 0
    version = results["filtered"].version
    expected = {r["id"]: r for r in storage.iter_stage_rows(version)}
    files = sorted(str(p) for p in (out / "data").glob("*.parquet"))
    assert len(files) == len(version.shard_paths()) and not list(tmp_path.glob(".docs.tmp-*"))

    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == len(expected) == results["filtered"].manifest["stats"]["documents_out"]
    row = ds[0]
    doc = expected[row["id"]]
    assert row["text"] == doc["text"] and row["tags"] == doc["tags"]
    assert [s["key"] for s in row["signals"]] == sorted(doc["signals"])
    assert row["signals"][0]["value"] == pytest.approx(doc["signals"][row["signals"][0]["key"]])

    con = duckdb.connect()
    n, keys = con.execute(
        f"select count(*), count(distinct s.key) from (select unnest(signals) as s from read_parquet({files}))"
    ).fetchone()
    assert keys == len({k for d in expected.values() for k in d["signals"]})
    assert con.execute(f"select count(*) from read_parquet({files})").fetchone()[0] == len(expected)

    df = pl.read_parquet(files)
    assert df.height == len(expected) and set(df["id"]) == set(expected)
    assert df.schema["signals"] == pl.List(pl.Struct({"key": pl.String, "value": pl.Float32}))

    card = (out / "README.md").read_text(encoding="utf-8")
    head = front_matter(card)
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    assert "## Dataset structure" in card and f"{len(expected)} documents" in card
    # the folder itself loads as a Hugging Face dataset (its card names the files)
    assert datasets.load_dataset(str(out), split="train").num_rows == len(expected)
    # a non-empty target is refused unless --overwrite
    assert main(["export", "documents", str(out), *data_args(cfg)]) == 2
    assert main(["export", "documents", str(out), *data_args(cfg), "--overwrite", "--stage", "dedup"]) == 0
    assert pl.read_parquet(str(out / "data" / "*.parquet")).height == len(
        list(storage.iter_stage_rows(results["dedup"].version))
    )


# --------------------------------------------------------------------------------------- tokens


def token_windows(version: storage.StageVersion, split: str) -> np.ndarray:
    rows = []
    for shard in version.manifest()["splits"][split]["shards"]:
        with pa.memory_map(str(version.path / shard["path"]), "r") as src:
            table = ipc.open_file(src).read_all()
        rows.append(np.asarray(table.column(0).combine_chunks().flatten()).reshape(-1, SEQ_LEN + 1))
    return np.concatenate(rows)


def test_tokens_export_for_hugging_face_datasets(graph, tmp_path):
    datasets = pytest.importorskip("datasets")
    cfg, results = graph
    out = tmp_path / "hf"
    assert main(["export", "tokens", str(out), "--format", "hf", *data_args(cfg)]) == 0
    version = results["tokens"].version
    splits = version.manifest()["splits"]
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"}
    for ours, theirs in (("train", "train"), ("val", "validation")):
        windows = token_windows(version, ours)
        assert dd[theirs].num_rows == splits[ours]["sequences"] == len(windows)
        assert np.array_equal(np.asarray(dd[theirs]["input_ids"]), windows)
        shards = sorted((out / theirs).glob("data-*.arrow"))
        assert len(shards) == len(splits[ours]["shards"])
        first = datasets.Dataset.from_file(str(shards[0]))  # Arrow IPC stream files
        assert first.num_rows == splits[ours]["shards"][0]["sequences"]
        assert first[0]["input_ids"] == windows[0].tolist()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert front_matter(card)["configs"][0]["data_files"][1] == {
        "split": "validation",
        "path": "validation/data-*.arrow",
    }


def read_megatron(prefix: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """An independent reader of Megatron-LM's MMapIndexedDataset (indexed_dataset.py): the ``.idx``
    header (magic, version, dtype code, sequence count, document count), int32 sizes, int64 byte
    pointers, int64 document index; the ``.bin`` viewed with the header's dtype."""
    idx = prefix.with_suffix(".idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack("<Q", idx[9:17])
    (code,) = struct.unpack("<B", idx[17:18])
    sequences, documents = struct.unpack("<QQ", idx[18:34])
    assert version == 1
    dtype = {
        1: np.uint8,
        2: np.int8,
        3: np.int16,
        4: np.int32,
        5: np.int64,
        6: np.float64,
        7: np.float32,
        8: np.uint16,
    }[code]
    offset = 34
    sizes = np.frombuffer(idx, np.int32, sequences, offset)
    offset += 4 * sequences
    pointers = np.frombuffer(idx, np.int64, sequences, offset)
    offset += 8 * sequences
    doc_idx = np.frombuffer(idx, np.int64, documents, offset)
    assert offset + 8 * documents == len(idx)
    data = np.memmap(prefix.with_suffix(".bin"), dtype=dtype, mode="r")
    item = np.dtype(dtype).itemsize
    seqs = [np.asarray(data[p // item : p // item + n]) for p, n in zip(pointers, sizes, strict=True)]
    return sizes, seqs, doc_idx


def test_tokens_export_for_megatron_keeps_document_boundaries(graph, tmp_path):
    cfg, results = graph
    out = tmp_path / "megatron"
    assert main(["export", "tokens", str(out), "--format", "megatron", *data_args(cfg)]) == 0
    version = results["tokens"].version
    manifest = version.manifest()
    tokenizer = load_tokenizer(
        storage.current_version(cfg.paths.data_dir, "tokenizer").path / "tokenizer.json"
    )
    # reference: every filtered document of the split, in upstream order, encoded alone + EOT
    expected: dict[str, list[list[int]]] = {"train": [], "val": []}
    for doc in storage.iter_stage_rows(results["filtered"].version):
        expected[split_of(doc["id"], VAL_FRACTION)].append(tokenizer.encode(doc["text"]).ids + [0])
    for split in ("train", "val"):
        sizes, seqs, doc_idx = read_megatron(out / split)
        assert len(seqs) == manifest["splits"][split]["documents"] == len(expected[split])
        assert [s.tolist() for s in seqs] == expected[split]
        assert np.array_equal(doc_idx, np.arange(len(seqs) + 1))
        assert int(sizes.sum()) == manifest["splits"][split]["tokens"]
        assert (out / f"{split}.bin").stat().st_size == 2 * manifest["splits"][split]["tokens"]  # uint16
    assert max(len(s) for s in expected["train"]) > SEQ_LEN + 1  # some documents span windows
    assert "Megatron-LM" in (out / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------- model


def test_model_export_loads_in_transformers_and_generates(graph, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    import torch

    from training.evaluate import generate
    from training.run_eval import load_model

    cfg, results = graph
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing may depend on the working directory
    out = tmp_path / "hf-model"
    assert main(["export", "model", str(out), *data_args(cfg)]) == 0
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    ids = tok("The king said", return_tensors="pt")["input_ids"]
    greedy = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    ours, _ = load_model(results["model"].version.path)
    assert torch.equal(greedy[0], generate(ours, ids[0], 6, temperature=0))
    assert isinstance(tok.decode(greedy[0]), str) and tok.eos_token_id == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert front_matter(card)["pipeline_tag"] == "text-generation"


# ------------------------------------------------------------------------------------- ablation


def test_ablation_evaluates_three_seeds_on_the_same_neutral_set(graph):
    from assets.training import ablation_metadata

    _, results = graph
    manifest = results["ablation"].manifest
    ab = manifest["ablation"]
    assert ab["seeds"] == [1, 2, 3] and ab["neutral_set"] == "raw_val"
    assert ab["eval_sets"]["raw_val"]["stage"] == "ablation_tokens"
    assert ab["eval_sets"]["raw_val"]["version"] == results["ablation_tokens"].version.name
    assert ab["eval_sets"]["curated_val"]["version"] == results["tokens"].version.name
    runs = ab["runs"]
    assert sorted((r["corpus"], r["seed"]) for r in runs) == [
        (c, s) for c in ("curated", "raw") for s in (1, 2, 3)
    ]
    for name in ("raw_val", "curated_val"):
        assert len({r["eval"][name]["tokens"] for r in runs}) == 1  # every model scored on the same tokens
        for corpus in ("raw", "curated"):
            stats = ab["summary"][corpus][name]["ppl"]
            values = [r["eval"][name]["ppl"] for r in runs if r["corpus"] == corpus]
            assert stats["n"] == 3 and stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
    assert len({r["final_train_loss"] for r in runs}) == 6  # seeds differ
    assert manifest["report"]["raw"]["heldout_ppl"] == pytest.approx(
        ab["summary"]["raw"]["raw_val"]["ppl"]["mean"]
    )
    meta = ablation_metadata(results["ablation"])
    assert "±" in meta["comparison"].value and "raw_val perplexity" in meta["comparison"].value
    assert "seeds" in meta["perplexity_reduction"].value and meta["seeds"].value == "1, 2, 3"


# --------------------------------------------------------------------------------- object store


def test_exports_write_to_an_object_store(graph):
    """The same exports through fsspec's in-memory store: every file once under its final name, the
    card last; a non-empty target is refused."""
    import uuid

    import fsspec
    import pyarrow.parquet as pq

    from pipelines import exports

    _, results = graph
    mem = fsspec.filesystem("memory")
    base = f"memory://outputs-{uuid.uuid4().hex[:8]}"
    try:
        docs = exports.export_documents(results["filtered"].version, f"{base}/docs", card=lambda r: "card")
        assert docs.files[-1] == "README.md" and mem.cat(f"{base}/docs/README.md") == b"card"
        with mem.open(f"{base}/docs/{docs.files[0]}", "rb") as fh:
            assert pq.read_table(fh).schema.field("signals").type == exports.SIGNAL_TYPE
        meg = exports.export_tokens_megatron(results["tokens"].version, f"{base}/meg")
        assert mem.cat(f"{base}/meg/val.idx")[:9] == b"MMIDIDX\x00\x00"
        assert len(mem.cat(f"{base}/meg/val.bin")) == 2 * meg.counts["splits"]["val"]["tokens"]
        with pytest.raises(exports.ExportError, match="not empty"):
            exports.export_documents(results["filtered"].version, f"{base}/docs")
    finally:
        mem.rm(base.removeprefix("memory://"), recursive=True)


def test_ablation_metadata_and_card_still_read_a_version_without_seeds():
    """A version committed before seeds and the neutral set (one run per corpus) still renders."""
    from assets.training import ablation_metadata
    from pipelines.card import render_card
    from pipelines.stage import StageResult

    curve = {"step": [1, 2], "loss": [6.0, 5.0], "lr": [1e-3, 1e-3]}
    report = {
        name: {
            "train_documents": 10,
            "train_tokens_available": 100,
            "tokens_seen": 64,
            "steps": 2,
            "final_train_loss": 5.0,
            "heldout_loss": 5.5,
            "heldout_ppl": ppl,
            "loss_curve": curve,
        }
        for name, ppl in (("raw", 300.0), ("curated", 240.0))
    }
    manifest = {"stage": "ablation", "version": "v-old", "report": report}
    result = StageResult(storage.StageVersion(Path("/nowhere/ablation"), "v-old"), manifest)
    assert ablation_metadata(result)["perplexity_reduction"].value == "20.0% lower with curation"
    card = render_card({"ablation": manifest})
    assert "(one seed)" in card and "| raw | 300.00 | 64 |" in card
