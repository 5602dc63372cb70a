"""The dataset card: committed manifests -> a Hugging Face dataset card (markdown with a YAML header).

:func:`render_card` is a pure function of the manifests (and the bias report's document): a YAML
header (``pretty_name``, ``language``, ``license``, ``size_categories``, ``task_categories``,
``task_ids``, ``tags``, and ``configs`` when it describes an exported folder), then sections: the
stage versions, the exported files, the source data, documents by stage, removals by reason, PII
redactions, the token dataset, the bias report's representation and filter-disparity tables, the
curation ablation (mean ± spread over seeds) and the limitations. :func:`collect` reads what it needs
from a data directory: the lineage of one version (following the upstream versions each manifest
records) plus the report stages computed from the same versions, or the current version of every
stage. The CLI (``corpusforge card``, ``corpusforge export``) and the Dagster metadata
(``assets/card.py``) call it; neither the card nor this module names a stage: they go by what each
manifest holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipelines import fs, storage
from pipelines.bias.lexicon import AXES, NOUN_CLASSES, PRONOUN_CLASSES
from pipelines.reports import markdown_table

TOKENS_FORMAT = "corpusforge-tokens/"
DISPARITY_ROWS = 30
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


@dataclass
class CardInputs:
    """What a card is made of: manifests by stage (in graph order), report documents by stage
    (the bias report's ``report.json``), and notes on what was left out."""

    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# what a manifest is


def is_documents(m: Mapping[str, Any]) -> bool:
    return "documents_in" in (m.get("stats") or {})


def is_tokens(m: Mapping[str, Any]) -> bool:
    return str(m.get("format", "")).startswith(TOKENS_FORMAT) and "splits" in m


def is_tokenizer(m: Mapping[str, Any]) -> bool:
    return isinstance(m.get("tokenizer"), Mapping) and "vocab_size" in m["tokenizer"] and "sample" in m


def is_bias_report(m: Mapping[str, Any]) -> bool:
    return "report_file" in m


def is_ablation(m: Mapping[str, Any]) -> bool:
    return "report" in m and isinstance(m["report"], Mapping) and not is_bias_report(m)


def is_model(m: Mapping[str, Any]) -> bool:
    return "preset" in (m.get("summary") or {})


def is_evaluation(m: Mapping[str, Any]) -> bool:
    return "val_tokens" in (m.get("summary") or {})


# --------------------------------------------------------------------------------------------------
# reading


def _version(data_dir: str, stage: str, name: str) -> storage.StageVersion:
    return storage.StageVersion(storage.stage_root(data_dir, stage), name)


def _lineage(
    data_dir: str, version: storage.StageVersion, stages: Sequence[str], notes: list[str]
) -> dict[str, tuple[str, dict]]:
    """``{stage: (version name, manifest)}`` of ``version`` and every version of ``stages`` it was
    built from (other ``upstream`` entries, such as the first stage's input path, are not stages)."""
    found: dict[str, tuple[str, dict]] = {}
    todo = [(version.stage, version.name)]
    while todo:
        stage, name = todo.pop()
        if stage in found:
            if found[stage][0] != name:
                notes.append(f"{stage}: two versions in the lineage ({found[stage][0]}, {name})")
            continue
        try:
            manifest = _version(data_dir, stage, name).manifest()
        except (storage.StageNotFoundError, OSError, ValueError):
            notes.append(f"{stage} {name}: manifest not found (pruned?); not described")
            continue
        found[stage] = (name, manifest)
        todo += [(s, n) for s, n in (manifest.get("upstream") or {}).items() if s in stages]
    return found


def _read_report(data_dir: str, stage: str, m: Mapping[str, Any], notes: list[str]) -> dict | None:
    path = _version(data_dir, stage, m["version"]).path / m["report_file"]
    try:
        with fs.open_read(path) as fh:
            return json.loads(fh.read())
    except (OSError, ValueError) as exc:
        notes.append(f"{stage}: {m['report_file']} unreadable ({exc}); its tables are left out")
        return None


def collect(
    data_dir: str,
    order: Sequence[str],
    *,
    target: storage.StageVersion | None = None,
    reports: Sequence[str] = (),
) -> CardInputs:
    """Read the manifests a card describes.

    ``target`` None: the current version of every stage of ``order``. Otherwise ``target`` and the
    versions it was built from, plus each stage of ``reports`` (e.g. the bias report, the ablation)
    whose current version was computed from the same versions (else a note says why it is left
    out). ``order`` (the graph's stage order) orders the sections.
    """
    inputs = CardInputs(target=target.stage if target is not None else None)
    chosen: dict[str, tuple[str, dict]] = {}
    if target is None:
        for stage in order:
            try:
                v = storage.current_version(data_dir, stage)
                chosen[stage] = (v.name, v.manifest())
            except storage.StageNotFoundError:
                continue
    else:
        chosen = _lineage(data_dir, target, order, inputs.notes)
        for stage in reports:
            if stage in chosen:
                continue
            try:
                current = storage.current_version(data_dir, stage)
            except storage.StageNotFoundError:
                continue
            theirs = _lineage(data_dir, current, order, [])
            shared = set(theirs) & set(chosen)
            if shared and all(theirs[s][0] == chosen[s][0] for s in shared):
                chosen[stage] = theirs[stage]
            elif shared:
                inputs.notes.append(
                    f"{stage}: its current version ({current.name}) was computed from other versions "
                    "than this dataset's; not shown"
                )
    rank = {s: i for i, s in enumerate(order)}
    for stage in sorted(chosen, key=lambda s: (rank.get(s, len(rank)), s)):
        manifest = chosen[stage][1]
        inputs.manifests[stage] = manifest
        if is_bias_report(manifest):
            doc = _read_report(data_dir, stage, manifest, inputs.notes)
            if doc is not None:
                inputs.reports[stage] = doc
    return inputs


# --------------------------------------------------------------------------------------------------
# rendering helpers


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    return markdown_table(list(rows))


def size_category(n: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>1T"


def mean_spread(stats: Mapping[str, Any] | None, digits: int = 2) -> str:
    """``mean ± std (n=k)`` of a statistics mapping (``mean``, ``std``, ``n``)."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    mean, std, n = float(stats["mean"]), stats.get("std"), int(stats.get("n") or 0)
    if n > 1 and std is not None and math.isfinite(float(std)):
        return f"{mean:.{digits}f} ± {float(std):.{digits}f} (n={n})"
    return f"{mean:.{digits}f} (n={n})"


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{float(x):.{digits}f}"


def _int(x: Any) -> str:
    return f"{int(x):,}" if x is not None else "n/a"


def _docs_stages(manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [s for s, m in manifests.items() if is_documents(m)]


def card_languages(manifests: Mapping[str, Mapping[str, Any]], export: Mapping[str, Any] | None) -> list[str]:
    """Languages of what the card describes: the export's, else the last documents stage's (no ``und``)."""
    langs: Mapping[str, Any] = {}
    if export and export.get("languages"):
        langs = export["languages"]
    else:
        tokens = [m for m in manifests.values() if is_tokens(m)]
        docs = _docs_stages(manifests)
        if tokens and export and export.get("kind") == "tokens":
            merged: dict[str, int] = {}
            for split in (tokens[-1].get("stats") or {}).values():
                for lang, v in (split.get("languages") or {}).items():
                    merged[lang] = merged.get(lang, 0) + int(
                        v.get("documents", 1) if isinstance(v, Mapping) else 1
                    )
            langs = merged
        elif docs:
            langs = (manifests[docs[-1]].get("stats") or {}).get("languages") or {}
    return sorted(k for k, n in langs.items() if k and k != "und" and n)


def _rows_described(manifests: Mapping[str, Mapping[str, Any]], export: Mapping[str, Any] | None) -> int:
    if export and export.get("rows") is not None:
        return int(export["rows"])
    if export and export.get("documents") is not None:
        return int(export["documents"])
    docs = _docs_stages(manifests)
    return int((manifests[docs[-1]]["stats"]).get("documents_out", 0)) if docs else 0


def header(
    manifests: Mapping[str, Mapping[str, Any]],
    *,
    export: Mapping[str, Any] | None,
    pretty_name: str,
    license: str,
    license_name: str | None,
) -> dict[str, Any]:
    head: dict[str, Any] = {"pretty_name": pretty_name}
    langs = card_languages(manifests, export)
    head["language"] = langs or ["und"]
    head["license"] = license
    if license == "other":
        head["license_name"] = license_name or "mixed-see-source-data"
    head["size_categories"] = [size_category(_rows_described(manifests, export))]
    head["task_categories"] = ["text-generation"]
    head["task_ids"] = ["language-modeling"]
    head["multilinguality"] = ["multilingual" if len(langs) > 1 else "monolingual"]
    head["tags"] = ["corpusforge"]
    if export and export.get("data_files"):
        head["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": p} for s, p in export["data_files"].items()],
            }
        ]
    return head


# --------------------------------------------------------------------------------------------------
# sections


def versions_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        {
            "stage": s,
            "version": f"`{m.get('version', '?')}`",
            "created": m.get("created", ""),
            "code version": m.get("code_version", ""),
        }
        for s, m in manifests.items()
    ]
    return _table(rows)


def export_section(export: Mapping[str, Any]) -> str:
    kind, fmt = export.get("kind"), export.get("format")
    lines = [f"Exported from stage `{export.get('stage')}`, version `{export.get('version')}`."]
    if kind == "documents":
        lines += [
            "",
            f"{_int(export.get('documents'))} documents in Parquet files `data/train-*.parquet` (one per "
            "stage shard, zstd). Columns: `id`, `text`, `source` (input path), `offset`, `lang`, "
            "`lang_score`, `quality`, `signals`, `meta` (JSON text of the input record's other fields), "
            "`tags`. `signals` (per-rule scores such as `toxicity.score`, `pii.email`, `identity.gender`) "
            "is a list of `{key, value}` structs sorted by key, so every Parquet reader and `datasets` "
            "load it (inside corpusforge it is an Arrow map).",
        ]
    elif fmt == "hf":
        splits = export.get("splits") or {}
        lines += [
            "",
            "A Hugging Face `datasets` folder (`datasets.load_from_disk(path)` gives a `DatasetDict`; "
            "`Dataset.from_file` opens one shard): per split, Arrow IPC stream files `data-*.arrow` with one "
            "column `input_ids`, a packed window of `seq_len + 1` token ids. Documents are separated by "
            "the end-of-text id; only the last window of a split is padded with the pad id (mask it in "
            "the labels).",
            "",
            _table([{"split": s, **{k: _int(v) for k, v in c.items()}} for s, c in splits.items()]),
        ]
    elif fmt == "megatron":
        splits = export.get("splits") or {}
        lines += [
            "",
            f"Megatron-LM `MMapIndexedDataset` pairs `<split>.bin` / `<split>.idx` ({export.get('dtype')}): "
            "one sequence per document (its tokens and the end-of-text id), no padding; use "
            "`--data-path <folder>/train` (`--split` or `--valid-data-path <folder>/val`).",
            "",
            _table([{"split": s, **{k: _int(v) for k, v in c.items()}} for s, c in splits.items()]),
        ]
    return "\n".join(lines)


def source_section(manifests: Mapping[str, Mapping[str, Any]], export: Mapping[str, Any] | None) -> str:
    docs = _docs_stages(manifests)
    first = manifests[docs[0]] if docs else None
    lines = []
    if first is not None:
        where = ((first.get("config") or {}).get("paths") or {}).get("input") or (
            first.get("upstream") or {}
        ).get("input", "?")
        reasons = ", ".join(f"`{r}`" for r in sorted(first["stats"].get("removed_by_reason") or {}))
        lines.append(
            f"Read from `{where}` (stage `{first.get('stage')}`): "
            f"{_int(first['stats'].get('documents_in'))} records, "
            f"{_int(first['stats'].get('documents_out'))} documents"
            + (f"; quarantined: {reasons}." if reasons else ".")
        )
    if export and export.get("sources"):
        rows = [{"source": f"`{k}`", "documents": _int(v)} for k, v in export["sources"].items()]
        lines += ["", "Documents by top-level input path:", "", _table(rows[:50])]
    lines += [
        "",
        "Licences are those of the source texts: check each source before redistributing. The corpus "
        "was curated automatically; see the removal, PII and bias sections below.",
    ]
    return "\n".join(lines)


def counts_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for s in _docs_stages(manifests):
        st = manifests[s]["stats"]
        langs = st.get("languages") or {}
        rows.append(
            {
                "stage": s,
                "documents in": _int(st.get("documents_in")),
                "added": _int(st.get("documents_added", 0)),
                "removed": _int(st.get("removed")),
                "documents out": _int(st.get("documents_out")),
                "bytes in": _int(st.get("bytes_in")),
                "bytes out": _int(st.get("bytes_out")),
                "languages": ", ".join(f"{k} {v}" for k, v in sorted(langs.items(), key=lambda kv: -kv[1])),
            }
        )
    return _table(rows)


def removals_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for s in _docs_stages(manifests):
        st = manifests[s]["stats"]
        nbytes = st.get("removed_bytes_by_reason") or {}
        for reason, n in sorted((st.get("removed_by_reason") or {}).items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append(
                {"stage": s, "reason": f"`{reason}`", "documents": _int(n), "bytes": _int(nbytes.get(reason))}
            )
    return _table(rows) if rows else "_no document was removed_"


def pii_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    stages = [s for s in _docs_stages(manifests) if manifests[s]["stats"].get("pii")]
    kinds = sorted({k for s in stages for k in manifests[s]["stats"]["pii"]})
    rows = [{"stage": s, **{k: _int(manifests[s]["stats"]["pii"].get(k, 0)) for k in kinds}} for s in stages]
    intro = (
        "Personal information found in kept documents and replaced by a placeholder (`<EMAIL>`, "
        "`<PHONE>`, `<IP_ADDRESS>`, `<CREDIT_CARD>`), counted per stage where it was redacted:"
    )
    return intro + "\n\n" + (_table(rows) if rows else "_none found_")


def tokens_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for s, m in manifests.items():
        if is_tokenizer(m):
            t = m["tokenizer"]
            held = (m.get("stats") or {}).get("heldout") or {}
            rows = [
                {
                    "language": k,
                    "documents": _int(v.get("documents")),
                    "bytes / token": _num(v.get("bytes_per_token"), 3),
                    "vocabulary share used": _pct(v.get("vocab_share_used")),
                }
                for k, v in held.items()
            ]
            parts.append(
                f"Tokenizer (stage `{s}`): byte-level BPE, vocabulary {_int(t.get('vocab_size'))}, "
                f"sha256 `{t.get('sha256', '')[:16]}…`; held-out documents:\n\n" + _table(rows)
            )
        elif is_tokens(m):
            rows = [
                {
                    "split": split,
                    "documents": _int(v.get("documents")),
                    "sequences": _int(v.get("sequences")),
                    "tokens": _int(v.get("tokens")),
                    "padding tokens": _int(
                        ((m.get("stats") or {}).get(split) or {}).get("padding_tokens", 0)
                    ),
                }
                for split, v in m["splits"].items()
            ]
            parts.append(
                f"Token dataset (stage `{s}`): windows of {m.get('seq_len')} + 1 tokens, `{m.get('dtype')}`, "
                f"end-of-text id {m.get('eot_id')}, pad id {m.get('pad_id')}; split by document-id hash "
                f"({(m.get('packing') or {}).get('split_rule', '')}).\n\n" + _table(rows)
            )
    return "\n\n".join(parts)


def representation_table(rep: Mapping[str, Any]) -> str:
    return _table(representation_rows(rep))


def representation_rows(rep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Metric rows with one column per measured stage (before / after the bias stage)."""
    labels = sorted(rep, key=lambda lb: ({"before": 0, "after": 1}.get(lb, 2), lb))
    head = {lb: f"{lb} ({rep[lb].get('stage')})" for lb in labels}

    def row(metric: str, fn: Any) -> dict[str, Any]:
        return {
            "metric": metric,
            **{head[lb]: fn(rep[lb].get("counts") or {}, rep[lb].get("summary") or {}) for lb in labels},
        }

    rows = [
        row("documents", lambda c, s: c.get("docs", 0)),
        row("words / CJK chars", lambda c, s: c.get("units", 0)),
    ]
    for cls in PRONOUN_CLASSES:
        rows.append(
            row(
                f"{cls} pronouns",
                lambda c, s, cls=cls: f"{c.get(f'pronoun.{cls}', 0)} ({_pct(s.get(f'pronoun_share.{cls}'))})",
            )
        )
    rows.append(row("he/she ratio", lambda c, s: _num(s.get("he_she_ratio"))))
    for cls in NOUN_CLASSES:
        rows.append(row(f"{cls} nouns", lambda c, s, cls=cls: c.get(f"noun.{cls}", 0)))
    for axis in AXES:
        rows.append(
            row(
                f"documents mentioning {axis}",
                lambda c, s, axis=axis: (
                    f"{c.get(f'docs.axis.{axis}', 0)} ({_pct(s.get(f'doc_share.axis.{axis}'))})"
                ),
            )
        )
    return rows


def disparity_table(rows: Sequence[Mapping[str, Any]], limit: int = DISPARITY_ROWS) -> str:
    shown = [r for r in rows if r.get("docs_mention")]
    shown.sort(key=lambda r: (str(r["stage"]), -abs(r.get("z") or 0.0), str(r["rule"]), str(r["axis"])))
    table = [
        {
            "stage": r["stage"],
            "rule": f"`{r['rule']}`",
            "axis": r["axis"],
            "docs with": r["docs_mention"],
            "rate with": _pct(r.get("rate_mention")),
            "rate without": _pct(r.get("rate_no_mention")),
            "ratio": _num(r.get("ratio"), 2),
            "z": _num(r.get("z"), 2),
        }
        for r in shown[:limit]
    ]
    more = f"\n\n_{len(shown) - limit} more rows in the bias report_" if len(shown) > limit else ""
    return (_table(table) if table else "_no document mentions an identity axis_") + more


def bias_section(reports: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for stage, doc in reports.items():
        rep = doc.get("representation") or {}
        parts.append(f"From stage `{stage}` (lexicon version `{doc.get('lexicon_version', '')}`).")
        parts.append("### Representation\n\n" + (representation_table(rep) if rep else "_not measured_"))
        rows = (doc.get("disparity") or {}).get("rows") or []
        parts.append(
            "### Filter disparity\n\nFor every curation stage and removal rule (`*`: any rule), the removal "
            "rate of documents mentioning an identity axis against documents mentioning none, their ratio "
            "and a two-proportion z score (|z| > 2: worth a look), largest |z| first:\n\n"
            + disparity_table(rows)
        )
        if doc.get("notes"):
            parts.append("\n".join(f"- {n}" for n in doc["notes"]))
    return "\n\n".join(parts)


def ablation_section(stage: str, m: Mapping[str, Any]) -> str:
    ab = m.get("ablation") or {}
    neutral = ab.get("neutral_set")
    sets = dict(sorted((ab.get("eval_sets") or {}).items(), key=lambda kv: (kv[0] != neutral, kv[0])))
    summary = dict(sorted((ab.get("summary") or {}).items(), key=lambda kv: (kv[0] != "raw", kv[0])))
    if summary:
        rows = [
            {
                "trained on": corpus,
                **{
                    f"{name} perplexity": mean_spread((summary.get(corpus) or {}).get(name, {}).get("ppl"))
                    for name in sets
                },
            }
            for corpus in summary
        ]
        described = "\n".join(f"- `{name}`: {s.get('description', '')}" for name, s in sets.items())
        comp = ab.get("comparison") or {}
        lines = [
            f"Stage `{stage}`: the same model trained for the same steps on the raw and on the curated corpus, "
            f"{len(ab.get('seeds') or [])} seeds each ({', '.join(map(str, ab.get('seeds') or []))}); "
            "perplexity as mean ± standard deviation over seeds (lower is better). Evaluation sets:",
            "",
            described,
            "",
            _table(rows),
        ]
        for name in sets:
            c = comp.get(name) or {}
            red = c.get("ppl_reduction") or {}
            if red.get("mean") is not None:
                lines.append(
                    f"\n`{name}`: perplexity reduction from curation, (raw − curated) / raw, "
                    f"{100 * red['mean']:.1f}% ± {100 * float(red.get('std') or 0):.1f}% (positive: curation "
                    f"helps; curated better in {c.get('curated_better')} of {c.get('seeds')} seeds)."
                )
        return "\n".join(lines)
    report = m.get("report") or {}
    rows = [
        {
            "trained on": k,
            "held-out perplexity": _num(v.get("heldout_ppl"), 2),
            "tokens seen": _int(v.get("tokens_seen")),
        }
        for k, v in report.items()
    ]
    return f"Stage `{stage}` (one seed):\n\n" + _table(rows)


def model_section(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for s, m in manifests.items():
        sm = m.get("summary") or {}
        if is_model(m):
            lines.append(
                f"- `{s}`: {sm.get('preset')} ({_int(sm.get('params'))} parameters), {sm.get('steps')} steps, "
                f"{_int(sm.get('tokens_seen'))} tokens; validation perplexity {_num(sm.get('val_ppl'), 2)}"
            )
        elif is_evaluation(m):
            lines.append(
                f"- `{s}`: validation loss {_num(sm.get('val_loss'))}, perplexity {_num(sm.get('val_ppl'), 2)} "
                f"over {_int(sm.get('val_tokens'))} tokens"
            )
    return "\n".join(lines)


LIMITATIONS = (
    "The filters are heuristics (quality rules, language identification, word lists): they remove some "
    "good text and keep some bad text, and word-list toxicity scoring misses context. The PII redaction "
    "covers e-mail addresses, phone numbers, IP addresses and payment cards only. The bias report measures "
    "lexical representation and removal disparities; it is not a fairness guarantee."
)


def render_card(
    manifests: Mapping[str, Mapping[str, Any]],
    *,
    reports: Mapping[str, Mapping[str, Any]] | None = None,
    export: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    pretty_name: str | None = None,
    license: str = "other",
    license_name: str | None = None,
) -> str:
    """The dataset card (markdown with a YAML header) of ``manifests`` (stage -> manifest, in graph
    order), ``reports`` (stage -> bias report document) and, for an exported folder, ``export``
    (``ExportResult.counts``: kind, format, stage, version, rows/documents, splits, data_files, ...)."""
    reports = reports or {}
    name = pretty_name or (f"corpusforge {export['stage']}" if export else "corpusforge corpus")
    head = header(manifests, export=export, pretty_name=name, license=license, license_name=license_name)
    out = [
        "---",
        yaml.safe_dump(head, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
    ]
    out.append(
        "Curated by corpusforge from a raw text corpus: ingestion with a quarantine "
        "ledger, cleaning (normalisation, language id, Gopher / C4 / FineWeb rules, PII redaction), exact "
        "and near-duplicate removal, toxicity filtering, then tokenization. Every number below comes from "
        "the committed stage manifests."
    )
    sections: list[tuple[str, str]] = []
    if export:
        sections.append(("Dataset structure", export_section(export)))
    sections.append(("Source data", source_section(manifests, export)))
    if _docs_stages(manifests):
        sections.append(("Documents by stage", counts_section(manifests)))
        sections.append(("Removals by reason", removals_section(manifests)))
        sections.append(("Personal information", pii_section(manifests)))
    if tokens := tokens_section(manifests):
        sections.append(("Tokens", tokens))
    if reports:
        sections.append(("Bias and representation", bias_section(reports)))
    for s, m in manifests.items():
        if is_ablation(m):
            sections.append(("Curation ablation", ablation_section(s, m)))
    if models := model_section(manifests):
        sections.append(("Model", models))
    sections.append(("Stage versions", versions_section(manifests)))
    sections.append(
        ("Limitations", LIMITATIONS + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else ""))
    )
    for title, body in sections:
        out += ["", f"## {title}", "", body]
    return "\n".join(out).rstrip() + "\n"


def card_markdown(
    data_dir: str,
    order: Sequence[str],
    *,
    target: storage.StageVersion | None = None,
    reports: Sequence[str] = (),
    export: Mapping[str, Any] | None = None,
    **options: Any,
) -> str:
    """:func:`collect` then :func:`render_card` (``options``: ``pretty_name``, ``license``, ``license_name``)."""
    inputs = collect(data_dir, order, target=target, reports=reports)
    return render_card(inputs.manifests, reports=inputs.reports, export=export, notes=inputs.notes, **options)
