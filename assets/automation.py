"""Jobs, the schedule and the new-raw-files sensor."""

import hashlib
import json
import os
from typing import Any

import dagster as dg

from assets.graph import DATA_GROUPS, DATA_STAGES, STAGES
from assets.resources import CorpusforgeSettings
from pipelines.ingest import InputError, group_members, list_inputs

FIRST_STAGE = next(s.name for s in STAGES if not s.upstream)  # reads the raw input

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


def _snapshot(settings: CorpusforgeSettings) -> dict[str, list[Any]]:
    """{relative path: [size, change stamp]} of every input file (empty when the input path is missing)."""
    cfg = settings.load()
    try:
        root, files = list_inputs(cfg.paths.input, cfg.raw.glob)
    except InputError:
        return {}
    prefix = len(str(root).rstrip("/")) + 1
    return {str(f.path)[prefix:]: [f.size, f.stamp] for f in files}


def snapshot_digest(snapshot: dict[str, list[Any]]) -> str:
    """The sensor's whole cursor: a hash of the listing (constant size however many files)."""
    return hashlib.sha256(json.dumps(sorted(snapshot.items())).encode()).hexdigest()


def ingested_files(settings: CorpusforgeSettings) -> dict[str, list[Any]]:
    """{path: [size, change stamp]} of the files the first stage's current version read ({} if none)."""
    from pipelines import carry, storage

    cfg = settings.load()
    try:
        version = storage.current_version(cfg.paths.data_dir, FIRST_STAGE)
    except storage.StageNotFoundError:
        return {}
    out = {}
    for split in carry.read_splits(version).values():
        for member in group_members(split["input"]):
            source, size, stamp = json.loads(member)[:3]
            out[source] = [size, stamp]
    return out


def batch_changes(
    snapshot: dict[str, list[Any]], ingested: dict[str, list[Any]]
) -> tuple[list[str], list[str]]:
    """(files new or changed since they were ingested, files ingested but gone), sorted."""
    fresh = sorted(p for p, stamp in snapshot.items() if ingested.get(p) != stamp)
    return fresh, sorted(p for p in ingested if p not in snapshot)


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
    snapshot = _snapshot(settings)
    cursor = snapshot_digest(snapshot)
    if cursor == context.cursor:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new raw files"), cursor=cursor)
    fresh, removed = batch_changes(snapshot, ingested_files(settings))
    if not fresh and not removed:  # the listing changed back, or a manual run ingested it already
        return dg.SensorResult(skip_reason=dg.SkipReason("every raw file is ingested"), cursor=cursor)
    busy = [
        r
        for job in (data_job.name, full_job.name)
        for r in context.instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE), limit=1)
    ]
    if busy:  # the cursor stays: these files are picked up by the first tick after that run
        return dg.SkipReason(f"{len(fresh)} new file(s) wait for run {busy[0].dagster_run.run_id}")
    # The run ingests only this batch (unchanged files are carried) and re-uses unchanged stages.
    run_config = {"ops": {name: {"config": {"reuse_existing": True}} for name in DATA_STAGES}}
    request = dg.RunRequest(
        run_key=f"batch-{cursor[:16]}",
        run_config=run_config,
        tags={
            "corpusforge/new_files": str(len(fresh)),
            "corpusforge/removed_files": str(len(removed)),
            "corpusforge/first_new_file": (fresh or removed)[0][:200],
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
