"""The one place that owns corpusforge's Arrow schemas.

Every stage reads and writes these schemas only:

* ``DOCUMENTS`` — a document at any curation stage (raw, clean, deduplicated, filtered).
  Per-rule scores live in ``signals`` (annotate, then filter), free-form provenance from the
  input record in ``meta`` (JSON text), and markers such as ``cda:gender-swap`` in ``tags``.
* ``LEDGER`` — one row per document removed or quarantined by a stage, with a reason code.
* ``CLUSTERS`` — the deduplication cluster table.
* ``token_schema(dtype, window)`` — packed training windows (Arrow IPC, memory-mappable); defined with
  the rest of the token format in ``training/token_format.py``.
* ``DOC_INDEX`` — maps each packed sequence back to the documents it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from training.token_format import token_schema as token_schema  # the token format's own module

DOCUMENTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # input path relative to the input root
        pa.field("offset", pa.int64(), nullable=False),  # byte offset (text/JSONL) or row index (Parquet)
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        pa.field("quality", pa.float32()),  # scalar quality used e.g. by the dedup survivor rule
        pa.field("signals", pa.map_(pa.string(), pa.float32())),
        pa.field("meta", pa.string()),  # JSON object of extra input fields (url, timestamp, ...)
        pa.field("tags", pa.list_(pa.string())),
    ],
    metadata={"corpusforge.schema": "documents/1"},
)

LEDGER = pa.schema(
    [
        pa.field("doc_id", pa.string()),  # null when a record never became a document (bad JSON, ...)
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # e.g. "gopher_quality:word_count"
        pa.field("detail", pa.string()),  # human-readable: measured value vs threshold, error text
        pa.field("source", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),  # size of the removed text / record
        pa.field("sample", pa.string()),  # first characters of the removed text, for reports
    ],
    metadata={"corpusforge.schema": "ledger/1"},
)

CLUSTERS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),  # id of the cluster's survivor
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "exact" | "near" | "unique"
        pa.field("similarity", pa.float32()),  # estimated Jaccard to the survivor (1.0 for exact)
    ],
    metadata={"corpusforge.schema": "clusters/1"},
)

DOC_INDEX = pa.schema(
    [
        pa.field("sequence", pa.int64(), nullable=False),  # global index of the window in its split
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc_token_start", pa.int64(), nullable=False),  # first token of the doc in this window
        pa.field("window_start", pa.int32(), nullable=False),  # position inside the window
        pa.field("length", pa.int32(), nullable=False),
    ],
    metadata={"corpusforge.schema": "doc-index/1"},
)

SAMPLE_CHARS = 300


def ledger_row(
    *,
    reason: str,
    source: str,
    offset: int,
    doc_id: str | None = None,
    detail: str = "",
    text: str = "",
    nbytes: int | None = None,
    stage: str = "",
) -> dict[str, Any]:
    """Build one ledger row; ``sample`` is the start of ``text``. The ledger writer sets ``stage``."""
    return {
        "doc_id": doc_id,
        "stage": stage,
        "reason": reason,
        "detail": detail,
        "source": source,
        "offset": int(offset),
        "bytes": int(nbytes if nbytes is not None else len(text.encode("utf-8", "replace"))),
        "sample": text[:SAMPLE_CHARS],
    }


def removal_from_document(doc: Mapping[str, Any], reason: str, detail: str = "") -> dict[str, Any]:
    """Ledger row for a document that a stage removes."""
    return ledger_row(
        reason=reason,
        source=doc["source"],
        offset=doc["offset"],
        doc_id=doc["id"],
        detail=detail,
        text=doc["text"],
    )


def _map_items(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return [(str(k), float(v)) for k, v in sorted(value.items())]
    return list(value)


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a table of ``schema``; missing nullable columns become null.

    ``signals`` may be given as a dict; it is stored as an Arrow map sorted by key.
    """
    rows = list(rows)
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_map(field.type):
            values = [_map_items(v) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.Table.from_pydict(columns, schema=schema)


def from_batch(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """Table or batch to row dicts; map columns come back as dicts."""
    rows = batch.to_pylist()
    map_cols = [f.name for f in batch.schema if pa.types.is_map(f.type)]
    for row in rows:
        for name in map_cols:
            if row.get(name) is not None:
                row[name] = dict(row[name])
    return rows


def check_schema(actual: pa.Schema, expected: pa.Schema, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` when ``actual`` lacks or mistypes a column of ``expected``."""
    problems = []
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column {field.name!r}")
        elif not actual.field(idx).type.equals(field.type):
            problems.append(f"column {field.name!r} is {actual.field(idx).type}, expected {field.type}")
    if problems:
        raise ValueError(f"{what}: schema mismatch: " + "; ".join(problems))
