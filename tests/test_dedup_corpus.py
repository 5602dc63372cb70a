"""The labelled near-duplicate corpus generator and the quality benchmark on it."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import dedup_corpus  # noqa: E402
import dedup_quality  # noqa: E402

from pipelines.config import DedupConfig  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def test_same_seed_same_corpus_and_different_seed_differs():
    a = dedup_corpus.generate(families=8, singletons=3, seed=5, data=None)
    b = dedup_corpus.generate(families=8, singletons=3, seed=5, data=None)
    c = dedup_corpus.generate(families=8, singletons=3, seed=6, data=None)
    assert a == b
    assert a != c


def test_labels_follow_the_stated_ground_truth():
    recs = dedup_corpus.generate(families=44, singletons=4, seed=1, data=None)
    by_id = {r["id"]: r for r in recs}
    assert len(by_id) == len(recs)
    bases = {r["family"]: r for r in recs if r["edit"]["kind"] == "original"}
    dup_specs = {(k, r) for k, r, dup in dedup_corpus.EDIT_SPECS if dup}
    kinds = set()
    for r in recs:
        kind, rate = r["edit"]["kind"], r["edit"]["rate"]
        base = bases[r["family"]]
        if kind == "original":
            assert r["cluster"] == r["id"]
            continue
        kinds.add((kind, rate))
        assert r["lang"] == base["lang"]
        if (kind, rate) in dup_specs:
            assert r["cluster"] == base["id"]
        else:
            assert rate >= 0.1 and r["cluster"] == r["id"]
        if kind == "exact":
            assert r["text"] == base["text"]
        if kind == "truncate":
            assert base["text"].startswith(r["text"]) and len(r["text"]) <= rate * len(base["text"]) + 1
    assert kinds == {(k, r) for k, r, _ in dedup_corpus.EDIT_SPECS}  # every spec is present


def test_token_edits_change_the_stated_fraction():
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(200))
    for kind, expected_len in (("substitute", 200), ("delete", 190), ("insert", 210)):
        out = dedup_corpus.edit_tokens(text, "en", kind, 0.05, ["new"], rng)
        assert len(out.split()) == expected_len
    zh = "天地玄黄宇宙洪荒" * 25
    out = dedup_corpus.edit_tokens(zh, "zh", "substitute", 0.1, ["某"], rng)
    assert len(out) == len(zh) and out.count("某") == 20


def test_writes_jsonl(tmp_path):
    recs = dedup_corpus.generate(families=3, singletons=1, seed=2, data=None)
    path = tmp_path / "c.jsonl"
    dedup_corpus.write_jsonl(recs, path)
    back = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert back == recs
    assert set(back[0]) == {"id", "text", "cluster", "lang", "edit", "family", "quality"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")
def test_quality_on_real_text_reaches_target_at_default_config():
    recs = dedup_corpus.generate(
        families=66, singletons=20, seed=4, data=SHARED, light=40, chains=15, passages=8
    )
    sizes = [len(r["text"].encode()) for r in recs if r["edit"]["kind"] == "original"]
    assert min(sizes) >= 1000 and max(sizes) <= 3000
    assert {r["lang"] for r in recs} == {"en", "zh"}
    result = dedup_quality.evaluate_corpus(recs, DedupConfig(), "affine32")
    # a small sample of the full benchmark (docs/benchmarks.md): bounds with room for its noise
    assert result["overall"]["precision"] >= 0.99 and result["overall"]["f1"] >= 0.95
    assert result["chain_false_merges"] <= 1 and result["passage_false_merges"] == 0
    assert min(result["light_edit_recall"].values()) >= 0.93
    assert result["slices"]["substitute@0.2"]["false_merge_rate"] == 0.0
    assert result["slices"]["substitute@0.01"]["merged_with_base"] == 1.0


def test_quality_script_prints_one_json_line(tmp_path):
    recs = dedup_corpus.generate(families=22, singletons=4, seed=9, data=None)
    path = tmp_path / "c.jsonl"
    dedup_corpus.write_jsonl(recs, path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dedup_quality.py"), "--corpus", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["documents"] == len(recs)
    assert {"precision", "recall", "f1", "ari"} <= set(out["overall"])
    assert "lang=en" in out["slices"] and "exact" in out["slices"]
