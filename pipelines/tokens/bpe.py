"""Byte-level BPE tokenizer (HuggingFace ``tokenizers``): construction, training, loading, statistics.

Pipeline: NFC normalizer -> ByteLevel pre-tokenizer (GPT-2 regex, ``add_prefix_space=False``) ->
BPE over the 256 byte symbols -> ByteLevel decoder. No prefix space is added, so a document's
leading spaces and newlines survive and ``decode(encode(text)) == NFC(text)`` holds exactly for
any text (every byte is in the initial alphabet, so nothing is ever unknown).

Special tokens come first: ``<|endoftext|>`` = 0 (document separator), ``<|pad|>`` = 1 (fills the
end of the very last packed window only; the trainer must ignore it in the loss), ``<|mask|>`` = 2
(masked-LM objective). :func:`load_tokenizer` turns on ``encode_special_tokens`` so that a
document that literally contains ``<|endoftext|>`` is encoded as ordinary text and can never fake a
document boundary (that flag is not stored in ``tokenizer.json``; other loaders must set it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

EOT, PAD, MASK = "<|endoftext|>", "<|pad|>", "<|mask|>"
SPECIAL_TOKENS = [EOT, PAD, MASK]
EOT_ID, PAD_ID, MASK_ID = 0, 1, 2
LANG_BUCKETS = ("en", "zh", "other")


def new_tokenizer() -> Tokenizer:
    """An untrained tokenizer with this project's normalizer, pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def new_trainer(vocab_size: int, min_frequency: int) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def train_bpe(texts: Iterable[str | list[str]], vocab_size: int, min_frequency: int) -> Tokenizer:
    """Train on an iterator of texts (or batches of texts) with ``train_from_iterator``; streaming."""
    tok = new_tokenizer()
    tok.train_from_iterator(texts, trainer=new_trainer(vocab_size, min_frequency))
    check_special_ids(tok)
    tok.encode_special_tokens = True
    return tok


def check_special_ids(tok: Tokenizer) -> None:
    """Raise ``ValueError`` unless the special tokens have ids 0, 1, 2."""
    for token, want in zip(SPECIAL_TOKENS, (EOT_ID, PAD_ID, MASK_ID), strict=True):
        got = tok.token_to_id(token)
        if got != want:
            raise ValueError(f"special token {token!r} has id {got}, expected {want}")


def load_tokenizer(path: Any) -> Tokenizer:
    """Load ``tokenizer.json`` for encoding documents (special-token text encoded as plain text)."""
    from pipelines import fs

    with fs.open_read(path) as fh:
        tok = Tokenizer.from_str(fh.read().decode("utf-8"))
    check_special_ids(tok)
    tok.encode_special_tokens = True
    return tok


def token_dtype(vocab_size: int) -> str:
    """``uint16`` when every id fits in 16 bits, else ``uint32``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def lang_bucket(lang: str | None) -> str:
    """``en``, ``zh`` (any ``zh*`` code) or ``other`` for a document's ``lang`` value."""
    if not lang:
        return "other"
    lang = lang.lower()
    if lang == "en" or lang.startswith("en-"):
        return "en"
    if lang.startswith("zh"):
        return "zh"
    return "other"


def encode_texts(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts`` from one batched call (``encode_batch_fast`` skips offsets when present)."""
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    return [e.ids for e in encode(texts, add_special_tokens=False)]


def heldout_stats(tok: Tokenizer, docs: Iterable[tuple[str, str | None]], batch: int = 256) -> dict[str, Any]:
    """Bytes per token and share of the vocabulary used on held-out ``(text, lang)`` documents.

    Reported per language bucket (en, zh, other) and overall; buckets without documents are omitted.
    """
    vocab = tok.get_vocab_size()
    counts = {b: {"documents": 0, "bytes": 0, "tokens": 0} for b in (*LANG_BUCKETS, "all")}
    used = {b: np.zeros(vocab, dtype=bool) for b in (*LANG_BUCKETS, "all")}
    for chunk in _chunks(docs, batch):
        ids = encode_texts(tok, [text for text, _ in chunk])
        for (text, lang), doc_ids in zip(chunk, ids, strict=True):
            arr = np.asarray(doc_ids, dtype=np.int64)
            for b in (lang_bucket(lang), "all"):
                c = counts[b]
                c["documents"] += 1
                c["bytes"] += len(text.encode("utf-8"))
                c["tokens"] += len(doc_ids)
                used[b][arr] = True
    out: dict[str, Any] = {}
    for b, c in counts.items():
        if not c["documents"]:
            continue
        out[b] = {
            **c,
            "bytes_per_token": round(c["bytes"] / c["tokens"], 4) if c["tokens"] else None,
            "vocab_used": int(used[b].sum()),
            "vocab_share_used": round(float(used[b].sum()) / vocab, 4),
        }
    return out


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf
