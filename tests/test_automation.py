"""Schedule and sensor evaluation."""

from __future__ import annotations

import os

import dagster as dg

from assets.automation import full_schedule, new_files, new_raw_files_sensor
from assets.resources import CorpusforgeSettings


def _evaluate(settings, cursor=None):
    with dg.build_sensor_context(cursor=cursor, resources={"settings": settings}) as ctx:
        return new_raw_files_sensor(ctx), ctx


def test_new_files_produce_one_run_request_each_and_never_repeat(tmp_path):
    inp = tmp_path / "raw"
    inp.mkdir()
    settings = CorpusforgeSettings(input_path=str(inp), data_dir=str(tmp_path / "data"))
    result, _ = _evaluate(settings)
    assert not result.run_requests and result.skip_reason is not None

    (inp / "a.jsonl").write_text('{"text": "a"}\n')
    (inp / "b.jsonl").write_text('{"text": "b"}\n')
    result, _ = _evaluate(settings)
    assert sorted(r.tags["corpusforge/new_file"] for r in result.run_requests) == ["a.jsonl", "b.jsonl"]
    assert len({r.run_key for r in result.run_requests}) == 2
    cursor = result.cursor

    again, _ = _evaluate(settings, cursor)
    assert not again.run_requests  # nothing new: no repeats

    (inp / "c.jsonl").write_text('{"text": "c"}\n')
    st = os.stat(inp / "a.jsonl")
    os.utime(inp / "a.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed file counts once more
    third, _ = _evaluate(settings, cursor)
    assert sorted(r.tags["corpusforge/new_file"] for r in third.run_requests) == ["a.jsonl", "c.jsonl"]
    assert all(r.run_config["ops"]["raw_documents"]["config"]["reuse_existing"] for r in third.run_requests)


def test_cursor_logic_is_pure():
    fresh, cursor = new_files({"x": 1, "y": 2}, None)
    assert fresh == ["x", "y"]
    fresh, cursor2 = new_files({"x": 1, "y": 2, "z": 3}, cursor)
    assert fresh == ["z"]
    assert new_files({"x": 1, "y": 2, "z": 3}, cursor2)[0] == []


def test_schedule_targets_the_full_job_and_is_off_by_default():
    assert full_schedule.job_name == "corpusforge_full"
    assert full_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert full_schedule.cron_schedule == "0 3 * * *"
