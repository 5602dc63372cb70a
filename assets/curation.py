"""Curation assets: each runs one Beam stage job and reports what it kept and removed."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.checks import stage_checks
from assets.config import CleanAssetConfig, IngestAssetConfig, section_values
from assets.reporting import stage_metadata
from assets.resources import BeamRunner, CorpusforgeSettings
from pipelines import clean, ingest


def run_curation_stage(
    context: dg.AssetExecutionContext,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
    section: str,
    asset_config: dg.Config,
    job: Callable[..., Any],
) -> dg.MaterializeResult:
    """Load the effective config, run ``job`` (a ``pipelines.<stage>.run``), return its metadata."""
    values, reuse = section_values(asset_config)
    cfg = settings.load(section, values)
    options = beam.pipeline_options(cfg)
    context.log.info(
        f"running stage {section!r} with runner {beam.spec(cfg.runner).runner} on {cfg.paths.data_dir}"
    )
    result = job(cfg, options, reuse=reuse)
    stats = result.manifest.get("stats", {})
    context.log.info(
        f"{section}: {stats.get('documents_in')} in, {stats.get('documents_out')} kept, {stats.get('removed')} removed"
    )
    return dg.MaterializeResult(
        metadata=stage_metadata(result.version, result.manifest, reused=result.reused)
    )


@dg.asset(
    group_name="ingestion",
    pool="beam",
    description=(
        "Reads the raw corpus (paths.input: JSONL, text, Parquet; .gz/.zst) into Parquet document shards "
        "with stable ids, and quarantines bad records (invalid UTF-8, malformed JSON, missing/empty text, "
        "oversized records, unreadable files) with a reason. Config: `ingest`."
    ),
)
def raw_documents(
    context: dg.AssetExecutionContext,
    config: IngestAssetConfig,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    return run_curation_stage(context, settings, beam, "ingest", config, ingest.run)


@dg.asset(
    deps=[raw_documents],
    group_name="cleaning",
    pool="beam",
    description=(
        "Normalises text, identifies the language (fastText lid.176), applies Gopher quality, Gopher "
        "repetition, C4 and FineWeb rules (CJK-aware) and redacts PII; every removal is in the ledger "
        "with its reason. Config: `clean`."
    ),
)
def clean_documents(
    context: dg.AssetExecutionContext,
    config: CleanAssetConfig,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    return run_curation_stage(context, settings, beam, "clean", config, clean.run)


CURATION_ASSETS = [raw_documents, clean_documents]
CURATION_CHECKS = [
    *stage_checks(raw_documents, ingest.STAGE, None),
    *stage_checks(clean_documents, clean.STAGE, clean.UPSTREAM),
]
