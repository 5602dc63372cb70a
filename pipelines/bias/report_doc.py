"""The bias report document from the report job's combined results (pure: no Beam, no I/O).

``assemble_report`` joins the representation counts per label (with their ``summarize`` shares and
the identity x flagged-term co-occurrence rows), the disparity rows and the unmatched ledger rows with
the driver's plan (versions, stages, notes) into the JSON document of a ``bias_report`` version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.bias.lexicon import AXES
from pipelines.bias.representation import summarize


def cooccurrence_rows(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per axis: lines mentioning it, those of them holding a flagged term, and the rate vs all lines."""
    summary = summarize(counts)
    base = summary["flagged_line_rate.all"]
    rows = []
    for axis in AXES:
        rate = summary[f"flagged_line_rate.{axis}"]
        rows.append(
            {
                "axis": axis,
                "lines_mentioning": int(counts.get(f"lines.axis.{axis}", 0)),
                "lines_mentioning_flagged": int(counts.get(f"lines.axis.{axis}.flagged", 0)),
                "flagged_rate": rate,
                "flagged_rate_all_lines": base,
                "ratio": rate / base if rate is not None and base else None,
            }
        )
    return rows


def assemble_report(parts: Mapping[str, Any], static: Mapping[str, Any]) -> dict[str, Any]:
    """The report document from the pipeline's keyed results and the driver's plan."""
    report: dict[str, Any] = {**static, "representation": {}, "cooccurrence": {}}
    for label, stage in static["representation_stages"].items():
        counts = parts.get(f"representation.{label}") or {}
        report["representation"][label] = {
            "stage": stage,
            "version": static["inputs"][stage],
            "counts": counts,
            "summary": summarize(counts),
        }
        report["cooccurrence"][label] = cooccurrence_rows(counts)
    report["disparity"] = {
        "stages": static["disparity_stages"],
        "rows": parts.get("disparity") or [],
        "unmatched_ledger_rows": parts.get("unmatched") or {},
    }
    return report
