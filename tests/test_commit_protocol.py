"""The commit protocol on local disk: stage locks, leftovers collected, empty outputs refused,
relative paths resolved (object stores: tests/test_object_store.py)."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pytest

from pipelines import beam_stage, fs, storage
from pipelines.config import load_config


def test_a_held_lock_refuses_a_second_run_and_a_dead_owner_is_taken_over(tmp_path):
    root = storage.stage_root(tmp_path, "s")
    with (
        storage.stage_lock(root),
        pytest.raises(storage.StageLockedError, match="being written by another run"),
        storage.transaction(tmp_path, "s", "fp"),
    ):
        pass
    assert not (root / storage.LOCK).exists()
    dead = {"token": "t", "host": os.uname().nodename, "pid": 2**22 + 17, "since": "x"}
    (root / storage.LOCK).write_text(json.dumps(dead))
    with storage.transaction(tmp_path, "s", "fp") as tx:  # the owner no longer runs: taken over
        tx.commit(config={}, upstream={})
    assert not (root / storage.LOCK).exists()


def test_uncommitted_leftovers_are_collected_by_the_next_commit(tmp_path):
    leftover = storage.stage_root(tmp_path, "s") / "v-old-20200101T000000000000-abcd"
    (leftover / "documents").mkdir(parents=True)
    (leftover / "documents" / "part-00000-0000.parquet").write_bytes(b"partial")
    with storage.transaction(tmp_path, "s", "fp") as tx:
        tx.commit(config={}, upstream={})
    assert not leftover.exists()
    assert storage.current_version(tmp_path, "s").name == tx.version.name


def test_a_stage_with_input_but_no_output_shards_is_not_committed(tmp_path, beam_options):
    cfg = load_config(overrides={"paths": {"data_dir": str(tmp_path)}})
    with pytest.raises(beam_stage.EmptyOutputError, match="no shard reached"):
        beam_stage.run_stage(
            stage="s",
            data_dir=cfg.paths.data_dir,
            fp="fp",
            config={},
            upstream={},
            output=cfg.output,
            build=lambda p, v, run: p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x),  # writes elsewhere
            options=beam_options,
            inputs=3,
        )
    with pytest.raises(storage.StageNotFoundError):
        storage.current_version(tmp_path, "s")


def test_relative_paths_become_absolute_at_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides={"paths": {"input": "corpus", "data_dir": "data"}})
    assert cfg.paths.data_dir == str(tmp_path / "data") and cfg.paths.input == str(tmp_path / "corpus")
    assert load_config(overrides={"paths": {"data_dir": "s3://b/data"}}).paths.data_dir == "s3://b/data"
    assert fs.resolve("file:///tmp/x/") == "/tmp/x"
