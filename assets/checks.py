"""Asset check bodies by name: conservation and shard integrity of the curation stages, and the
registry of every check a stage may declare (``Stage.checks`` in assets/graph.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from pipelines import reports, schemas, storage


def conservation(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """Every input document is kept or in the ledger (input + added = kept + removed)."""
    up = None
    if stage.upstream:
        up_stage = stage.upstream[0]
        up = storage.StageVersion(version.root.parent / up_stage, version.manifest()["upstream"][up_stage])
    c = reports.conservation(version, up)
    return dg.AssetCheckResult(
        passed=bool(c["passed"]),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={k: dg.MetadataValue.int(int(v)) for k, v in c.items() if k != "passed"},
        description=f"in {c['documents_in']} + added {c['added']} vs kept {c['documents_out']} + removed {c['removed']}",
    )


def shards_valid(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """Every shard exists, is non-empty, matches the schema and the manifest's row count."""
    expected = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER}
    manifest = version.manifest()
    problems: list[str] = []
    checked = 0
    for kind in ("documents", "ledger"):
        for shard in (manifest.get(kind) or {}).get("shards", []):
            checked += 1
            problems += _shard_problems(version.shard_path(kind, shard), shard, expected.get(kind))
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "shards_checked": checked,
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none"),
        },
    )


def _shard_problems(path: Any, shard: dict, schema: Any) -> list[str]:
    if not path.is_file():
        return [f"{path.name}: missing"]
    try:
        with storage.open_parquet(path) as pf:
            meta = pf.metadata
    except Exception as exc:  # unreadable footer
        return [f"{path.name}: unreadable ({exc})"]
    problems = []
    if meta.num_rows == 0:
        problems.append(f"{path.name}: empty shard")
    if meta.num_rows != shard["rows"]:
        problems.append(f"{path.name}: {meta.num_rows} rows, manifest says {shard['rows']}")
    if schema is not None:
        try:
            schemas.check_schema(meta.schema.to_arrow_schema(), schema, path.name)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


@dataclass(frozen=True)
class Check:
    """A named check body ``fn(stage, materialized version) -> AssetCheckResult``."""

    fn: str  # "module:function"
    blocking: bool = True


# Every check a stage may list in assets/graph.py, by name.
CHECKS: dict[str, Check] = {
    "conservation": Check("assets.checks:conservation"),
    "shards_valid": Check("assets.checks:shards_valid"),
    "one_survivor_per_cluster": Check("assets.curation:one_survivor_per_cluster"),
    "report_complete": Check("assets.bias:report_complete", blocking=False),
    "tokenizer_valid": Check("assets.tokens:tokenizer_valid"),
    "shards_match_manifest": Check("assets.tokens:shards_match_manifest"),
    "splits_disjoint": Check("assets.tokens:splits_disjoint"),
    "perplexity_is_finite": Check("assets.training:perplexity_is_finite", blocking=False),
}
