"""Token dataset stage (``tokens``): a Beam job from ``filtered`` documents to packed Arrow IPC shards.

Pipeline::

    Create(work units) | Reshuffle
      | EncodeShard     one upstream row group -> a token segment per split (batched encode_batch + EOT)
      | GroupByKey      by split: only small segment descriptors travel, never tokens
      | PlanShards      segments in upstream order -> one task per output shard (global offsets)
      | Reshuffle
      | PackShard       read the task's token ranges -> (n, seq_len + 1) windows + document index
      | WriteShard      Arrow IPC shard + Parquet doc index + sidecar (atomic renames)

See :mod:`pipelines.tokens.packing` for the packing rule: every token is kept exactly once, only the
last window of each split is padded (``pad_id``; the trainer must ignore it in the loss), and the
output does not depend on the number of workers. The driver then writes ``manifest.json`` (format
``corpusforge-tokens/1``) through ``storage.commit``, keeping the ``CURRENT``/``_SUCCESS`` protocol.

Threads: each encoder calls ``encode_batch``, which runs on the tokenizers (Rayon) thread pool.
With several Beam worker processes the pool would oversubscribe the cores, so every worker gets
``cores // workers`` threads (``TOKENIZERS_PARALLELISM=false`` when that is 1); variables already
set in the environment win.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines import carry, fs, storage
from pipelines.beam_stage import counter, for_input_size, run_stage, shard_checksums, shard_key, shard_splits
from pipelines.config import (
    LOCAL_RUNNERS,
    ConfigError,
    DatasetConfig,
    fingerprint,
    to_dict,
)
from pipelines.stage import StageJob, StageResult
from pipelines.tokens.bpe import EOT_ID, MASK_ID, PAD_ID, load_tokenizer, token_dtype
from pipelines.tokens.encode import encode_shard
from pipelines.tokens.packing import ShardTask, plan_shards
from pipelines.tokens.shards import SIDECAR, PackedShard, collect_split, pack_shard, write_packed_shard
from pipelines.tokens.splits import SPLITS, TRAIN, VAL, cluster_split_overrides
from training.token_format import FORMAT

log = logging.getLogger(__name__)

WORK_DIR = "_work"


def encode_threads(options: PipelineOptions) -> int:
    """Tokenizer threads per Beam worker: all cores in one process, else cores / workers (>= 1)."""
    cores = os.cpu_count() or 1
    runner = options.view_as(StandardOptions).runner or "FnApiRunner"
    if runner not in LOCAL_RUNNERS:
        return 1
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return cores
    workers = direct.direct_num_workers or cores
    return max(1, cores // max(1, workers))


def configure_threads(threads: int) -> None:
    """Set the tokenizers thread pool for this process unless the environment already does."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")
    if threads > 1:
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))


