"""Dagster metadata and checks of the bias stages: the filtered documents and the bias report."""

import base64
import io
from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.reporting import bar_chart_md
from pipelines import storage
from pipelines.bias import report
from pipelines.bias.disparity import ANY_AXIS, ANY_RULE
from pipelines.bias.lexicon import AXES
from pipelines.card import representation_rows
from pipelines.reports import markdown_table
from pipelines.stage import StageResult

DISPARITY_TABLE_ROWS = 60
CHART_RULES = 4


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def grouped_bar_chart_md(title: str, groups: Mapping[str, Mapping[str, float]], *, xlabel: str = "") -> str:
    """Horizontal grouped bars as an inline PNG: one group per key of ``groups``, one bar per series."""
    series = sorted({name for values in groups.values() for name in values})
    if not groups or not series:
        return f"_{title}: no data_"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(groups)[::-1]
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(labels) * len(series) + 1.6))
    for k, name in enumerate(series):
        ys = [i + (k - (len(series) - 1) / 2) * height for i in range(len(labels))]
        ax.barh(ys, [float(groups[g].get(name, 0.0)) for g in labels], height=height, label=name)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


# --------------------------------------------------------------------------------------------------
# filtered


def filter_metadata(result: StageResult) -> dict[str, Any]:
    """Toxicity score distribution, lines removed, flagged terms, CDA and balancing of the bias stage."""
    manifest = result.manifest
    tox = manifest.get("toxicity", {})
    hist = {b["score"]: b["documents"] for b in tox.get("score_histogram", [])}
    meta: dict[str, Any] = {
        "documents_with_flagged_terms": dg.MetadataValue.int(tox.get("documents_with_flagged_terms", 0)),
        "flagged_lines": dg.MetadataValue.int(tox.get("flagged_lines", 0)),
        "lines_removed": dg.MetadataValue.int(tox.get("lines_removed", 0)),
        "documents_with_lines_removed": dg.MetadataValue.int(tox.get("documents_with_lines_removed", 0)),
        "cda_documents_added": dg.MetadataValue.int(tox.get("cda", {}).get("documents", 0)),
        "toxicity_score_distribution": dg.MetadataValue.md(
            markdown_table([{"score (per 1,000 words)": k, "documents": v} for k, v in hist.items()])
            + "\n\n"
            + bar_chart_md("Documents by toxicity score", hist, xlabel="documents")
        ),
    }
    terms = tox.get("flagged_terms", {})
    if terms:
        rows = [{"term": t, "occurrences": n} for t, n in list(terms.items())[:15]]
        meta["top_flagged_terms"] = dg.MetadataValue.md(markdown_table(rows))
    if tox.get("categories"):
        meta["flagged_weight_by_category"] = dg.MetadataValue.json(tox["categories"])
    balance = manifest.get("balance")
    if balance:
        rows = [
            {
                "source": s,
                "chars in": balance["char_totals"].get(s, 0),
                "keep probability": _num(balance["probabilities"].get(s), 4),
                "expected share": _pct(balance["expected_fractions"].get(s)),
                "realised share": _pct(balance["realised_fractions"].get(s)),
            }
            for s in balance["char_totals"]
        ]
        meta["source_balance"] = dg.MetadataValue.md(
            f"cap {balance['max_source_fraction']:g} of output characters, feasible: {balance['feasible']}\n\n"
            + markdown_table(rows)
        )
        meta["max_realised_source_fraction"] = dg.MetadataValue.float(float(balance["max_realised_fraction"]))
    return meta


# --------------------------------------------------------------------------------------------------
# bias_report


def disparity_table(rows: list[Mapping[str, Any]], limit: int = DISPARITY_TABLE_ROWS) -> str:
    """Rows with at least one mentioning document, per stage by |z| (largest first)."""
    shown = [r for r in rows if r["docs_mention"]]
    shown.sort(key=lambda r: (r["stage"], -abs(r["z"] or 0.0), r["rule"], r["axis"]))
    table = [
        {
            "stage": r["stage"],
            "rule": r["rule"],
            "axis": r["axis"],
            "docs with": r["docs_mention"],
            "rate with": _pct(r["rate_mention"]),
            "rate without": _pct(r["rate_no_mention"]),
            "ratio": _num(r["ratio"], 2),
            "z": _num(r["z"], 2),
        }
        for r in shown[:limit]
    ]
    more = f"\n\n_{len(shown) - limit} more rows in report.json_" if len(shown) > limit else ""
    return markdown_table(table) + more


