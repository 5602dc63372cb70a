"""The single Dagster ``Definitions`` of corpusforge (loaded by workspace.yaml)."""

import dagster as dg

from assets.automation import data_job, full_job, full_schedule, new_raw_files_sensor
from assets.curation import CURATION_ASSETS, CURATION_CHECKS
from assets.resources import default_resources

defs = dg.Definitions(
    assets=[*CURATION_ASSETS],
    asset_checks=[*CURATION_CHECKS],
    jobs=[full_job, data_job],
    schedules=[full_schedule],
    sensors=[new_raw_files_sensor],
    resources=default_resources(),
)