def work_units(shards: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """``(key, path, row group)`` for every row group of the upstream ``(key, path)`` shards.

    Keys sort in upstream order (``<shard key>-<row group>``), which is the packing order.
    """
    units: list[tuple[str, str, int]] = []
    for key, path in shards:
        with storage.open_parquet(path) as pf:
            groups = pf.metadata.num_row_groups
        units.extend((f"{key}-{rg:05d}", path, rg) for rg in range(groups))
    return units


class EncodeShardFn(beam.DoFn):
    """``(key, path, row group)`` -> ``(split, Segment)`` for each split with documents in it."""

    def __init__(
        self,
        tokenizer_file: str,
        work_dir: str,
        cfg: DatasetConfig,
        dtype: str,
        threads: int = 1,
        split_overrides: dict[str, str] | None = None,
    ):
        self.tokenizer_file, self.work_dir, self.cfg = tokenizer_file, work_dir, cfg
        self.dtype, self.threads, self.split_overrides = dtype, threads, split_overrides
        self.tok: Any = None
        self.docs = {s: counter(f"tokens.documents.{s}") for s in SPLITS}
        self.tokens = {s: counter(f"tokens.tokens.{s}") for s in SPLITS}

    def setup(self) -> None:
        configure_threads(self.threads)
        self.tok = load_tokenizer(self.tokenizer_file)

    def process(self, element: tuple[str, str, int]) -> Iterator[tuple[str, Any]]:
        if self.tok is None:
            self.setup()
        key, path, row_group = element
        for seg in encode_shard(
            path,
            key,
            self.tok,
            work_dir=self.work_dir,
            dtype=self.dtype,
            val_fraction=self.cfg.val_fraction,
            batch_docs=self.cfg.encode_batch,
            eot_id=EOT_ID,
            row_groups=[row_group],
            split_overrides=self.split_overrides,
        ):
            self.docs[seg.split].inc(seg.documents)
            self.tokens[seg.split].inc(seg.tokens)
            yield seg.split, seg


class PackShardFn(beam.DoFn):
    def __init__(self, window: int, dtype: str) -> None:
        self.window, self.dtype = window, dtype

    def process(self, task: ShardTask) -> Iterator[PackedShard]:
        yield pack_shard(task, self.window, PAD_ID, self.dtype)


class WriteShardFn(beam.DoFn):
    """Write a packed shard under the version directory; emits its sidecar info."""

    def __init__(self, root: str, dtype: str) -> None:
        self.root, self.dtype = root, dtype
        self.sequences = counter("tokens.sequences")

    def process(self, shard: PackedShard) -> Iterator[dict[str, Any]]:
        info = write_packed_shard(self.root, shard, self.dtype, EOT_ID)
        self.sequences.inc(info["sequences"])
        yield info


class TokenizePack(beam.PTransform):
    """:func:`work_units` elements -> :class:`PackedShard` elements (windows + document index)."""

    def __init__(
        self, *encode_args: Any, starts: Mapping[str, tuple[int, int]] | None = None, **encode_kwargs: Any
    ) -> None:
        """Arguments as :class:`EncodeShardFn`'s (tokenizer file, work dir, dataset config, dtype, ...);
        ``starts``: per split, the (sequence, shard index) an appended batch starts at."""
        super().__init__()
        self.encode = EncodeShardFn(*encode_args, **encode_kwargs)
        self.starts = dict(starts or {})

    def expand(self, shards: Any) -> Any:
        window, per_shard = self.encode.cfg.seq_len + 1, self.encode.cfg.sequences_per_shard
        starts = self.starts
        return (
            shards
            | "Encode" >> beam.ParDo(self.encode)
            | "BySplit" >> beam.GroupByKey()
            | "Plan"
            >> beam.FlatMap(lambda kv: plan_shards(kv[1], window, per_shard, *starts.get(kv[0], (0, 0))))
            | "SpreadShards" >> beam.Reshuffle()
            | "Pack" >> beam.ParDo(PackShardFn(window, self.encode.dtype))
        )


def build_pipeline(
    pipeline: beam.Pipeline,
    splits: list[tuple[str, str]],
    root: str,
    tokenizer_file: str,
    cfg: DatasetConfig,
    dtype: str,
    threads: int,
    split_overrides: dict[str, str] | None = None,
    starts: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    _ = (
        pipeline
        | "WorkUnits" >> beam.Create(work_units(splits))
        | "Distribute" >> beam.Reshuffle()
        | "TokenizePack"
        >> TokenizePack(
            tokenizer_file, f"{root}/{WORK_DIR}", cfg, dtype, threads, split_overrides, starts=starts
        )
        | "Write" >> beam.ParDo(WriteShardFn(root, dtype))
    )


def summarize(root: Any, previous: storage.StageVersion | None = None) -> dict[str, Any]:
    """Fold the shard sidecars into the manifest's ``splits``, ``doc_index`` and ``stats`` entries;
    with ``previous`` (an append), its shards come first, listed where they are."""
    before = previous.manifest() if previous is not None else {}
    splits: dict[str, Any] = {}
    doc_index: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for split in (TRAIN, VAL):
        old, old_index, old_stats = _earlier(before, previous, split)
        infos = collect_split(root, split, first_index=len(old["shards"]))
        summary: dict[str, Any] = (
            infos[0]["split_summary"] if infos else {"tokens": 0, "documents": 0, "sequences": 0}
        )
        sequences = sum(i["sequences"] for i in infos)
        tokens = sum(i["tokens"] for i in infos)
        ended = sum(i["documents_ending"] for i in infos)
        if (sequences, tokens, ended) != (summary["sequences"], summary["tokens"], summary["documents"]):
            raise RuntimeError(
                f"{split}: shards hold {sequences} sequences / {tokens} tokens / {ended} EOTs, the plan "
                f"expected {summary['sequences']} / {summary['tokens']} / {summary['documents']}"
            )
        new_shards = [{"path": i["path"], "sequences": i["sequences"], "sha256": i["sha256"]} for i in infos]
        if new_shards and old["shards"]:
            new_shards[0]["batch_start"] = True  # the windows before it end a padded batch
        splits[split] = {
            "sequences": old["sequences"] + sequences,
            "tokens": old["tokens"] + tokens,
            "documents": old["documents"] + int(summary["documents"]),
            "shards": old["shards"] + new_shards,
        }
        doc_index[split] = {
            "rows": old_index["rows"] + sum(i["index_rows"] for i in infos),
            "files": old_index["files"]
            + [
                {"path": i["index_path"], "rows": i["index_rows"], "sha256": i["index_sha256"]} for i in infos
            ],
        }
        langs = {k: dict(v) for k, v in old_stats.get("languages", {}).items()}
        for lang, v in summary.get("languages", {}).items():
            acc = langs.setdefault(lang, {"documents": 0, "bytes": 0, "tokens": 0})
            for k in ("documents", "bytes", "tokens"):
                acc[k] = int(acc.get(k, 0)) + int(v.get(k, 0))
        stats[split] = {
            "bytes": int(old_stats.get("bytes", 0)) + int(summary.get("bytes", 0)),
            "padding_tokens": int(old_stats.get("padding_tokens", 0)) + int(summary.get("padding", 0)),
            "upstream_segments": int(old_stats.get("upstream_segments", 0)) + int(summary.get("segments", 0)),
            "languages": {
                k: {**v, "bytes_per_token": round(v["bytes"] / v["tokens"], 4) if v["tokens"] else None}
                for k, v in sorted(langs.items())
            },
        }
        for p in (root / split).glob(f"part-*{SIDECAR}"):
            fs.remove(p)
    fs.rmtree(root / WORK_DIR)
    return {"splits": splits, "doc_index": doc_index, "stats": stats}


def _earlier(
    manifest: Mapping[str, Any], previous: storage.StageVersion | None, split: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A previous version's entries of ``split`` with every file pointing at where it lives."""
    if previous is None:
        return {"sequences": 0, "tokens": 0, "documents": 0, "shards": []}, {"rows": 0, "files": []}, {}
    entry = dict(manifest["splits"].get(split) or {"sequences": 0, "tokens": 0, "documents": 0, "shards": []})
    entry["shards"] = [{**s, "version": s.get("version", previous.name)} for s in entry.get("shards", [])]
    index = dict((manifest.get("doc_index") or {}).get(split) or {"rows": 0, "files": []})
    index["files"] = [{**f, "version": f.get("version", previous.name)} for f in index.get("files", [])]
    return entry, index, dict((manifest.get("stats") or {}).get(split) or {})


def append_plan(
    previous: storage.StageVersion | None, inputs: Mapping[str, str]
) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
    """The upstream splits an incremental run must add to ``previous`` and where each token split
    continues (sequence, shard index); None when ``previous`` read a split that is gone or changed
    (the dataset is rebuilt)."""
    if previous is None:
        return None
    manifest = previous.manifest()
    read = manifest.get("inputs") or {}
    if any(inputs.get(key) != sha for key, sha in read.items()):
        return None
    new = [key for key in inputs if key not in read]
    starts = {
        split: (int(entry["sequences"]), len(entry["shards"])) for split, entry in manifest["splits"].items()
    }
    return new, starts


def run(job: StageJob) -> StageResult:
    """Tokenize and pack ``upstream[0]``'s documents with the tokenizer of ``upstream[1]``.

    With ``params["split_by_cluster"]`` (a source that still holds duplicates, as the curation
    ablation's raw corpus does), ``upstream[2]`` is the dedup stage: a document it removed as a
    duplicate goes to its survivor's split, so copies of validation documents stay out of ``train``.
    """
    cfg, options, data_dir = job.cfg, job.options, job.data_dir
    split_by_cluster = bool(job.params.get("split_by_cluster", False))
    upstream = job.upstream_version(0)
    source_stage = upstream.stage
    tok_version = job.upstream_version(1)
    tok_manifest = tok_version.manifest()["tokenizer"]
    tok_file = tok_version.path / tok_manifest["path"]
    if storage.sha256_file(tok_file) != tok_manifest["sha256"]:
        raise ValueError(f"{tok_file}: sha256 differs from its manifest; re-materialize the tokenizer asset")
    trained_on = tok_version.manifest().get("upstream", {}).get(source_stage)
    if trained_on not in (None, upstream.name):
        log.warning(
            "the tokenizer was trained on %s %s but %s is now current: re-materialize the tokenizer "
            "asset for a vocabulary fitted to the current corpus",
            source_stage,
            trained_on,
            upstream.name,
        )
    vocab = int(tok_manifest["vocab_size"])
    dtype = token_dtype(vocab)
    section = to_dict(cfg.tokens)
    overrides, dedup_name = None, None
    if split_by_cluster:
        dedup = job.upstream_version(2)
        rows = storage.iter_stage_rows(dedup, "clusters", columns=["doc_id", "cluster_id"])
        overrides, dedup_name = cluster_split_overrides(rows, cfg.tokens.val_fraction), dedup.name
    fp = fingerprint(job.name, section, upstream.name, tok_version.name, dedup_name)
    splits = shard_splits(upstream)
    inputs = shard_checksums(upstream)
    # Incremental: the same tokenizer and config, and every upstream shard the current version read is
    # still there unchanged: tokenize only the new shards and append their token shards.
    carry_key = fingerprint(job.name, section, tok_version.name, dedup_name)
    previous = None
    if cfg.output.incremental and not split_by_cluster:
        previous = carry.previous(data_dir, job.name, carry_key)
    appended = append_plan(previous, inputs)
    starts: dict[str, tuple[int, int]] = {}
    if appended is not None:
        new_keys, starts = appended
        splits = [(k, p) for k, p in splits if k in set(new_keys)]
        job.log(f"{job.name}: appending {len(splits):,} new upstream shards to {previous.name}")  # type: ignore[union-attr]
    else:
        previous = None
    todo = {k for k, _ in splits}
    work = sum(
        int(s.get("bytes") or 0) for s in upstream.manifest()["documents"]["shards"] if shard_key(s) in todo
    )
    options = for_input_size(options, cfg.runner, work)
    threads = encode_threads(options)
    tok_val_fraction = tok_version.manifest().get("config", {}).get("val_fraction")
    if tok_val_fraction is not None and tok_val_fraction != cfg.tokens.val_fraction:
        raise ConfigError(
            f"the tokenizer was trained with tokens.val_fraction={tok_val_fraction} but the dataset asks for "
            f"{cfg.tokens.val_fraction}: validation documents could have been seen by the tokenizer. Set "
            "tokens.val_fraction in the config file (both assets read it) and re-materialize the tokenizer."
        )

    def finalize(
        version: storage.StageVersion, counters: dict[str, int], entries: dict, split_stats: list
    ) -> dict[str, Any]:
        folded = summarize(version.path, previous)
        return {
            "inputs": dict(inputs),
            "carry_key": carry_key,
            "carried_from": carry.carried_from(folded["splits"]),
            "appended": previous is not None,
            "format": FORMAT,
            "seq_len": cfg.tokens.seq_len,
            "dtype": dtype,
            "vocab_size": vocab,
            "tokenizer_sha256": tok_manifest["sha256"],
            "eot_id": EOT_ID,
            "pad_id": PAD_ID,
            "mask_id": MASK_ID,
            "splits": folded["splits"],
            "doc_index": folded["doc_index"],
            "stats": folded["stats"],
            "packing": {
                "window": cfg.tokens.seq_len + 1,
                "order": "upstream shard order, then row order; one EOT after every document",
                "padding": "only the last window of each split (and of each appended batch: a shard "
                "with batch_start follows one), with pad_id; ignore pad_id in the loss",
                "split_rule": "blake2b(source doc id) < val_fraction -> val"
                + ("; removed duplicates follow their dedup survivor" if split_by_cluster else ""),
                "split_overrides": len(overrides) if overrides is not None else None,
                "tokenizer_val_fraction": tok_val_fraction,
            },
            "tokenizer": {"version": tok_version.name, "path": str(tok_file)},
        }

    upstreams = {source_stage: upstream.name, tok_version.stage: tok_version.name}
    if dedup_name is not None:
        upstreams[job.upstream[2]] = dedup_name
    return run_stage(
        stage=job.name,
        data_dir=data_dir,
        fp=fp,
        config=section,
        upstream=upstreams,
        output=cfg.output,
        build=lambda p, v, run: build_pipeline(
            p, splits, str(v.path), str(tok_file), cfg.tokens, dtype, threads, overrides, starts
        ),
        options=options,
        kinds=(),
        finalize=finalize,
        reuse=job.reuse,
    )
