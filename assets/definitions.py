"""The single Dagster ``Definitions`` of corpusforge (loaded by workspace.yaml)."""

import dagster as dg

from assets.automation import data_job, full_job, full_schedule, new_raw_files_sensor
from assets.resources import default_resources
from assets.stage_assets import ASSET_CHECKS, ASSETS

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[full_job, data_job],
    schedules=[full_schedule],
    sensors=[new_raw_files_sensor],
    resources=default_resources(),
)
