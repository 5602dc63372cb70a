"""Jobs, the schedule and the new-raw-files sensor."""

import hashlib
import json
import os
from typing import Any

import dagster as dg

from assets.graph import DATA_GROUPS, DATA_STAGES
from assets.resources import CorpusforgeSettings
from pipelines.ingest import InputError, list_inputs

full_job = dg.define_asset_job(
    "corpusforge_full",
    selection=dg.AssetSelection.all(),
    description="Every asset: raw corpus to pretrained model and its evaluation.",
    executor_def=dg.in_process_executor,  # each stage parallelises inside (Beam workers, torch threads)
)
data_job = dg.define_asset_job(
    "corpusforge_data",
    selection=dg.AssetSelection.groups(*DATA_GROUPS),
    description="The data part alone: raw corpus to the tokenized, packed dataset.",
    executor_def=dg.in_process_executor,
)

full_schedule = dg.ScheduleDefinition(
    name="corpusforge_full_schedule",
    job=full_job,
    cron_schedule=os.environ.get("CORPUSFORGE_SCHEDULE_CRON", "0 3 * * *"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Runs the full graph (daily at 03:00 by default; CORPUSFORGE_SCHEDULE_CRON changes it). Off until turned on.",
)


def _snapshot(settings: CorpusforgeSettings) -> dict[str, str]:
    """{relative path: change stamp} of every input file (empty when the input path is missing)."""
    cfg = settings.load()
    try:
        root, files = list_inputs(cfg.paths.input, cfg.raw.glob)
    except InputError:
        return {}
    prefix = len(str(root).rstrip("/")) + 1
    return {str(f.path)[prefix:]: f.stamp for f in files}


def new_files(snapshot: dict[str, str], cursor: str | None) -> tuple[list[str], str]:
    """Files not seen before (or changed since), and the next cursor (JSON of path -> stamp seen)."""
    seen: dict[str, Any] = json.loads(cursor) if cursor else {}
    fresh = sorted(p for p, m in snapshot.items() if seen.get(p) != m)
    return fresh, json.dumps({**seen, **{p: snapshot[p] for p in fresh}}, sort_keys=True)


ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=data_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Starts the data job when files in the raw input directory are new or changed: one run per "
        "batch of files, and none while a corpusforge run is in progress (they share the data directory)."
    ),
)
def new_raw_files_sensor(
    context: dg.SensorEvaluationContext, settings: CorpusforgeSettings
) -> dg.SensorResult | dg.SkipReason:
    fresh, cursor = new_files(_snapshot(settings), context.cursor)
    if not fresh:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new raw files"), cursor=cursor)
    busy = [
        r
        for job in (data_job.name, full_job.name)
        for r in context.instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE), limit=1)
    ]
    if busy:  # the cursor stays: these files are picked up by the first tick after that run
        return dg.SkipReason(f"{len(fresh)} new file(s) wait for run {busy[0].dagster_run.run_id}")
    # Unchanged stages of the new run are re-used (same fingerprint), not recomputed.
    run_config = {"ops": {name: {"config": {"reuse_existing": True}} for name in DATA_STAGES}}
    seen = json.loads(cursor)
    batch = hashlib.sha256(json.dumps([[p, seen[p]] for p in fresh]).encode()).hexdigest()[:16]
    request = dg.RunRequest(
        run_key=f"new-files-{batch}",
        run_config=run_config,
        tags={"corpusforge/new_files": str(len(fresh)), "corpusforge/first_new_file": fresh[0][:200]},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
