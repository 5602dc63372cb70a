"""The file-based dedup engine (pipelines/dedup/steps.py, spill.py): equal to the single-process
reference, independent of chunking and partitioning, linear on a giant cluster, clear on a full disk."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from assets.graph import run_stage
from pipelines import storage
from pipelines.config import DedupConfig, load_config
from pipelines.dedup import spill, steps
from pipelines.dedup.components import union_find_components
from pipelines.dedup.exact import exact_duplicates_local
from pipelines.dedup.lsh import optimal_bands_rows
from pipelines.dedup.minhash import MinHasher
from pipelines.dedup.near import near_duplicate_clusters_local
from pipelines.dedup.shingles import shingles
from tests.conftest import commit_documents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dedup_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _run(data: Path, docs: list[dict], options, per_shard: int = 40, **dedup) -> tuple:
    if not (data / "clean").exists():
        commit_documents(data, "clean", docs, per_shard=per_shard)
    cfg = load_config(overrides={"paths": {"data_dir": str(data)}, "dedup": dedup})
    return cfg, run_stage("dedup", cfg, options)


def _decisions(result) -> dict[str, dict]:
    return {r["doc_id"]: r for r in storage.iter_stage_rows(result.version, "clusters")}


def _reference(docs: list[dict], cfg: DedupConfig) -> dict[str, tuple[str, str]]:
    """Exact groups, then near clusters of the exact survivors (single process), exact members
    re-pointed: ``doc -> (cluster_id, kind)``."""
    exact = {
        d["doc_id"]: d for d in exact_duplicates_local([(r["id"], r["text"], r["quality"]) for r in docs])
    }
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.minhash_scheme, cfg.shingle_hash)
    near_in = []
    for r in docs:
        if exact[r["id"]]["kept"]:
            s = shingles(r["text"], cfg.ngram, cfg.cjk_ngram)
            near_in.append((r["id"], hasher.signature(s) if s else None, r["quality"], len(r["text"])))
    bands, rows = optimal_bands_rows(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)
    near = {d["doc_id"]: d for d in near_duplicate_clusters_local(near_in, bands, rows, cfg.threshold)}
    out = {}
    for doc_id, e in exact.items():
        n = near[e["cluster_id"]]
        if e["kept"]:
            kind = "exact" if (n["kind"] == "unique" and e["kind"] == "exact") else n["kind"]
            out[doc_id] = (n["cluster_id"], kind)
        else:
            out[doc_id] = (n["cluster_id"], "exact")
    return out


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    recs = dedup_corpus.generate(families=12, singletons=8, seed=5, data=None)
    return [{"id": r["id"], "text": r["text"], "quality": r["quality"], "lang": r["lang"]} for r in recs]


def test_engine_equals_the_single_process_reference(tmp_path, corpus, beam_options):
    _, result = _run(tmp_path / "d", corpus, beam_options)
    got = {k: (d["cluster_id"], d["kind"]) for k, d in _decisions(result).items()}
    want = _reference(corpus, DedupConfig())
    assert got == want
    removed = sum(1 for c, _ in want.values() if c is not None) - len({c for c, _ in want.values()})
    assert removed > 10  # the corpus really has duplicates of both kinds
    assert {k for _, k in want.values()} >= {"exact", "near", "unique"}


def _content(result) -> str:
    h = hashlib.sha256()
    for kind in ("documents", "ledger", "clusters"):
        for path in result.version.shard_paths(kind):
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def test_outputs_do_not_depend_on_chunks_partitions_or_workers(tmp_path, corpus, beam_options, monkeypatch):
    _, default = _run(tmp_path / "a", corpus, beam_options)
    monkeypatch.setattr(steps, "VERIFY_ROWS", 5)  # verification batches of a few buckets (in-process runner)
    monkeypatch.setattr(steps, "SIG_CACHE_BYTES", 40 * 1024)  # a merge task's cache fills and restarts
    _, tiny = _run(tmp_path / "b", corpus, beam_options, chunk_rows=1, partition_rows=1024)
    assert _content(default) == _content(tiny)
    plan_stats = tiny.manifest["stats"]
    assert plan_stats["audit"]["unmatched_decisions"] == 0


def test_vectorised_union_find_equals_the_reference():
    rng = np.random.default_rng(3)
    for n, m in ((50, 30), (400, 600), (1000, 50)):
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        parent = np.arange(n, dtype=np.int64)
        for s in range(0, m, 17):  # in batches, as the job streams edge files
            steps.union(parent, a[s : s + 17], b[s : s + 17])
        ref = union_find_components(zip(a.tolist(), b.tolist(), strict=True))
        for x, root in ref.items():
            assert steps._find(parent, np.array([x]))[0] == root


def test_partitioned_tables_and_records_round_trip(tmp_path):
    table = pa.table(
        {
            "k1": np.arange(10, dtype=np.uint64),
            "k2": np.zeros(10, np.uint64),
            "gid": np.arange(10, dtype=np.uint64),
        }
    )
    part = np.array([3, 0, 3, 1, 0, 3, 3, 1, 0, 5])
    spill.write_partitioned(str(tmp_path / "t.parquet"), table, part)
    for q in range(6):
        got = spill.read_partition(
            [str(tmp_path / "t.parquet"), str(tmp_path / "missing.parquet")], q, steps.KEYS
        )
        assert got.column("k1").to_pylist() == [i for i in range(10) if part[i] == q]
    dtype = spill.record_dtype(4, 4)
    recs = np.zeros(5, dtype=dtype)
    recs["sig"] = np.arange(20, dtype=np.uint32).reshape(5, 4)
    recs["length"] = [5, 6, 7, 8, 9]
    ids = ["a", "ünï", "", "中文", "z" * 300]
    spill.write_records(str(tmp_path / "r"), recs, ids)
    got, got_ids = spill.read_records(str(tmp_path / "r"), np.array([1, 2, 4]), dtype)
    assert got_ids == ["ünï", "", "z" * 300]
    assert got["length"].tolist() == [6, 7, 9] and got["sig"][2].tolist() == [16, 17, 18, 19]


def test_giant_cluster_is_linear(tmp_path, beam_options):
    """10k copies of one boilerplate page (a fifth of them lightly varied) plus distinct pages: one
    cluster, and the work (verified pairs, survivor comparisons) grows linearly with the copies."""
    rng = random.Random(1)
    words = [f"w{i}" for i in range(3000)]
    page = " ".join(rng.choice(words) for _ in range(200))
    docs = []
    for i in range(10_000):
        text = page if i % 5 else page + f" footer {i}"
        docs.append({"id": f"copy{i:05d}", "text": text, "quality": 0.5})
    for i in range(200):
        docs.append(
            {"id": f"solo{i:03d}", "text": " ".join(rng.choice(words) for _ in range(200)), "quality": 0.5}
        )
    cfg, result = _run(tmp_path / "g", docs, beam_options, per_shard=2000)
    stats = result.manifest["stats"]
    assert stats["documents_out"] == 201
    assert stats["cluster_size_histogram"] == {1: 200, 10_000: 1}
    bands = optimal_bands_rows(cfg.dedup.threshold, cfg.dedup.num_perm, 0.1, 0.9)[0]
    assert stats["verified_pairs"] <= bands * 10_000  # star edges: at most one per document and band
    assert stats["chains"]["survivor_comparisons"] < 2 * 10_000
    assert stats["audit"]["no_survivor"] == stats["audit"]["unmatched_decisions"] == 0


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare to mount a small tmpfs")
def test_out_of_disk_during_spill_fails_clearly_and_keeps_the_previous_version(tmp_path):
    """Runs in a user+mount namespace with a 16 MB tmpfs as the data directory (skips where the kernel
    does not allow that): a first dedup commits, a second with a different config fills the disk."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable: {probe.stderr.decode().strip()}")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = textwrap.dedent(
        f"""
        import subprocess, sys, random
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", {str(mnt)!r}], check=True)
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from assets.graph import run_stage
        from pipelines import storage
        from pipelines.beam_stage import pipeline_options
        from pipelines.config import load_config
        from tests.conftest import commit_documents
        rng = random.Random(0)
        words = [f"w{{i}}" for i in range(5000)]
        docs = [{{"id": f"d{{i:05d}}", "text": " ".join(rng.choice(words) for _ in range(60)), "quality": 0.5}}
                for i in range(3000)]
        data = Path({str(mnt)!r}) / "data"
        commit_documents(data, "clean", docs, per_shard=1000)
        def cfg(t):
            return load_config(overrides={{"paths": {{"data_dir": str(data)}}, "dedup": {{"threshold": t}}}})
        opts = pipeline_options(cfg(0.55).runner, in_memory=True)
        first = run_stage("dedup", cfg(0.55), opts)
        free = __import__("shutil").disk_usage(data).free
        Path(data / "ballast").write_bytes(b"x" * max(0, free - 300_000))
        try:
            run_stage("dedup", cfg(0.6), opts)
        except Exception as exc:
            print("ERROR:", exc)
        print("CURRENT:", storage.current_version(data, "dedup").name == first.version.name)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert "CURRENT: True" in out.stdout, out.stdout + out.stderr[-3000:]
    error = next(line for line in out.stdout.splitlines() if line.startswith("ERROR:"))
    assert "No space left on device" in error or "out of disk space" in error


def test_a_dissimilar_hub_does_not_hide_similar_members():
    """Bucket [h, x, y]: h is the hub (first in corpus order) and similar to neither; x ~ y."""
    base = np.arange(100, dtype=np.uint32)
    h, x, y = base + 1000, base.copy(), base.copy()
    y[:20] += 5000
    start = np.zeros(3, dtype=np.int64)
    a, b, tried = steps.verified_bucket_edges(start, np.stack([h, x, y]), 0.55)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 2)] and tried == 3
    sigs = {"h": h, "x": x, "y": y}
    from pipelines.dedup.near import verified_edges_local

    assert list(verified_edges_local(["h", "x", "y"], sigs, 0.55)) == [("x", "y")]
