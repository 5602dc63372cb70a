"""The stage graph, declared once.

Every stage has one name: its Dagster asset key, its directory under ``paths.data_dir`` and its
config section (when it has settings of its own). Assets, asset checks, jobs, the sensor's re-use
list, the CLI's stage list and report, the bias report's lineage and the graph in the docs are all
generated from :data:`STAGES`. This module imports neither Dagster nor Beam: run functions, metadata
builders and checks are named as ``module:attribute`` and imported when used.

Adding a stage: write ``run(job: pipelines.stage.StageJob) -> StageResult`` in its own module and
add one :class:`Stage` below (see docs/architecture.md for a worked example).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["beam", "local", "process"]  # Beam job / in-process Python / launches a subprocess
DATA_GROUPS = ("ingestion", "cleaning", "deduplication", "filtering", "tokenization")
GROUPS = (*DATA_GROUPS, "training")


@dataclass(frozen=True)
class Stage:
    """One stage of the graph."""

    name: str  # asset key = data directory = config section
    group: str  # Dagster asset group (the data job runs the DATA_GROUPS)
    run: str  # "module:function" taking a StageJob and returning a StageResult
    description: str
    upstream: tuple[str, ...] = ()  # stages read, in the order the run function expects
    kind: Kind = "beam"
    section: str | None = None  # config section for the launchpad form; default: ``name`` if it exists
    checks: tuple[str, ...] = ()  # names in assets.checks.CHECKS (blocking unless listed as warnings)
    metadata: str | None = None  # "module:function" (StageResult -> extra Dagster metadata)
    params: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = field(default_factory=dict)

    def run_function(self) -> Callable[..., Any]:
        return load(self.run)

    def job_params(self) -> Mapping[str, Any]:
        return self.params() if callable(self.params) else self.params

    def job(self, cfg: Any, options: Any = None, *, reuse: bool = False, **fields: Any) -> Any:
        """The ``StageJob`` of one run of this stage (``fields``: ``log``, ``launch``)."""
        from pipelines.stage import StageJob

        return StageJob(
            name=self.name,
            upstream=self.upstream,
            cfg=cfg,
            options=options,
            reuse=reuse,
            params=self.job_params(),
            **fields,
        )

    @property
    def in_data_job(self) -> bool:
        return self.group in DATA_GROUPS


def load(ref: str) -> Any:
    """Import ``module:attribute``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _bias_report_params() -> dict[str, Any]:
    """The curation chain ending at the bias report's input, and the bias stage's input and output."""
    measured = STAGE_BY_NAME["bias_report"].upstream[0]
    return {
        "lineage": lineage(measured),
        "representation": (("before", STAGE_BY_NAME[measured].upstream[0]), ("after", measured)),
    }


CURATION_CHECKS = ("conservation", "shards_valid")

