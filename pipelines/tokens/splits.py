"""The train/validation split and the tokenizer training sample, both decided by document-id hashes.

``split_of`` is the one rule that puts a document in ``train`` or ``val``; the tokenizer sample, the
tokenizer's held-out statistics and the token dataset all call it, so a validation document is
never seen while training the tokenizer and lands in exactly one split of the dataset.
A derived document (id ``<source id>#<tag>``, e.g. the bias stage's gender-swapped copies) is split
by its source id, so a copy never sits in the other split from its original.

Both decisions map a keyed BLAKE2b digest of the document id to a number ``u`` in ``[0, 1)``:
a document is in ``val`` when ``u < val_fraction``; it is in the tokenizer sample when its
(differently keyed, seeded) ``u < rate``. The two hashes are independent of each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipelines.hashing import hash_unit

TRAIN = "train"
VAL = "val"
SPLITS = (TRAIN, VAL)


DERIVED_SEP = "#"


def source_id(doc_id: str) -> str:
    """The id a derived document (``<id>#<tag>``) was made from; other ids unchanged."""
    return doc_id.split(DERIVED_SEP, 1)[0]


def split_of(doc_id: str, val_fraction: float) -> str:
    """``"val"`` when the split hash of ``doc_id``'s source id falls under ``val_fraction``, else ``"train"``."""
    if val_fraction <= 0.0:
        return TRAIN
    return VAL if hash_unit(b"corpusforge-split", source_id(doc_id)) < val_fraction else TRAIN


def in_sample(doc_id: str, seed: int, rate: float) -> bool:
    """Whether ``doc_id`` is in the seeded tokenizer-training sample taken at ``rate``."""
    if rate >= 1.0:
        return True
    return hash_unit(f"corpusforge-sample-{seed}".encode(), doc_id) < rate


def sample_rate(total_bytes: int, sample_bytes: int, val_fraction: float) -> float:
    """Sampling rate so that about ``sample_bytes`` of the training-split text is kept.

    ``total_bytes`` is the upstream stage's text size; the validation share is excluded first.
    """
    train_bytes = total_bytes * (1.0 - val_fraction)
    if train_bytes <= 0:
        return 1.0
    return min(1.0, sample_bytes / train_bytes)


def cluster_split_overrides(cluster_rows: Iterable[Mapping], val_fraction: float) -> dict[str, str]:
    """``{doc_id: split of its cluster's survivor}`` for removed duplicates whose own id would land in
    the other split (about ``2 f (1 - f)`` of them, so the mapping stays small).

    Used when a corpus that still holds the duplicates (the curation ablation's raw corpus) is split:
    a copy of a validation document then never sits in the training split.
    """
    out = {}
    for row in cluster_rows:
        doc, cluster = row["doc_id"], row["cluster_id"]
        if doc != cluster and (target := split_of(cluster, val_fraction)) != split_of(doc, val_fraction):
            out[doc] = target
    return out
