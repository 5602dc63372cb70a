"""Asset checks shared by the curation stages: conservation and shard integrity (blocking)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from assets.resources import CorpusforgeSettings
from pipelines import reports, schemas, storage


def conservation_check(asset: Any, stage: str, upstream: str | None) -> dg.AssetChecksDefinition:
    """Blocking check: every input document is kept or in the ledger (input + added = kept + removed)."""

    @dg.asset_check(asset=asset, name="conservation", blocking=True, description=conservation_check.__doc__)
    def _check(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
        data_dir = settings.load().paths.data_dir
        version = storage.current_version(data_dir, stage)
        up = None
        if upstream is not None:
            up_name = version.manifest()["upstream"][upstream]
            up = storage.StageVersion(storage.stage_root(data_dir, upstream), up_name)
        c = reports.conservation(version, up)
        return dg.AssetCheckResult(
            passed=bool(c["passed"]),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={k: dg.MetadataValue.int(int(v)) for k, v in c.items() if k != "passed"},
            description=f"in {c['documents_in']} + added {c['added']} vs kept {c['documents_out']} + removed {c['removed']}",
        )

    return _check


def shards_check(
    asset: Any, stage: str, kinds: tuple[str, ...] = ("documents", "ledger")
) -> dg.AssetChecksDefinition:
    """Blocking check: every shard exists, is non-empty, matches the schema and the manifest's row count."""
    expected = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER}

    @dg.asset_check(asset=asset, name="shards_valid", blocking=True, description=shards_check.__doc__)
    def _check(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
        version = storage.current_version(settings.load().paths.data_dir, stage)
        manifest = version.manifest()
        problems: list[str] = []
        checked = 0
        for kind in kinds:
            for shard in (manifest.get(kind) or {}).get("shards", []):
                path = version.dir(kind) / shard["path"]
                checked += 1
                problems += _shard_problems(path, shard, expected.get(kind))
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "shards_checked": checked,
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none"),
            },
        )

    return _check


def _shard_problems(path: Any, shard: dict, schema: Any) -> list[str]:
    if not path.is_file():
        return [f"{path.name}: missing"]
    try:
        meta = pq.ParquetFile(path).metadata
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


def stage_checks(asset: Any, stage: str, upstream: str | None) -> list[Callable]:
    return [conservation_check(asset, stage, upstream), shards_check(asset, stage)]
