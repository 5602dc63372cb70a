"""Tokenizer stage: train byte-level BPE on a streamed sample of the curated documents.

Output (stage ``tokenizer``): ``<version>/tokenizer.json`` (written atomically) and a manifest with
its sha256, the vocabulary size, the sample (rate, documents, bytes) and held-out statistics
(bytes per token and vocabulary share used, per language, on validation-split documents).

The sampling rate is ``sample_bytes / (upstream bytes x (1 - val_fraction))`` (capped at 1), so
about ``tokenizer.sample_bytes`` of training-split text is used; validation documents are excluded
by the same split rule the token dataset applies (``tokens.val_fraction``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines import storage
from pipelines.config import fingerprint, to_dict
from pipelines.stage import StageJob, StageResult
from pipelines.tokens.bpe import EOT_ID, MASK_ID, PAD_ID, SPECIAL_TOKENS, heldout_stats, train_bpe
from pipelines.tokens.sample import DocumentSample
from pipelines.tokens.splits import sample_rate

log = logging.getLogger(__name__)


TOKENIZER_FILE = "tokenizer.json"
HELDOUT_MAX_BYTES = 16 * 1024 * 1024  # validation text encoded for the held-out statistics


def tokenizer_path(version: storage.StageVersion) -> str:
    return str(version.path / TOKENIZER_FILE)


def run(job: StageJob) -> StageResult:
    """Train the tokenizer on the job's upstream documents into a new version.

    Incremental (``output.incremental``): a current tokenizer trained with the same config and code
    is kept when the corpus grows, so new batches are tokenized with the vocabulary the existing token
    shards use; retraining is explicit (``corpusforge run --full`` or ``output.incremental: false``)."""
    from pipelines import carry

    cfg = job.cfg
    upstream = job.upstream_version(0)
    section = {"tokenizer": to_dict(cfg.tokenizer), "val_fraction": cfg.tokens.val_fraction}
    fp = fingerprint(job.name, section, upstream.name)
    carry_key = fingerprint(job.name, section)
    current = carry.previous(job.data_dir, job.name, carry_key) if cfg.output.incremental else None
    if current is not None:
        trained_on = current.manifest().get("upstream", {}).get(upstream.stage)
        if trained_on != upstream.name:
            job.log(
                f"{job.name}: keeping {current.name} (trained on {upstream.stage} {trained_on}); "
                "retrain with --full or output.incremental: false"
            )
        return StageResult(current, current.manifest(), reused=True)
    keep = cfg.output.keep_versions
    with storage.transaction(job.data_dir, job.name, fp, reuse=job.reuse, keep_versions=keep) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, reused=True)
        up_docs = upstream.manifest().get("documents") or {"bytes": 0, "rows": 0}
        t = cfg.tokenizer
        sample = DocumentSample(
            paths=upstream.shard_paths("documents"),
            seed=t.seed,
            rate=sample_rate(int(up_docs["bytes"]), t.sample_bytes, cfg.tokens.val_fraction),
            val_fraction=cfg.tokens.val_fraction,
            max_bytes=t.sample_bytes,
            heldout_bytes=HELDOUT_MAX_BYTES,
        )
        start = time.perf_counter()
        tok = train_bpe(sample.batches(), t.vocab_size, t.min_frequency)
        train_s = time.perf_counter() - start
        if sample.documents == 0:
            raise ValueError(
                f"the tokenizer sample of {upstream.path} is empty ({sample.documents_seen} documents "
                f"read, rate {sample.rate:.4g}); the upstream stage has no training-split text"
            )
        if tok.get_vocab_size() < cfg.tokenizer.vocab_size:
            log.warning(
                "tokenizer vocabulary is %d, below the requested %d: the sample holds no more pairs "
                "occurring %d+ times (a small corpus); the model uses %d",
                tok.get_vocab_size(),
                cfg.tokenizer.vocab_size,
                cfg.tokenizer.min_frequency,
                tok.get_vocab_size(),
            )
        version = tx.version
        path = version.path / TOKENIZER_FILE
        storage.atomic_write_bytes(path, tok.to_str(pretty=True).encode("utf-8"))
        start = time.perf_counter()
        stats = heldout_stats(tok, sample.heldout)
        extra: dict[str, Any] = {
            "tokenizer": {
                "path": TOKENIZER_FILE,
                "sha256": storage.sha256_file(path),
                "vocab_size": tok.get_vocab_size(),
                "requested_vocab_size": cfg.tokenizer.vocab_size,
                "special_tokens": {tok_: i for i, tok_ in enumerate(SPECIAL_TOKENS)},
                "eot_id": EOT_ID,
                "pad_id": PAD_ID,
                "mask_id": MASK_ID,
            },
            "sample": {
                "rate": sample.rate,
                "documents": sample.documents,
                "bytes": sample.bytes,
                "documents_read": sample.documents_seen,
                "capped": sample.capped,
                "upstream_bytes": int(up_docs["bytes"]),
            },
            "stats": {
                "heldout": stats,
                "heldout_documents": len(sample.heldout),
                "train_seconds": round(train_s, 3),
                "stats_seconds": round(time.perf_counter() - start, 3),
            },
        }
        extra["carry_key"] = carry_key
        manifest = tx.commit(config=section, upstream={upstream.stage: upstream.name}, extra=extra)
    log.info(
        "tokenizer %s: vocab %d from %d sampled documents",
        version.name,
        tok.get_vocab_size(),
        sample.documents,
    )
    return StageResult(version, manifest)
