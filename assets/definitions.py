"""The single Dagster ``Definitions`` of corpusforge (loaded by workspace.yaml)."""

import dagster as dg

from assets.automation import data_job, full_job, full_schedule, new_raw_files_sensor
from assets.bias import BIAS_ASSETS, BIAS_CHECKS
from assets.curation import CURATION_ASSETS, CURATION_CHECKS
from assets.resources import default_resources
from assets.tokens import TOKEN_ASSETS, TOKEN_CHECKS
from assets.training import TRAINING_ASSETS, TRAINING_CHECKS

defs = dg.Definitions(
    assets=[*CURATION_ASSETS, *BIAS_ASSETS, *TOKEN_ASSETS, *TRAINING_ASSETS],
    asset_checks=[*CURATION_CHECKS, *BIAS_CHECKS, *TOKEN_CHECKS, *TRAINING_CHECKS],
    jobs=[full_job, data_job],
    schedules=[full_schedule],
    sensors=[new_raw_files_sensor],
    resources=default_resources(),
)
