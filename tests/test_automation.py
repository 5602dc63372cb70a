"""Schedule and sensor evaluation."""

from __future__ import annotations

import os

import dagster as dg

from assets.automation import batch_changes, full_schedule, new_raw_files_sensor, snapshot_digest
from assets.resources import CorpusforgeSettings


def _evaluate(settings, cursor=None, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(cursor=cursor, resources={"settings": settings}, instance=instance) as ctx:
        return new_raw_files_sensor(ctx), ctx


def test_new_files_start_one_run_per_batch_and_never_repeat(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from assets.graph import run_stage

    inp = tmp_path / "raw"
    inp.mkdir()
    settings = CorpusforgeSettings(input_path=str(inp), data_dir=str(tmp_path / "data"))
    result, _ = _evaluate(settings)
    assert not result.run_requests and result.skip_reason is not None

    (inp / "a.jsonl").write_text('{"text": "a"}\n')
    (inp / "b.jsonl").write_text('{"text": "b"}\n')
    result, _ = _evaluate(settings)
    assert len(result.run_requests) == 1  # a burst of files is one run (one batch)
    request = result.run_requests[0]
    assert (
        request.tags["corpusforge/new_files"] == "2"
        and request.tags["corpusforge/first_new_file"] == "a.jsonl"
    )
    cursor = result.cursor
    assert len(cursor) == 64  # a digest, not the list of files

    again, _ = _evaluate(settings, cursor)
    assert not again.run_requests  # nothing new: no repeats

    # the batch is ingested; then one file is added and one changed: the next batch is those two
    run_stage(
        "raw", settings.load(), PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])
    )
    (inp / "c.jsonl").write_text('{"text": "c"}\n')
    st = os.stat(inp / "a.jsonl")
    os.utime(inp / "a.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third, _ = _evaluate(settings, cursor)
    assert len(third.run_requests) == 1 and third.run_requests[0].tags["corpusforge/new_files"] == "2"
    assert third.run_requests[0].run_key != request.run_key
    assert third.run_requests[0].run_config["ops"]["raw"]["config"]["reuse_existing"]
    (inp / "b.jsonl").unlink()
    fourth, _ = _evaluate(settings, third.cursor)
    assert fourth.run_requests[0].tags["corpusforge/removed_files"] == "1"


def test_new_files_wait_while_a_run_is_in_progress(tmp_path):
    from assets.automation import data_job

    inp = tmp_path / "raw"
    inp.mkdir()
    (inp / "a.jsonl").write_text('{"text": "a"}\n')
    settings = CorpusforgeSettings(input_path=str(inp), data_dir=str(tmp_path / "data"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(dg.DagsterRun(job_name=data_job.name, run_id="r1", status=dg.DagsterRunStatus.STARTED))
    waiting, _ = _evaluate(settings, instance=instance)
    assert isinstance(waiting, dg.SkipReason) and "wait for run r1" in waiting.skip_message
    later, _ = _evaluate(settings, None, dg.DagsterInstance.ephemeral())  # cursor was not advanced
    assert len(later.run_requests) == 1


def test_batch_logic_is_pure():
    ingested = {"x": [1, "s1"], "y": [2, "s2"]}
    assert batch_changes({"x": [1, "s1"], "y": [2, "s2"]}, ingested) == ([], [])
    assert batch_changes({"x": [1, "s1"], "y": [3, "s3"], "z": [4, "s4"]}, ingested) == (["y", "z"], [])
    assert batch_changes({"x": [1, "s1"]}, ingested) == ([], ["y"])
    assert snapshot_digest({"x": [1, "s1"]}) == snapshot_digest({"x": [1, "s1"]})
    assert snapshot_digest({"x": [1, "s1"]}) != snapshot_digest({"x": [1, "s2"]})


def test_schedule_targets_the_full_job_and_is_off_by_default():
    assert full_schedule.job_name == "corpusforge_full"
    assert full_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert full_schedule.cron_schedule == "0 3 * * *"