STAGES: tuple[Stage, ...] = (
    Stage(
        "raw",
        group="ingestion",
        run="pipelines.ingest:run",
        checks=CURATION_CHECKS,
        description=(
            "Reads the raw corpus (paths.input: JSONL, text, Parquet; .gz/.zst) into Parquet document "
            "shards with stable ids, and quarantines bad records (invalid UTF-8, malformed JSON, "
            "missing/empty text, oversized records, unreadable files) with a reason. Config: `raw`."
        ),
    ),
    Stage(
        "clean",
        group="cleaning",
        run="pipelines.clean:run",
        upstream=("raw",),
        checks=CURATION_CHECKS,
        description=(
            "Normalises text, identifies the language (fastText lid.176), applies the configured "
            "cleaning rules (Gopher quality and repetition, C4, FineWeb; CJK-aware; plug-ins) and "
            "redacts PII; every removal is in the ledger with its reason. Config: `clean`."
        ),
    ),
    Stage(
        "dedup",
        group="deduplication",
        run="pipelines.dedup.job:run",
        upstream=("clean",),
        checks=(*CURATION_CHECKS, "one_survivor_per_cluster"),
        metadata="assets.curation:dedup_metadata",
        description=(
            "Removes exact duplicates (hash of normalised text) and near duplicates (MinHash LSH: word "
            "5-grams, CJK character n-grams; bands x rows from the target Jaccard; verified pairs; "
            "connected components computed in Beam). The survivor of a cluster is the highest-quality, "
            "then longest, then smallest-id document, for any worker count. Config: `dedup`."
        ),
    ),
    Stage(
        "filtered",
        group="filtering",
        run="pipelines.bias.job:run",
        upstream=("dedup",),
        checks=CURATION_CHECKS,
        metadata="assets.bias:filter_metadata",
        description=(
            "Lexical toxicity score per document (LDNOOBW en/zh/... with category weights and "
            "allowlists; weighted flagged terms per 1,000 words, CJK characters counting as words). "
            "Policy `document` drops documents above `doc_threshold`; `lines` also drops heavy lines. "
            "Records `toxicity.*` and `identity.<axis>` signals, optionally adds gender-swapped (CDA) "
            "copies of English documents and caps any source's share of characters by deterministic "
            "down-sampling. Every removal is in the ledger with its reason. Config: `filtered`."
        ),
    ),
    Stage(
        "bias_report",
        group="filtering",
        run="pipelines.bias.report:run",
        upstream=("filtered",),
        checks=("report_complete",),
        metadata="assets.card:report_metadata",  # the data card plus the dataset card
        params=_bias_report_params,
        description=(
            "Data card: representation (pronouns, gendered nouns, identity axes; en and zh) before and "
            "after the bias stage, identity/flagged-term co-occurrence, and filter disparity: for every "
            "curation stage and removal rule, the removal rate of documents mentioning each identity "
            "axis vs documents mentioning none, with a two-proportion z score."
        ),
    ),
    Stage(
        "tokenizer",
        group="tokenization",
        run="pipelines.tokens.tokenizer_stage:run",
        upstream=("filtered",),
        kind="local",
        checks=("tokenizer_valid",),
        metadata="assets.tokens:tokenizer_metadata",
        description=(
            "Byte-level BPE tokenizer (NFC, ByteLevel without prefix space; <|endoftext|>=0, "
            "<|pad|>=1, <|mask|>=2) trained with `tokenizers` on a streamed, seeded id-hash sample of "
            "~sample_bytes of training-split text. Reports bytes per token and vocabulary share used on "
            "held-out documents per language. Config: `tokenizer`."
        ),
    ),
    Stage(
        "tokens",
        group="tokenization",
        run="pipelines.tokens.dataset:run",
        upstream=("filtered", "tokenizer"),
        checks=("shards_match_manifest", "splits_disjoint"),
        metadata="assets.card:dataset_metadata",  # dataset metadata plus the dataset card
        description=(
            "Filtered documents -> train/val split by id hash -> batched encode + EOT -> packed windows "
            "of seq_len + 1 tokens in Arrow IPC shards (uint16/uint32) with a Parquet document index. "
            "Only the last window of a split is padded (pad_id; ignore it in the loss). Config: `tokens`."
        ),
    ),
    Stage(
        "model",
        group="training",
        run="training.stages:train",
        upstream=("tokens", "tokenizer"),
        kind="process",
        metadata="assets.training:model_metadata",
        description=(
            "Pretrains a decoder-only Transformer (RoPE, RMSNorm, SwiGLU, SDPA attention; presets "
            "tiny..124m; clm or mlm) on the token dataset: AdamW, warmup + cosine, bf16 on CUDA, exact "
            "resume from checkpoints (safetensors). GPU when present, CPU otherwise; torchrun when "
            "nproc_per_node > 1. Progress streams into the run through Dagster Pipes. Config: `model`."
        ),
    ),
    Stage(
        "evaluation",
        group="training",
        run="training.stages:evaluate",
        upstream=("model", "tokens"),
        kind="process",
        section="",
        checks=("perplexity_is_finite",),
        metadata="assets.training:evaluation_metadata",
        description=(
            "Validation loss and perplexity of the pretrained model over the whole validation split, "
            "plus greedy and top-k samples."
        ),
    ),
    Stage(
        "ablation_tokens",
        group="training",
        run="pipelines.tokens.dataset:run",
        upstream=("raw", "tokenizer", "dedup"),
        section="tokens",
        params={"split_by_cluster": True},
        metadata="assets.tokens:dataset_metadata",
        description=(
            "The raw corpus tokenized and packed like `tokens` (same tokenizer, same split rule; raw "
            "copies of a dedup survivor follow its split), for the curation ablation. Config: `tokens`."
        ),
    ),
    Stage(
        "ablation",
        group="training",
        run="training.stages:ablation",
        upstream=("tokens", "ablation_tokens", "tokenizer"),
        kind="process",
        section="model",
        metadata="assets.card:ablation_metadata",
        description=(
            "Data-quality proof: trains the same model for the same number of tokens on the raw corpus "
            "and on the curated corpus (both tokenized with the curated tokenizer, same split by "
            "document id), `model.ablation_seeds` seeds each, and reports held-out loss and perplexity "
            "(mean ± spread) of every model on the same neutral set (the raw corpus's validation "
            "split, which no filter saw) and on the curated validation split. Config: `model`."
        ),
    ),
)

STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(STAGE_BY_NAME)
DATA_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.in_data_job)


def stage(name: str) -> Stage:
    try:
        return STAGE_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(NAMES)}") from None


def lineage(last: str) -> tuple[tuple[str, str | None, bool], ...]:
    """``(stage, first upstream, measured)`` from ``last`` back to the first stage, following each
    stage's first upstream; every stage but the first is measured (its filter disparity)."""
    chain: list[tuple[str, str | None, bool]] = []
    name: str | None = last
    while name is not None:
        up = STAGE_BY_NAME[name].upstream
        chain.append((name, up[0] if up else None, bool(up)))
        name = up[0] if up else None
    return tuple(chain)


def mermaid() -> str:
    """The graph as a Mermaid block (README and docs/architecture.md embed it; a test keeps them equal)."""
    lines = ["```mermaid", "graph LR"]
    for s in STAGES:
        lines += [f"  {up} --> {s.name}" for up in s.upstream]
    lines.append("```")
    return "\n".join(lines)


def run_stage(name: str, cfg: Any, options: Any = None, *, reuse: bool = False, **job_fields: Any) -> Any:
    """Run one stage outside Dagster (tests, scripts): builds its ``StageJob`` from the table."""
    spec = stage(name)
    return spec.run_function()(spec.job(cfg, options, reuse=reuse, **job_fields))
