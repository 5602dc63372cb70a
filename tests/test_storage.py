"""Versioned stage storage: atomic commit, CURRENT pointer, pruning, failure leaves the old version."""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipelines import schemas, storage
from pipelines.beam_stage import SplitWork, process_splits, run_stage
from pipelines.config import OutputConfig


def _docs(n: int, prefix: str = "d") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"text number {i} " * 20, "source": "s", "offset": i, "tags": []}
        for i in range(n)
    ]


class ListWork(SplitWork):
    """Each split's item is its list of rows; fails on the ``fail_at``-th split it processes."""

    schemas = {"documents": schemas.DOCUMENTS}
    calls = 0
    fail_at: int | None = None

    def rows(self, item, stats, **side):
        ListWork.calls += 1
        if ListWork.fail_at is not None and ListWork.calls == ListWork.fail_at:
            raise RuntimeError("boom")
        for row in item:
            yield "documents", row
        stats["rows"] = len(item)


def _splits(rows: list[dict], per_split: int) -> list[tuple[str, list[dict]]]:
    return [(f"{i // per_split:05d}", rows[i : i + per_split]) for i in range(0, len(rows), per_split)]


def _build_writer(rows: list[dict], fail: bool = False, per_split: int = 1000, max_shard_bytes: int = 2048):
    def build(pipeline: beam.Pipeline, version: storage.StageVersion, run) -> None:
        ListWork.calls, ListWork.fail_at = 0, (1 if fail else None)
        process_splits(
            pipeline,
            _splits(rows, per_split),
            str(version.path),
            ListWork(),
            OutputConfig(max_shard_bytes=max_shard_bytes),
            run=run,
        )

    return build


def _run(tmp_path, rows, beam_options, fail=False, keep=2, per_split=1000, build=None):
    return run_stage(
        stage="unit",
        data_dir=str(tmp_path),
        fp="fp",
        config={},
        upstream={},
        output=OutputConfig(keep_versions=keep),
        build=build or _build_writer(rows, fail, per_split),
        options=beam_options,
        kinds=("documents",),
        split_keys=[key for key, _ in _splits(rows, per_split)],
        log=lambda _: None,
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
    with pytest.raises(Exception, match="boom") as failure:
        _run(tmp_path, _docs(7), beam_options, fail=True)
    assert "re-run the stage with the same input and config to resume" in str(failure.value.__notes__)
    current = storage.current_version(tmp_path, "unit")
    assert current.name == good.version.name
    partial = [p for p in (tmp_path / "unit").glob("v-*") if p.name != good.version.name]
    assert len(partial) == 1 and not (partial[0] / storage.SUCCESS).exists()  # kept (invisible) to resume
    _run(tmp_path, _docs(3), beam_options)
    assert len(list((tmp_path / "unit").glob("v-*"))) == 2  # the next commit removed the leftover


def test_a_failed_run_resumes_from_its_finished_splits(tmp_path, beam_options):
    rows = _docs(60)
    clean = _run(tmp_path / "clean", rows, beam_options, per_split=6)

    def fail_at(n):
        inner = _build_writer(rows, per_split=6)

        def build(pipeline, version, run):
            inner(pipeline, version, run)
            ListWork.fail_at = n

        return build

    with pytest.raises(Exception, match="boom"):
        _run(tmp_path / "resumed", rows, beam_options, per_split=6, build=fail_at(5))  # 4 of 10 splits done
    partial = next((tmp_path / "resumed" / "unit").glob("v-*"))
    (partial / "documents" / "part-99999-0000.parquet").write_bytes(b"junk of a split that died")
    logs: list[str] = []
    result = run_stage(
        stage="unit",
        data_dir=str(tmp_path / "resumed"),
        fp="fp",
        config={},
        upstream={},
        output=OutputConfig(),
        build=_build_writer(rows, per_split=6),
        options=beam_options,
        kinds=("documents",),
        split_keys=[f"{i:05d}" for i in range(10)],
        log=logs.append,
    )
    assert result.version.name == partial.name  # the same version, continued
    assert result.manifest["resume"] == {
        "splits": 10,
        "resumed": True,
        "done_before": 4,
        "carried": 0,
        "processed": 6,
    }
    assert ListWork.calls == 6  # only the unfinished splits ran again
    assert any("4 of 10 splits were finished by an earlier run (1 partial files removed)" in m for m in logs)

    def shards(r):
        return [(s["path"], s["rows"], s["sha256"]) for s in r.manifest["documents"]["shards"]]

    assert shards(result) == shards(clean)  # byte-identical to an uninterrupted run
    assert not (result.version.path / "_done").exists()
    assert sorted(p.name for p in result.version.dir("documents").iterdir()) == [s[0] for s in shards(clean)]


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
