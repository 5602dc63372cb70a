"""Dagster metadata and checks of the tokenizer and the packed token dataset."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.reporting import bar_chart_md
from pipelines import storage
from pipelines.reports import markdown_table
from pipelines.stage import StageResult
from pipelines.tokens import verify


def tokenizer_metadata(result: StageResult) -> dict:
    """Vocabulary size, sample, and bytes per token / vocabulary share used per held-out language."""
    version, manifest = result.version, result.manifest
    tok, sample = manifest["tokenizer"], manifest["sample"]
    heldout = manifest.get("stats", {}).get("heldout", {})
    rows = [
        {
            "language": lang,
            "documents": s["documents"],
            "bytes": s["bytes"],
            "tokens": s["tokens"],
            "bytes/token": s["bytes_per_token"],
            "vocab share used": f"{100 * s['vocab_share_used']:.1f}%",
        }
        for lang, s in heldout.items()
    ]
    meta: dict[str, Any] = {
        "vocab_size": dg.MetadataValue.int(tok["vocab_size"]),
        "tokenizer_sha256": dg.MetadataValue.text(tok["sha256"]),
        "sample_documents": dg.MetadataValue.int(sample["documents"]),
        "sample_bytes": dg.MetadataValue.int(sample["bytes"]),
        "sample_rate": dg.MetadataValue.float(float(sample["rate"])),
        "heldout": dg.MetadataValue.md(markdown_table(rows) if rows else "_no validation documents_"),
        "path": dg.MetadataValue.path(str(version.path / tok["path"])),
    }
    for lang, s in heldout.items():
        meta[f"bytes_per_token_{lang}"] = dg.MetadataValue.float(float(s["bytes_per_token"] or 0.0))
        meta[f"vocab_share_used_{lang}"] = dg.MetadataValue.float(float(s["vocab_share_used"]))
    return meta


def dataset_metadata(result: StageResult) -> dict:
    """Sequences, tokens, documents and shards per split, dtype, and bytes per token per language."""
    manifest = result.manifest
    splits = manifest["splits"]
    meta: dict[str, Any] = {
        "dtype": dg.MetadataValue.text(manifest["dtype"]),
        "seq_len": dg.MetadataValue.int(int(manifest["seq_len"])),
        "vocab_size": dg.MetadataValue.int(int(manifest["vocab_size"])),
        "splits": dg.MetadataValue.md(
            markdown_table(
                [
                    {
                        "split": name,
                        "sequences": s["sequences"],
                        "tokens": s["tokens"],
                        "documents": s["documents"],
                        "shards": len(s["shards"]),
                    }
                    for name, s in splits.items()
                ]
            )
        ),
    }
    for name, s in splits.items():
        meta[f"{name}_tokens"] = dg.MetadataValue.int(int(s["tokens"]))
        meta[f"{name}_sequences"] = dg.MetadataValue.int(int(s["sequences"]))
        meta[f"{name}_documents"] = dg.MetadataValue.int(int(s["documents"]))
        meta[f"{name}_shards"] = dg.MetadataValue.int(len(s["shards"]))
    langs = manifest.get("stats", {}).get("train", {}).get("languages", {})
    if langs:
        meta["train_tokens_by_language"] = dg.MetadataValue.md(
            bar_chart_md("Training tokens by language", {k: v["tokens"] for k, v in langs.items()})
        )
        meta["train_bytes_per_token"] = dg.MetadataValue.json(
            {k: v["bytes_per_token"] for k, v in langs.items()}
        )
    return meta


def _result(audit: Mapping[str, Any], metadata: dict[str, Any]) -> dg.AssetCheckResult:
    problems = audit["problems"]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            **metadata,
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none"),
        },
        description=problems[0] if problems else None,
    )


def tokenizer_valid(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """tokenizer.json matches its sha256, loads, has the special ids and round-trips en/zh samples."""
    audit = verify.audit_tokenizer(version.path)
    return _result(audit, {"vocab_size": dg.MetadataValue.int(int(audit.get("vocab_size", 0)))})


def shards_match_manifest(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """Every shard exists, matches its sha256, and the re-counted rows, tokens and EOTs equal the manifest."""
    audit = verify.audit_shards(version.path)
    meta = {
        f"{split}_{k}": dg.MetadataValue.int(v)
        for split, got in audit["measured"].items()
        for k, v in got.items()
    }
    return _result(audit, meta)


def splits_disjoint(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """No document id is in both the train and the val document index; each index covers its documents."""
    audit = verify.audit_splits(version.path)
    return _result(audit, {f"{k}_documents": dg.MetadataValue.int(v) for k, v in audit["documents"].items()})
