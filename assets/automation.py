"""Jobs, the schedule and the new-raw-files sensor."""

import json
import os

import dagster as dg

from assets.resources import CorpusforgeSettings
from pipelines.ingest import InputError, list_inputs

DATA_GROUPS = ("ingestion", "cleaning", "deduplication", "filtering", "tokenization")
REUSE_ASSETS = (
    "raw_documents",
    "clean_documents",
    "deduplicated_documents",
    "filtered_documents",
    "tokenizer",
    "token_dataset",
)

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


def _snapshot(settings: CorpusforgeSettings) -> dict[str, int]:
    """{relative path: mtime_ns} of every input file (empty when the input path is missing)."""
    cfg = settings.load()
    try:
        root, files = list_inputs(cfg.paths.input, cfg.ingest.glob)
    except InputError:
        return {}
    return {f.relative_to(root).as_posix(): f.stat().st_mtime_ns for f in files}


def new_files(snapshot: dict[str, int], cursor: str | None) -> tuple[list[str], str]:
    """Files not seen before (or changed since), and the next cursor (JSON of path -> mtime seen)."""
    seen: dict[str, int] = json.loads(cursor) if cursor else {}
    fresh = sorted(p for p, m in snapshot.items() if seen.get(p) != m)
    return fresh, json.dumps({**seen, **{p: snapshot[p] for p in fresh}}, sort_keys=True)


@dg.sensor(
    job=data_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts the data job once for every new or changed file in the raw input directory.",
)
def new_raw_files_sensor(
    context: dg.SensorEvaluationContext, settings: CorpusforgeSettings
) -> dg.SensorResult:
    fresh, cursor = new_files(_snapshot(settings), context.cursor)
    if not fresh:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new raw files"), cursor=cursor)
    # Later runs of a burst find earlier ones' outputs: unchanged stages are re-used, not recomputed.
    run_config = {"ops": {name: {"config": {"reuse_existing": True}} for name in REUSE_ASSETS}}
    requests = [
        dg.RunRequest(run_key=f"{path}@{mtime}", run_config=run_config, tags={"corpusforge/new_file": path})
        for path, mtime in ((p, json.loads(cursor)[p]) for p in fresh)
    ]
    return dg.SensorResult(run_requests=requests, cursor=cursor)
