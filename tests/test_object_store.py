"""Data stages with input and data directory on a real S3 API (moto's server on 127.0.0.1).

The committed documents, ledgers and token shards must equal the local-disk run's; a store that
fails mid-write fails the stage with a clear message and leaves the previous version current; bad
locations fail fast; credentials never reach outputs or Dagster metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from assets.graph import run_stage  # noqa: E402
from pipelines import fs, storage  # noqa: E402
from pipelines.config import ConfigError, load_config  # noqa: E402
from tests.s3_server import s3_server  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "corpus"
STAGES = ("raw", "clean", "dedup", "filtered", "tokenizer", "tokens")
SECRET = "corpusforge-test-secret-5f1d0c"
SETTINGS = {
    "tokenizer": {"vocab_size": 512},
    "tokens": {"seq_len": 64, "val_fraction": 0.1, "sequences_per_shard": 256},
    "output": {"max_shard_bytes": 200_000},
}


@pytest.fixture(scope="module")
def s3():
    with s3_server(secret=SECRET) as server:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": server["endpoint"]})
        s3.mkdir("bucket")
        s3.put(str(SAMPLE), "bucket/corpus", recursive=True)
        server["fs"] = s3
        yield server
        s3fs.S3FileSystem.clear_instance_cache()


def _cfg(input_path: str, data_dir: str, **extra: dict) -> object:
    return load_config(overrides={"paths": {"input": input_path, "data_dir": data_dir}, **SETTINGS, **extra})


def _run(cfg: object, beam_options: object, stages=STAGES) -> None:
    for name in stages:
        run_stage(name, cfg, beam_options)


def _content(data_dir: str, stages: tuple[str, ...] = STAGES) -> dict[str, object]:
    """Per stage: shard sha256s and a hash of every committed row (documents, ledger, clusters)."""
    out: dict[str, object] = {}
    for name in stages:
        version = storage.current_version(data_dir, name)
        m = version.manifest()
        entry: dict[str, object] = {}
        for kind in ("documents", "ledger", "clusters"):
            if kind in m:
                rows = hashlib.sha256()
                for row in storage.iter_stage_rows(version, kind):
                    rows.update(json.dumps(row, sort_keys=True, default=str).encode())
                entry[kind] = (m[kind]["rows"], [s["sha256"] for s in m[kind]["shards"]], rows.hexdigest())
        if isinstance(m.get("splits"), dict):
            entry["tokens"] = {k: [s["sha256"] for s in v["shards"]] for k, v in m["splits"].items()}
        if "tokenizer" in m and "sample" in m:
            entry["tokenizer"] = m["tokenizer"]["sha256"]
        if "stats" in m and "documents_in" in m["stats"]:
            entry["stats"] = {
                k: m["stats"][k] for k in ("documents_in", "documents_out", "removed_by_reason")
            }
        out[name] = entry
    return out


def test_data_stages_on_s3_equal_the_local_run(s3, tmp_path, beam_options):
    _run(_cfg(str(SAMPLE), str(tmp_path / "data")), beam_options)
    _run(_cfg("s3://bucket/corpus", "s3://bucket/data"), beam_options)
    local, remote = _content(str(tmp_path / "data")), _content("s3://bucket/data")
    for name in STAGES:
        assert remote[name] == local[name], name
    assert local["raw"]["stats"]["removed_by_reason"]  # the sample's bad records were quarantined
    # Nothing uncommitted is left and every stage released its lock.
    for name in STAGES:
        root = storage.stage_root("s3://bucket/data", name)
        assert not (root / storage.LOCK).exists()
        versions = [p for p in root.iterdir() if p.name.startswith("v-")]
        assert all((p / storage.SUCCESS).is_file() for p in versions), versions


def test_a_store_failing_mid_write_keeps_the_previous_version(s3, beam_options):
    data = "s3://bucket/fault"
    cfg = _cfg("s3://bucket/corpus", data)
    _run(cfg, beam_options, ("raw", "clean"))
    first = storage.current_version(data, "clean").name
    changed = _cfg("s3://bucket/corpus", data, clean={"gopher_quality": {"min_words": 40}})
    s3["proxy"].cut_on(b"/bucket/fault/clean/v-")  # the first write into the new version
    with pytest.raises(Exception) as failure:
        run_stage("clean", changed, beam_options)
    assert s3["proxy"].is_cut
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    assert "was not committed" in notes and f"{first} stays current" in notes
    s3["proxy"].restore()
    fs.refresh(fs.path(data))
    assert storage.current_version(data, "clean").name == first
    retried = run_stage("clean", changed, beam_options)
    assert storage.current_version(data, "clean").name == retried.version.name != first
    root = storage.stage_root(data, "clean")
    leftovers = [
        p.name for p in root.iterdir() if p.name.startswith("v-") and not (p / storage.SUCCESS).is_file()
    ]
    assert leftovers == []  # the failed attempt's objects were garbage-collected by the next commit


def test_two_runs_of_one_stage_cannot_both_publish(s3, beam_options):
    data = "s3://bucket/locked"
    cfg = _cfg("s3://bucket/corpus", data)
    root = storage.stage_root(data, "raw")
    other = {"token": "x", "host": "another-host", "pid": 1, "since": "2026-01-01T00:00:00+00:00"}
    fs.write_bytes(root / storage.LOCK, json.dumps(other).encode())
    with pytest.raises(storage.StageLockedError, match="another-host"):
        run_stage("raw", cfg, beam_options)
    assert not (root / "CURRENT").exists()
    fs.remove(root / storage.LOCK)
    run_stage("raw", cfg, beam_options)
    assert (root / "CURRENT").exists()


def test_bad_locations_fail_fast_with_what_to_fix(s3, beam_options, monkeypatch):
    with pytest.raises(fs.FileLayerError, match="bucket or container 'nobucket' does not exist"):
        run_stage("raw", _cfg("s3://nobucket/corpus", "s3://bucket/x"), beam_options)
    with pytest.raises(fs.FileLayerError, match="data directory 's3://nobucket/data'"):
        run_stage("raw", _cfg("s3://bucket/corpus", "s3://nobucket/data"), beam_options)
    with pytest.raises(ConfigError, match="neither a local path nor a known storage scheme"):
        _cfg("ftp2://host/corpus", "s3://bucket/x")
    with pytest.raises(ConfigError, match="embeds credentials"):
        _cfg("s3://key:secret@bucket/corpus", "s3://bucket/x")
    # An endpoint nothing listens on.
    import s3fs

    from tests.s3_server import free_port

    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(fs.FileLayerError, match="unreachable"):
            fs.check_access("s3://bucket/corpus", write=False, what="input")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_no_credentials_says_how_to_provide_them(s3, monkeypatch, tmp_path):
    import s3fs

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance-metadata service
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(fs.FileLayerError, match="no credentials"):
            fs.check_access("s3://bucket/corpus", write=False, what="input")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_credentials_never_reach_outputs_or_dagster_metadata(s3, tmp_path):
    import dagster as dg

    from assets.resources import BeamRunner, CorpusforgeSettings
    from assets.stage_assets import stage_defs

    data = "s3://bucket/creds"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        stage_defs("raw", "clean"),
        instance=instance,
        resources={
            "settings": CorpusforgeSettings(input_path="s3://bucket/corpus", data_dir=data),
            "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
        },
    )
    assert result.success
    assert SECRET in os.environ["AWS_SECRET_ACCESS_KEY"]
    events = instance.all_logs(result.run_id)
    logged = "\n".join(str(e) for e in events)
    assert "s3://bucket/creds" in logged  # metadata does name the location
    assert SECRET not in logged and "testing-key" not in logged
    store = s3["fs"]
    for key in store.find("bucket/creds"):
        assert SECRET.encode() not in store.cat_file(key), key


def test_cli_takes_object_store_uris(s3, tmp_path, monkeypatch, capsys):
    from assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORPUSFORGE_BEAM_MODE", "in_memory")
    args = ["--input", "s3://bucket/corpus", "--data-dir", "s3://bucket/cli", "--workers", "1"]
    assert main(["run", *args, "--select", "raw"]) == 0
    assert storage.current_version("s3://bucket/cli", "raw").manifest()["upstream"]["input"] == (
        "s3://bucket/corpus"
    )
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()  # never a local 's3:' folder
    assert main(["report", "--data-dir", "s3://bucket/cli"]) == 0
    assert "== raw" in capsys.readouterr().out
    assert (
        main(["run", "--input", "s3://nobucket/x", "--data-dir", "s3://bucket/cli", "--select", "raw"]) == 2
    )
    assert "bucket or container 'nobucket' does not exist" in capsys.readouterr().err


def test_a_grown_corpus_on_s3_is_processed_incrementally_like_on_local_disk(s3, tmp_path, beam_options):
    """A batch added to the input on the store: the split stages carry what did not change (shards
    listed in earlier version directories, on the store) and the result equals the local run's."""
    stages = ("raw", "clean", "dedup")  # driver-side carry, worker-side carry and the sketch cache
    local_input = tmp_path / "corpus"
    local_input.mkdir()
    s3["fs"].get("bucket/corpus/web", str(local_input / "web"), recursive=True)  # 2 files, then 1 more
    s3["fs"].put(str(local_input), "bucket/grow", recursive=True)
    runs = {"local": (str(local_input), str(tmp_path / "inc")), "s3": ("s3://bucket/grow", "s3://bucket/inc")}
    for source, data in runs.values():
        _run(_cfg(source, data), beam_options, stages)
    extra = SAMPLE / "tables"  # the batch: files the first run did not see
    s3["fs"].put(str(extra), "bucket/grow/tables", recursive=True)
    (local_input / "tables").mkdir()
    for f in extra.iterdir():
        (local_input / "tables" / f.name).write_bytes(f.read_bytes())
    for source, data in runs.values():
        _run(_cfg(source, data), beam_options, stages)
    local, remote = _content(runs["local"][1], stages), _content(runs["s3"][1], stages)
    for name in stages:
        assert remote[name] == local[name], name
    version = storage.current_version("s3://bucket/inc", "raw")
    raw = version.manifest()
    assert raw["batch"]["number"] == 1 and raw["batch"]["new_files"] == len(list(extra.iterdir()))
    assert raw["resume"]["carried"] > 0 and raw["carried_from"]
    carried = [s for s in raw["documents"]["shards"] if "version" in s]
    assert carried and all(version.shard_path("documents", s).exists() for s in carried)
    dedup = storage.current_version("s3://bucket/inc", "dedup").manifest()
    assert dedup["stats"]["sketches_reused"] > 0
