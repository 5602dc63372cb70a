"""Dagster metadata and checks of the deduplication stage."""

from typing import Any

import dagster as dg

from assets.reporting import bar_chart_md
from pipelines import storage
from pipelines.reports import markdown_table
from pipelines.stage import StageResult


def dedup_metadata(result: StageResult) -> dict[str, Any]:
    """Parameters, cluster-size histogram and example clusters of the dedup stage."""
    manifest = result.manifest
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
                **manifest["config"][result.version.stage],
                "bands": lsh.get("bands"),
                "rows": lsh.get("rows"),
                "false_positive_area": lsh.get("fp_area"),
                "false_negative_area": lsh.get("fn_area"),
            }
        ),
        "removed_fraction": dg.MetadataValue.float(float(s.get("removed_fraction", 0.0))),
        "duplicate_clusters": dg.MetadataValue.int(int(s.get("duplicate_clusters", 0))),
        "chain_cut_members": dg.MetadataValue.int(int((s.get("chains") or {}).get("cut_members", 0))),
        "largest_component": dg.MetadataValue.int(int(s.get("largest_component", 0))),
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


def one_survivor_per_cluster(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """Every cluster has exactly one kept document, named by the cluster id, and one per output document.

    Reads the audit the dedup job computed per cluster from its decisions, and the count of
    decisions its writing step did not find a document for (both zero in a sound run).
    """
    manifest = version.manifest()
    audit = manifest["stats"].get("audit")
    docs_out = manifest["documents"]["rows"]
    if audit is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "manifest has no cluster audit; re-run"})
    bad = audit["no_survivor"] + audit["two_survivors"] + audit["unmatched_decisions"]
    return dg.AssetCheckResult(
        passed=bad == 0 and audit["clusters"] == docs_out,
        metadata={
            "clusters": audit["clusters"],
            "documents_out": docs_out,
            "clusters_without_survivor": audit["no_survivor"],
            "clusters_with_two_survivors": audit["two_survivors"],
            "unmatched_decisions": audit["unmatched_decisions"],
        },
    )
