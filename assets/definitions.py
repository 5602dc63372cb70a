"""The single Dagster ``Definitions`` of corpusforge (loaded by workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from assets.curation import CURATION_ASSETS, CURATION_CHECKS
from assets.resources import default_resources

defs = dg.Definitions(
    assets=[*CURATION_ASSETS],
    asset_checks=[*CURATION_CHECKS],
    resources=default_resources(),
)
