"""Curation assets: each runs one Beam stage job and reports what it kept and removed."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.checks import stage_checks
from assets.config import CleanAssetConfig, DedupAssetConfig, IngestAssetConfig, section_values
from assets.reporting import bar_chart_md, stage_metadata
from assets.resources import BeamRunner, CorpusforgeSettings
from pipelines import clean, ingest, storage
from pipelines.dedup import job as dedup_job
from pipelines.reports import markdown_table


def run_curation_stage(
    context: dg.AssetExecutionContext,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
    section: str,
    asset_config: dg.Config,
    job: Callable[..., Any],
    extra_metadata: Callable[[dict], dict] | None = None,
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
    metadata = stage_metadata(result.version, result.manifest, reused=result.reused)
    if extra_metadata is not None:
        metadata.update(extra_metadata(result.manifest))
    return dg.MaterializeResult(metadata=metadata)


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


def dedup_metadata(manifest: dict) -> dict[str, Any]:
    """Parameters, cluster-size histogram and example clusters of the dedup stage."""
    s, lsh = manifest["stats"], manifest.get("lsh", {})
    hist = {int(k): v for k, v in s.get("cluster_size_histogram", {}).items()}
    examples = [
        {
            "cluster": e["cluster_id"][:10],
            "doc": e["doc_id"][:10],
            "kept": "survivor" if e["kept"] else "removed",
            "kind": e["kind"],
            "jaccard": f"{e['similarity']:.3f}",
            "quality": f"{e['quality']:.3f}" if e.get("quality") is not None else "",
            "text": e["text"][:200],
        }
        for e in manifest.get("examples", [])
    ]
    return {
        "parameters": dg.MetadataValue.json(
            {
                **manifest["config"]["dedup"],
                "bands": lsh.get("bands"),
                "rows": lsh.get("rows"),
                "false_positive_area": lsh.get("fp_area"),
                "false_negative_area": lsh.get("fn_area"),
            }
        ),
        "removed_fraction": dg.MetadataValue.float(float(s.get("removed_fraction", 0.0))),
        "duplicate_clusters": dg.MetadataValue.int(int(s.get("duplicate_clusters", 0))),
        "connected_component_rounds": dg.MetadataValue.int(int(s.get("cc_rounds", 0))),
        "cluster_size_histogram": dg.MetadataValue.md(
            bar_chart_md(
                "Clusters by size",
                {str(k): v for k, v in sorted(hist.items())},
                xlabel="clusters",
                horizontal=False,
            )
            + "\n\n"
            + markdown_table([{"size": k, "clusters": v} for k, v in sorted(hist.items())])
        ),
        "example_clusters": dg.MetadataValue.md(
            markdown_table(examples) if examples else "_no duplicate clusters_"
        ),
    }


@dg.asset(
    deps=[clean_documents],
    group_name="deduplication",
    pool="beam",
    description=(
        "Removes exact duplicates (hash of normalised text) and near duplicates (MinHash LSH: word 5-grams, "
        "CJK character n-grams; bands x rows from the target Jaccard; verified pairs; connected components "
        "computed in Beam). The survivor of a cluster is the highest-quality, then longest, then smallest-id "
        "document, for any worker count. Config: `dedup`."
    ),
)
def deduplicated_documents(
    context: dg.AssetExecutionContext,
    config: DedupAssetConfig,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    return run_curation_stage(context, settings, beam, "dedup", config, dedup_job.run, dedup_metadata)


@dg.asset_check(asset=deduplicated_documents, name="one_survivor_per_cluster", blocking=True)
def one_survivor_per_cluster(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
    """Every cluster has exactly one kept document, named by the cluster id, and one per output document.

    Reads the per-cluster audit the dedup job computed over the cluster rows it wrote (a Beam
    CombinePerKey, so no process holds the cluster table).
    """
    manifest = storage.current_version(settings.load().paths.data_dir, dedup_job.STAGE).manifest()
    audit = manifest["stats"].get("audit")
    docs_out = manifest["documents"]["rows"]
    if audit is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "manifest has no cluster audit; re-run"})
    bad = audit["no_survivor"] + audit["two_survivors"] + audit["survivor_not_cluster_id"]
    return dg.AssetCheckResult(
        passed=bad == 0 and audit["clusters"] == docs_out,
        metadata={
            "clusters": audit["clusters"],
            "documents_out": docs_out,
            "clusters_without_survivor": audit["no_survivor"],
            "clusters_with_two_survivors": audit["two_survivors"],
            "survivor_not_cluster_id": audit["survivor_not_cluster_id"],
        },
    )


CURATION_ASSETS = [raw_documents, clean_documents, deduplicated_documents]
CURATION_CHECKS = [
    *stage_checks(raw_documents, ingest.STAGE, None),
    *stage_checks(clean_documents, clean.STAGE, clean.UPSTREAM),
    *stage_checks(deduplicated_documents, dedup_job.STAGE, dedup_job.UPSTREAM),
    one_survivor_per_cluster,
]
