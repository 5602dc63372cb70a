"""Tokenization assets: the byte-level BPE tokenizer and the packed token dataset, with blocking checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.config import DatasetAssetConfig, TokenizerAssetConfig, section_values
from assets.reporting import bar_chart_md
from assets.resources import BeamRunner, CorpusforgeSettings
from pipelines import storage
from pipelines.reports import markdown_table
from pipelines.tokens import dataset, tokenizer_stage, verify


def tokenizer_metadata(version: storage.StageVersion, manifest: Mapping[str, Any], reused: bool) -> dict:
    """Vocabulary size, sample, and bytes per token / vocabulary share used per held-out language."""
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
        "version": dg.MetadataValue.text(version.name),
        "reused_existing_output": dg.MetadataValue.bool(reused),
    }
    for lang, s in heldout.items():
        meta[f"bytes_per_token_{lang}"] = dg.MetadataValue.float(float(s["bytes_per_token"] or 0.0))
        meta[f"vocab_share_used_{lang}"] = dg.MetadataValue.float(float(s["vocab_share_used"]))
    return meta


def dataset_metadata(version: storage.StageVersion, manifest: Mapping[str, Any], reused: bool) -> dict:
    """Sequences, tokens, documents and shards per split, dtype, and bytes per token per language."""
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
        "path": dg.MetadataValue.path(str(version.path)),
        "version": dg.MetadataValue.text(version.name),
        "reused_existing_output": dg.MetadataValue.bool(reused),
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


@dg.asset(
    deps=[dg.AssetKey("filtered_documents")],
    group_name="tokenization",
    description=(
        "Byte-level BPE tokenizer (NFC, ByteLevel without prefix space; <|endoftext|>=0, <|pad|>=1, "
        "<|mask|>=2) trained with `tokenizers` on a streamed, seeded id-hash sample of ~sample_bytes of "
        "training-split text. Reports bytes per token and vocabulary share used on held-out documents "
        "per language. Config: `tokenizer`."
    ),
)
def tokenizer(
    context: dg.AssetExecutionContext, config: TokenizerAssetConfig, settings: CorpusforgeSettings
) -> dg.MaterializeResult:
    values, reuse = section_values(config)
    cfg = settings.load("tokenizer", values)
    result = tokenizer_stage.run(cfg, reuse=reuse)
    m = result.manifest
    context.log.info(
        f"tokenizer: vocab {m['tokenizer']['vocab_size']} from {m['sample']['documents']} sampled documents "
        f"({m['sample']['bytes']} bytes)"
    )
    return dg.MaterializeResult(metadata=tokenizer_metadata(result.version, m, result.reused))


@dg.asset(
    deps=[tokenizer],
    group_name="tokenization",
    pool="beam",
    description=(
        "Beam job: filtered documents -> train/val split by id hash -> batched encode + EOT -> packed "
        "windows of seq_len + 1 tokens in Arrow IPC shards (uint16/uint32) with a Parquet document index. "
        "Only the last window of a split is padded (pad_id; ignore it in the loss). Config: `dataset`."
    ),
)
def token_dataset(
    context: dg.AssetExecutionContext,
    config: DatasetAssetConfig,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    values, reuse = section_values(config)
    cfg = settings.load("dataset", values)
    options = beam.pipeline_options(cfg)
    context.log.info(f"packing tokens with runner {beam.spec(cfg.runner).runner} into {cfg.paths.data_dir}")
    result = dataset.run(cfg, options, reuse=reuse)
    splits = result.manifest["splits"]
    context.log.info(
        ", ".join(f"{k}: {v['sequences']} sequences / {v['tokens']} tokens" for k, v in splits.items())
    )
    return dg.MaterializeResult(metadata=dataset_metadata(result.version, result.manifest, result.reused))


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


@dg.asset_check(asset=tokenizer, name="tokenizer_valid", blocking=True)
def tokenizer_valid(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
    """tokenizer.json matches its sha256, loads, has the special ids and round-trips en/zh samples."""
    version = storage.current_version(settings.load().paths.data_dir, tokenizer_stage.STAGE)
    audit = verify.audit_tokenizer(version.path)
    return _result(audit, {"vocab_size": dg.MetadataValue.int(int(audit.get("vocab_size", 0)))})


@dg.asset_check(asset=token_dataset, name="shards_match_manifest", blocking=True)
def shards_match_manifest(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
    """Every shard exists, matches its sha256, and the re-counted rows, tokens and EOTs equal the manifest."""
    version = storage.current_version(settings.load().paths.data_dir, dataset.STAGE)
    audit = verify.audit_shards(version.path)
    meta = {
        f"{split}_{k}": dg.MetadataValue.int(v)
        for split, got in audit["measured"].items()
        for k, v in got.items()
    }
    return _result(audit, meta)


@dg.asset_check(asset=token_dataset, name="splits_disjoint", blocking=True)
def splits_disjoint(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
    """No document id is in both the train and the val document index; each index covers its documents."""
    version = storage.current_version(settings.load().paths.data_dir, dataset.STAGE)
    audit = verify.audit_splits(version.path)
    return _result(audit, {f"{k}_documents": dg.MetadataValue.int(v) for k, v in audit["documents"].items()})


TOKEN_ASSETS = [tokenizer, token_dataset]
TOKEN_CHECKS = [tokenizer_valid, shards_match_manifest, splits_disjoint]
