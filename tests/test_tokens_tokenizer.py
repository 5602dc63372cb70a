"""Tokenizer: round trips, special ids, determinism, the split rule, the streamed sample, the stage."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from assets.graph import run_stage
from pipelines import storage
from pipelines.config import load_config
from pipelines.tokens.bpe import EOT_ID, MASK_ID, PAD_ID, heldout_stats, lang_bucket, token_dtype, train_bpe
from pipelines.tokens.sample import DocumentSample
from pipelines.tokens.splits import TRAIN, VAL, hash_unit, in_sample, sample_rate, split_of
from tests.corpus_fixtures import synthetic_documents, write_documents_stage

TEXTS = [d["text"] for d in synthetic_documents(300, seed=3)]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_bpe(iter([TEXTS[:150], TEXTS[150:]]), vocab_size=400, min_frequency=2)


@pytest.mark.parametrize(
    "text",
    [
        "The river runs past old stone walls.",
        "   three leading spaces and a trailing newline\n",
        "\n\nleading newlines\r\nand CRLF\tand tabs  ",
        "天下大势，分久必合，合久必分。",
        "  学而时习之，不亦说乎？\n\n有朋自远方来。",
        "Mixed 中文 and English: 明月 shines 😀🎉👍🏽 over the harbour",
        "decomposed e\u0301 and composed é, Ａ full-width, ﬁ ligature",
        "a literal <|endoftext|> and <|pad|> inside a document",
        "",
        " ",
        "🀄" * 5,
    ],
)
def test_round_trip_is_nfc(tok: Tokenizer, text: str):
    ids = tok.encode(text).ids
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)
    assert EOT_ID not in ids and PAD_ID not in ids  # document text never yields special ids


def test_decomposed_accent_normalised_before_encoding(tok: Tokenizer):
    assert tok.encode("cafe\u0301").ids == tok.encode("café").ids
    assert tok.decode(tok.encode("cafe\u0301").ids) == "café"


def test_special_token_ids_and_vocab(tok: Tokenizer):
    assert (
        (tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|pad|>"), tok.token_to_id("<|mask|>"))
        == (
            EOT_ID,
            PAD_ID,
            MASK_ID,
        )
        == (0, 1, 2)
    )
    assert tok.get_vocab_size() == 400
    # frequent Chinese characters become single tokens (3 bytes -> 1 id) after training
    assert len(tok.encode("天下").ids) < len("天下".encode())


def test_training_is_deterministic_and_batching_independent(tok: Tokenizer):
    again = train_bpe(iter(TEXTS), vocab_size=400, min_frequency=2)
    assert hashlib.sha256(again.to_str().encode()).digest() == hashlib.sha256(tok.to_str().encode()).digest()


def test_min_frequency_limits_merges():
    rare = train_bpe(iter(["abcd efgh"]), vocab_size=400, min_frequency=2)
    assert rare.get_vocab_size() == 3 + 256  # no pair occurs twice: specials + byte alphabet only


def test_split_rule_is_stable_and_matches_fraction():
    ids = [f"doc-{i}" for i in range(20_000)]
    val = [i for i in ids if split_of(i, 0.1) == VAL]
    assert 0.09 < len(val) / len(ids) < 0.11
    assert [split_of(i, 0.1) for i in ids[:50]] == [split_of(i, 0.1) for i in ids[:50]]
    assert all(split_of(i, 0.0) == TRAIN for i in ids[:1000])
    # larger fractions only add documents to val (monotone threshold on one hash)
    assert set(val) <= {i for i in ids if split_of(i, 0.2) == VAL}


def test_gender_swapped_copies_share_their_source_split():
    from pipelines.bias.cda import counterfactual_id

    ids = [f"{i:032x}" for i in range(4_000)]
    splits = {split_of(i, 0.3) for i in ids}
    assert splits == {TRAIN, VAL}
    assert all(split_of(counterfactual_id(i), 0.3) == split_of(i, 0.3) for i in ids)


def test_split_threshold_edge():
    u = hash_unit(b"corpusforge-split", "edge-doc")
    assert split_of("edge-doc", u) == TRAIN  # strictly below the fraction goes to val
    assert split_of("edge-doc", u + 1e-12) == VAL


def test_sample_rate_and_seeded_sample():
    assert sample_rate(1000, 10_000, 0.0) == 1.0
    assert sample_rate(1000, 450, 0.1) == pytest.approx(0.5)
    assert sample_rate(0, 10, 0.5) == 1.0
    ids = [f"d{i}" for i in range(10_000)]
    kept = {i for i in ids if in_sample(i, 1, 0.3)}
    assert 0.28 < len(kept) / len(ids) < 0.32
    assert kept != {i for i in ids if in_sample(i, 2, 0.3)}  # the seed changes the sample
    assert kept == {i for i in ids if in_sample(i, 1, 0.3)}


def test_lang_buckets_and_dtype():
    assert [lang_bucket(x) for x in ("en", "zh", "zh-Hant", "fr", None, "")] == [
        "en",
        "zh",
        "zh",
        "other",
        "other",
        "other",
    ]
    assert token_dtype(65_536) == "uint16" and token_dtype(65_537) == "uint32"


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, list[dict]]:
    docs = synthetic_documents(600, seed=11)
    write_documents_stage(tmp_path, docs, shard_docs=150)
    return tmp_path, docs


def test_sample_excludes_validation_and_caps_bytes(upstream):
    data_dir, docs = upstream
    version = storage.current_version(data_dir, "filtered")
    sample = DocumentSample(
        version.shard_paths(), seed=1, rate=0.5, val_fraction=0.2, max_bytes=10**9, heldout_bytes=2000
    )
    texts = [t for batch in sample.batches() for t in batch]
    by_text = {d["text"]: d["id"] for d in docs}
    assert texts and all(split_of(by_text[t], 0.2) == TRAIN for t in texts)
    expected = [d["text"] for d in docs if split_of(d["id"], 0.2) == TRAIN and in_sample(d["id"], 1, 0.5)]
    assert texts == expected  # streamed in shard/row order, exactly the hash-selected documents
    assert sample.heldout_size > 0 and sample.heldout_size - len(sample.heldout[-1][0].encode()) < 2000
    assert all(split_of(by_text[t], 0.2) == VAL for t, _ in sample.heldout)

    capped = DocumentSample(version.shard_paths(), seed=1, rate=1.0, val_fraction=0.2, max_bytes=3000)
    got = [t for batch in capped.batches() for t in batch]
    assert capped.capped and capped.bytes >= 3000
    assert capped.bytes - len(got[-1].encode()) < 3000  # stops at the first document over the cap


def test_heldout_stats_per_language(tok: Tokenizer):
    stats = heldout_stats(tok, [("天下大势", "zh"), ("the river runs", "en"), ("the river", "en")])
    assert set(stats) == {"en", "zh", "all"}
    assert stats["en"]["documents"] == 2 and stats["en"]["bytes"] == len("the river runs") + len("the river")
    assert stats["zh"]["bytes_per_token"] == pytest.approx(12 / len(tok.encode("天下大势").ids), abs=1e-3)
    assert 0 < stats["all"]["vocab_share_used"] <= 1
    assert stats["all"]["vocab_used"] >= max(stats["en"]["vocab_used"], stats["zh"]["vocab_used"])


def test_tokenizer_stage_commits_tokenizer_and_stats(upstream):
    data_dir, docs = upstream
    total = sum(len(d["text"].encode()) for d in docs)
    cfg = load_config(
        overrides={
            "paths": {"data_dir": str(data_dir)},
            "tokenizer": {"vocab_size": 350, "sample_bytes": total // 3},
            "tokens": {"val_fraction": 0.1},
        }
    )
    result = run_stage("tokenizer", cfg)
    m = result.manifest
    path = result.version.path / "tokenizer.json"
    assert storage.current_version(data_dir, "tokenizer").name == result.version.name
    assert m["tokenizer"]["sha256"] == storage.sha256_file(path)
    assert m["tokenizer"]["vocab_size"] == Tokenizer.from_file(str(path)).get_vocab_size() == 350
    assert json.loads(path.read_text())["normalizer"]["type"] == "NFC"
    assert 0.25 * total < m["sample"]["bytes"] <= total // 3 + 1000
    assert m["config"]["val_fraction"] == 0.1
    held = m["stats"]["heldout"]
    assert {"en", "zh", "other", "all"} <= set(held)
    assert held["zh"]["bytes_per_token"] > 1.0 and held["en"]["bytes_per_token"] > 1.0
    # re-use: same config + upstream -> the committed version, not a new one
    assert run_stage("tokenizer", cfg, reuse=True).version.name == result.version.name


def test_stage_without_upstream_names_the_asset(tmp_path: Path):
    cfg = load_config(overrides={"paths": {"data_dir": str(tmp_path)}})
    with pytest.raises(storage.StageNotFoundError, match="filtered"):
        run_stage("tokenizer", cfg)


def test_loads_in_transformers(tok: Tokenizer, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        mask_token="<|mask|>",
        clean_up_tokenization_spaces=False,
    )
    text = "  天下大势 and the river 😀\n"
    assert fast.eos_token_id == 0 and fast.pad_token_id == 1 and fast.mask_token_id == 2
    assert fast.decode(fast(text)["input_ids"]) == text
