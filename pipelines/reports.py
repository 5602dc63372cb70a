"""Stage statistics computed from committed shard summaries (exact, runner-independent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines import storage


def _prefixed(summary: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in summary.items() if k.startswith(prefix)}


def stage_stats(
    entries: Mapping[str, Any],
    upstream_documents: Mapping[str, Any] | None,
    records_read: int | None = None,
    *,
    redacts_pii: bool = False,
) -> dict[str, Any]:
    """Counts in/out, removals by reason, languages, PII and tags of one stage.

    ``pii`` (redactions by kind) is reported only by the stage that redacts (``redacts_pii``): later
    stages carry the ``pii.*`` signals of their documents but made none of those redactions.

    ``entries`` are this stage's manifest entries (``documents``, ``ledger``); ``upstream_documents``
    the upstream stage's ``documents`` entry, or ``None`` for ingestion, whose input count is
    ``records_read`` (counted by the reader, independently of what was written) when the runner
    reports counters, else documents plus quarantined records.
    """
    docs = entries.get("documents") or {"rows": 0, "bytes": 0, "summary": {}}
    ledger = entries.get("ledger") or {"rows": 0, "bytes": 0, "summary": {}}
    dsum, lsum = docs.get("summary", {}), ledger.get("summary", {})
    removed = {k: int(v) for k, v in sorted(_prefixed(lsum, "reason:").items())}
    removed_bytes = {k: int(v) for k, v in sorted(_prefixed(lsum, "reason_bytes:").items())}
    added = int(sum(v for k, v in _prefixed(dsum, "tag:").items() if k.startswith("added:")))
    if upstream_documents is None:
        docs_in, bytes_in = docs["rows"] + ledger["rows"], docs["bytes"] + ledger["bytes"]
        if records_read is not None:
            docs_in = records_read
    else:
        docs_in, bytes_in = upstream_documents["rows"], upstream_documents["bytes"]
    return {
        "documents_in": int(docs_in),
        "bytes_in": int(bytes_in),
        "documents_out": int(docs["rows"]),
        "bytes_out": int(docs["bytes"]),
        "documents_added": added,
        "removed": int(ledger["rows"]),
        "removed_by_reason": removed,
        "removed_bytes_by_reason": removed_bytes,
        "languages": {k: int(v) for k, v in sorted(_prefixed(dsum, "lang:").items(), key=lambda kv: -kv[1])},
        "pii": {k: int(v) for k, v in sorted(_prefixed(dsum, "pii.").items())} if redacts_pii else {},
        "tags": {k: int(v) for k, v in sorted(_prefixed(dsum, "tag:").items())},
        "shards": len(docs.get("shards", [])),
        "conserved": int(docs_in) + added == int(docs["rows"]) + int(ledger["rows"]),
    }


def conservation(version: storage.StageVersion, upstream: storage.StageVersion | None) -> dict[str, Any]:
    """Recount a committed stage from its shards' row counts: input = kept + removed (- added).

    The input is the upstream version's document count, or for the first stage the records its
    readers counted (``records_read``). When that is unknown (``null``: an older manifest, a job that
    did not report it) the check fails with ``documents_in = -1`` and ``input_known = 0``: the written
    rows are never taken as their own input, which would always balance.
    """
    m = version.manifest()
    entries = {k: m.get(k) for k in ("documents", "ledger")}
    up = upstream.manifest()["documents"] if upstream is not None else None
    records_read = m.get("records_read")
    known = up is not None or records_read is not None
    s = stage_stats(entries, up, records_read)
    return {
        "passed": bool(s["conserved"]) and known,
        "documents_in": s["documents_in"] if known else -1,
        "documents_out": s["documents_out"],
        "removed": s["removed"],
        "added": s["documents_added"],
        "input_known": int(known),
    }


def markdown_table(rows: list[Mapping[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub-markdown table of ``rows`` (used for Dagster metadata and CLI reports)."""
    if not rows:
        return "_none_"
    columns = columns or list(rows[0])
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")