def disparity_chart(rows: list[Mapping[str, Any]], top: int = CHART_RULES) -> str:
    """Removal rate by axis (and without any identity term) for the rules that removed the most."""
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["axis"] == ANY_AXIS and r["rule"] != ANY_RULE and not r["rule"].endswith(":*"):
            totals[(r["stage"], r["rule"])] = r["removed_mention"] + r["removed_no_mention"]
    chosen = [k for k, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])) if n][:top]
    groups: dict[str, dict[str, float]] = {axis: {} for axis in AXES}
    groups["no identity term"] = {}
    for r in rows:
        key = (r["stage"], r["rule"])
        if key not in chosen:
            continue
        name = f"{r['stage']}: {r['rule']}"
        if r["axis"] == ANY_AXIS:
            groups["no identity term"][name] = r["rate_no_mention"] or 0.0
        elif r["rate_mention"] is not None:
            groups[r["axis"]][name] = r["rate_mention"]
    groups = {g: v for g, v in groups.items() if v}
    return grouped_bar_chart_md("Removal rate by identity axis, top rules", groups, xlabel="share removed")


def cooccurrence_table(cooc: Mapping[str, list[Mapping[str, Any]]]) -> str:
    rows = [
        {
            "stage": label,
            "axis": r["axis"],
            "lines mentioning": r["lines_mentioning"],
            "with flagged term": r["lines_mentioning_flagged"],
            "flagged rate": _pct(r["flagged_rate"]),
            "all lines": _pct(r["flagged_rate_all_lines"]),
            "ratio": _num(r["ratio"], 2),
        }
        for label, items in cooc.items()
        for r in items
        if r["lines_mentioning"]
    ]
    return markdown_table(rows)


def report_metadata(result: StageResult) -> dict[str, Any]:
    """The data card: representation before/after, co-occurrence, disparity table and chart, notes."""
    rep = report.load_report(result.version)
    representation = rep.get("representation", {})
    rows = rep.get("disparity", {}).get("rows", [])
    meta: dict[str, Any] = {
        "representation": dg.MetadataValue.md(
            markdown_table(representation_rows(representation)) if representation else "_not measured_"
        ),
        "identity_flagged_cooccurrence": dg.MetadataValue.md(cooccurrence_table(rep.get("cooccurrence", {}))),
        "filter_disparity": dg.MetadataValue.md(disparity_table(rows)),
        "disparity_chart": dg.MetadataValue.md(disparity_chart(rows)),
        "disparity_stages": dg.MetadataValue.json(rep.get("disparity", {}).get("stages", {})),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in rep.get("notes", [])) or "none"),
        "path": dg.MetadataValue.path(str(result.version.path / report.REPORT_FILE)),
    }
    for label, r in representation.items():
        ratio = r["summary"].get("he_she_ratio")
        if ratio is not None:
            meta[f"he_she_ratio_{label}"] = dg.MetadataValue.float(float(ratio))
        meta[f"documents_{label}"] = dg.MetadataValue.int(int(r["counts"].get("docs", 0)))
    return meta


def report_complete(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """report.json parses and measures the bias stage: representation before/after and its disparity."""
    try:
        rep = report.load_report(version)
    except (storage.StageNotFoundError, ValueError) as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    measured = stage.upstream[0]
    missing = [
        f"representation {lb}" for lb in ("before", "after") if lb not in rep.get("representation", {})
    ]
    if measured not in rep.get("disparity", {}).get("stages", {}):
        missing.append(f"disparity of {measured}")
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        description="complete" if not missing else "missing: " + ", ".join(missing),
        metadata={"notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in rep.get("notes", [])) or "none")},
    )
