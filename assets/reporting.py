"""Turn committed stage manifests into Dagster metadata: counts, markdown tables, charts, samples."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import dagster as dg

from pipelines import storage
from pipelines.reports import markdown_table


def bar_chart_md(title: str, data: Mapping[str, float], *, xlabel: str = "", horizontal: bool = True) -> str:
    """A bar chart as an inline PNG inside markdown (Dagster has no native image metadata)."""
    if not data:
        return f"_{title}: no data_"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = list(map(str, data)), [float(v) for v in data.values()]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(labels) + 1.2) if horizontal else (7, 3.5))
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color="#4c72b0")
        ax.set_xlabel(xlabel)
    else:
        ax.bar(labels, values, color="#4c72b0")
        ax.set_ylabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def line_chart_md(
    title: str, series: Mapping[str, tuple[list[float], list[float]]], *, xlabel: str, ylabel: str
) -> str:
    """Line chart(s) as an inline PNG inside markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def removal_samples(
    version: storage.StageVersion, per_reason: int = 2, chars: int = 160
) -> dict[str, list[dict]]:
    """The first few ledger rows per reason (streamed; stops reading once every reason has enough)."""
    reasons = set(version.manifest().get("ledger", {}).get("summary", {}))
    wanted = {r.split(":", 1)[1] for r in reasons if r.startswith("reason:")}
    out: dict[str, list[dict]] = {}
    for row in storage.iter_stage_rows(
        version, "ledger", columns=["reason", "source", "offset", "detail", "sample"]
    ):
        bucket = out.setdefault(row["reason"], [])
        if len(bucket) < per_reason:
            bucket.append({**row, "sample": (row.get("sample") or "")[:chars]})
        if wanted and all(len(out.get(r, [])) >= per_reason for r in wanted):
            break
    return dict(sorted(out.items()))


def samples_markdown(samples: Mapping[str, list[dict]]) -> str:
    rows = [
        {
            "reason": reason,
            "source": f"{s['source']}@{s['offset']}",
            "detail": s.get("detail") or "",
            "sample": s["sample"],
        }
        for reason, items in samples.items()
        for s in items
    ]
    return markdown_table(rows, ["reason", "source", "detail", "sample"])


def stage_metadata(
    version: storage.StageVersion, manifest: Mapping[str, Any], *, reused: bool = False
) -> dict[str, Any]:
    """Metadata shown for a curation stage: counts, removals by reason, languages, PII, samples."""
    s = manifest.get("stats", {})
    removed = s.get("removed_by_reason", {})
    rb = s.get("removed_bytes_by_reason", {})
    n_in = max(1, s.get("documents_in", 0))
    removal_rows = [
        {"reason": r, "documents": n, "share of input": f"{100 * n / n_in:.2f}%", "bytes": rb.get(r, 0)}
        for r, n in sorted(removed.items(), key=lambda kv: -kv[1])
    ]
    langs = s.get("languages", {})
    meta: dict[str, Any] = {
        "documents_in": dg.MetadataValue.int(s.get("documents_in", 0)),
        "documents_out": dg.MetadataValue.int(s.get("documents_out", 0)),
        "removed": dg.MetadataValue.int(s.get("removed", 0)),
        "bytes_in": dg.MetadataValue.int(s.get("bytes_in", 0)),
        "bytes_out": dg.MetadataValue.int(s.get("bytes_out", 0)),
        "shards": dg.MetadataValue.int(s.get("shards", 0)),
        "conserved": dg.MetadataValue.bool(bool(s.get("conserved"))),
        "removals_by_reason": dg.MetadataValue.md(
            markdown_table(removal_rows, ["reason", "documents", "share of input", "bytes"])
        ),
        "version": dg.MetadataValue.text(version.name),
        "path": dg.MetadataValue.path(str(version.path)),
        "reused_existing_output": dg.MetadataValue.bool(reused),
    }
    work = manifest.get("resume") or {}
    if work:  # what this materialization processed, carried from earlier versions, resumed
        meta["splits_processed"] = dg.MetadataValue.int(int(work.get("processed", 0)))
        meta["splits_carried"] = dg.MetadataValue.int(int(work.get("carried", 0)))
        meta["splits_done_before_resume"] = dg.MetadataValue.int(int(work.get("done_before", 0)))
    if batch := manifest.get("batch"):
        meta["batch"] = dg.MetadataValue.int(int(batch.get("number", 0)))
        meta["batch_files"] = dg.MetadataValue.md(
            markdown_table(
                [
                    {
                        "new files": batch.get("new_files", 0),
                        "changed files": batch.get("changed_files", 0),
                        "removed files": batch.get("removed_files", 0),
                        "documents read": batch.get("documents", 0),
                        "quarantined": batch.get("quarantined", 0),
                    }
                ],
                ["new files", "changed files", "removed files", "documents read", "quarantined"],
            )
        )
    if langs and set(langs) != {"und"}:
        total = max(1, sum(langs.values()))
        meta["languages"] = dg.MetadataValue.md(
            markdown_table(
                [
                    {"language": k, "documents": v, "share": f"{100 * v / total:.1f}%"}
                    for k, v in langs.items()
                ]
            )
        )
    if s.get("pii"):
        meta["pii_redactions"] = dg.MetadataValue.json(s["pii"])
    if removed:
        meta["removals_chart"] = dg.MetadataValue.md(
            bar_chart_md("Removed documents by reason", dict(sorted(removed.items(), key=lambda kv: -kv[1])))
        )
        meta["removed_samples"] = dg.MetadataValue.md(samples_markdown(removal_samples(version)))
    return meta
