"""Versioned stage storage: atomic commit, CURRENT pointer, pruning, failure leaves the old version."""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipelines import schemas, storage
from pipelines.beam_stage import run_stage
from pipelines.config import OutputConfig


def _docs(n: int, prefix: str = "d") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"text number {i} " * 20, "source": "s", "offset": i, "tags": []}
        for i in range(n)
    ]


def _build_writer(rows: list[dict], fail: bool = False):
    from pipelines.beam_stage import WriteShardsFn

    def build(pipeline: beam.Pipeline, version: storage.StageVersion) -> None:
        def maybe_fail(x):
            if fail:
                raise RuntimeError("boom")
            return x

        (
            pipeline
            | beam.Create([("00000", r) for r in rows])
            | beam.Map(maybe_fail)
            | beam.ParDo(
                WriteShardsFn(
                    str(version.dir("documents")), schemas.DOCUMENTS, OutputConfig(max_shard_bytes=2048)
                )
            )
        )

    return build


def _run(tmp_path, rows, beam_options, fail=False, keep=2):
    return run_stage(
        stage="unit",
        data_dir=str(tmp_path),
        fp="fp",
        config={},
        upstream={},
        output=OutputConfig(keep_versions=keep),
        build=_build_writer(rows, fail),
        options=beam_options,
        kinds=("documents",),
    )


def test_shards_are_size_bounded_and_counted(tmp_path, beam_options):
    result = _run(tmp_path, _docs(40), beam_options)
    shards = result.manifest["documents"]["shards"]
    assert len(shards) > 3  # 40 x ~300 bytes over 2 KiB shards
    assert sum(s["rows"] for s in shards) == 40
    assert all(s["bytes"] < 2048 + 400 for s in shards)
    assert [r["id"] for r in storage.iter_stage_rows(result.version)] == [f"d{i}" for i in range(40)]
    for s in shards:
        assert storage.sha256_file(result.version.dir("documents") / s["path"]) == s["sha256"]
    assert not list(result.version.dir("documents").glob("*.tmp-*"))  # no temporary files left
    assert not list(result.version.dir("documents").glob(f"*{storage.SIDECAR}"))


def test_failed_run_keeps_the_previous_version_current(tmp_path, beam_options):
    good = _run(tmp_path, _docs(5), beam_options)
    with pytest.raises(Exception, match="boom"):
        _run(tmp_path, _docs(7), beam_options, fail=True)
    current = storage.current_version(tmp_path, "unit")
    assert current.name == good.version.name
    assert [p.name for p in (tmp_path / "unit").glob("v-*")] == [good.version.name]  # partial version removed


def test_prune_keeps_the_newest_versions(tmp_path, beam_options):
    names = [_run(tmp_path, _docs(3), beam_options, keep=2).version.name for _ in range(4)]
    left = sorted(p.name for p in (tmp_path / "unit").glob("v-*"))
    assert left == sorted(names[-2:])
    assert storage.current_version(tmp_path, "unit").name == names[-1]


def test_prune_never_removes_a_version_a_downstream_stage_was_built_from(tmp_path, beam_options):
    first = _run(tmp_path, _docs(3), beam_options, keep=1).version
    down = storage.new_version(tmp_path, "down", "fp")
    storage.commit(down, config={}, upstream={"unit": first.name}, entries={})
    newer = [_run(tmp_path, _docs(3), beam_options, keep=1).version.name for _ in range(2)]
    left = sorted(p.name for p in (tmp_path / "unit").glob("v-*"))
    assert left == sorted([first.name, newer[-1]])  # the one "down" names survives keep=1
    assert storage.referenced_versions(tmp_path / "unit") == {first.name}


def test_missing_or_incomplete_stage_is_a_clear_error(tmp_path, beam_options):
    with pytest.raises(storage.StageNotFoundError, match="materialize the 'raw' asset first"):
        storage.current_version(tmp_path, "raw")
    result = _run(tmp_path, _docs(2), beam_options)
    (result.version.path / storage.SUCCESS).unlink()
    with pytest.raises(storage.StageNotFoundError, match="not a complete version"):
        storage.current_version(tmp_path, "unit")


def test_interleaved_splits_never_overwrite_shards(tmp_path, beam_options):
    rows = [(f"{i % 2:05d}", r) for i, r in enumerate(_docs(12))]  # splits alternate: worst case

    def build(pipeline, version):
        from pipelines.beam_stage import WriteShardsFn

        (
            pipeline
            | beam.Create(rows)
            | beam.ParDo(
                WriteShardsFn(
                    str(version.dir("documents")), schemas.DOCUMENTS, OutputConfig(max_shard_bytes=1 << 20)
                )
            )
        )

    result = run_stage(
        stage="unit",
        data_dir=str(tmp_path),
        fp="fp",
        config={},
        upstream={},
        output=OutputConfig(),
        build=build,
        options=beam_options,
        kinds=("documents",),
    )
    assert result.manifest["documents"]["rows"] == 12
    assert sorted(r["id"] for r in storage.iter_stage_rows(result.version)) == sorted(
        f"d{i}" for i in range(12)
    )
