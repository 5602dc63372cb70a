"""Cleaning stage: normalise, identify the language, apply quality rules, redact PII.

Per document, in order (the first failing rule removes it, with its reason in the ledger):

1. ``normalize``          Unicode repair + NFC, control characters, whitespace (text rewritten)
2. ``langid``             fastText lid.176; language not kept or score under its threshold
3. ``gopher_repetition``  duplicated lines / paragraphs / n-grams
4. ``gopher_quality``     word counts, word length, symbols, bullets, ellipses, alphabetic words, stop words
5. ``c4``                 boilerplate lines removed (text rewritten), then page-level rules
6. ``fineweb``            terminal punctuation, short lines, duplicated line characters, newlines per word
7. ``pii``                e-mail, phone, IP, payment card replaced by typed placeholders (text rewritten)

Every rule's measurements go into ``signals`` (annotate, then filter). With ``annotate_only`` all
rules run on every document, nothing is removed, and would-be removals become ``flag:<reason>`` tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from pipelines import schemas
from pipelines.beam_stage import build_document_stage, counter, run_downstream_stage
from pipelines.config import CleanConfig, CorpusforgeConfig, to_dict
from pipelines.text.langid import LanguageIdentifier, decide
from pipelines.text.normalize import normalize_text
from pipelines.text.pii import redact_pii
from pipelines.text.quality import c4_clean, fineweb_quality, gopher_quality, gopher_repetition, quality_score

STAGE = "clean"
UPSTREAM = "raw"


@dataclass
class CleanOutcome:
    """What cleaning did to one document: the kept document, or the removal reason."""

    document: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""
    flags: list[str] = field(default_factory=list)


def clean_document(doc: Mapping[str, Any], cfg: CleanConfig, lid: LanguageIdentifier | None) -> CleanOutcome:
    """Apply the cleaning rules to one document (pure apart from the language model)."""
    signals: dict[str, float] = dict(doc.get("signals") or {})
    flags: list[str] = []
    text = normalize_text(doc["text"], cfg.normalize)
    if not text.strip():
        return CleanOutcome(None, "normalize:empty", "no text left after normalisation")

    lang, lang_score = "und", 0.0
    if cfg.langid.enabled and lid is not None:
        lang, lang_score = lid.predict(text)
        signals["langid.score"] = lang_score
        reason = decide(lang, lang_score, cfg.langid)
        if reason:
            detail = f"language {lang} with score {lang_score:.3f}"
            if not cfg.annotate_only:
                return CleanOutcome(None, reason, detail)
            flags.append(reason)

    def failed(verdict: Any) -> CleanOutcome | None:
        signals.update(verdict.signals)
        if verdict.reason is None:
            return None
        if cfg.annotate_only:
            flags.append(verdict.reason)
            return None
        return CleanOutcome(None, verdict.reason, verdict.detail)

    rule_lang = None if lang == "und" else lang
    if cfg.gopher_repetition.enabled and (
        out := failed(gopher_repetition(text, rule_lang, cfg.gopher_repetition))
    ):
        return out
    if cfg.gopher_quality.enabled and (out := failed(gopher_quality(text, rule_lang, cfg.gopher_quality))):
        return out
    if cfg.c4.enabled:
        cleaned, verdict = c4_clean(text, rule_lang, cfg.c4)
        if out := failed(verdict):
            return out
        if cleaned.strip() or not cfg.annotate_only:
            text = cleaned
    if not text.strip():
        return CleanOutcome(None, "c4:empty", "no lines left after line filtering")
    if cfg.fineweb.enabled and (out := failed(fineweb_quality(text, rule_lang, cfg.fineweb))):
        return out
    if cfg.pii.enabled:
        text, counts = redact_pii(text, cfg.pii)
        for kind, n in counts.items():
            if n:
                signals[f"pii.{kind}"] = float(n)

    out_doc = dict(doc)
    out_doc.update(
        text=text,
        lang=lang,
        lang_score=float(lang_score),
        quality=float(quality_score(signals)),
        signals=signals,
        tags=list(doc.get("tags") or []) + [f"flag:{f}" for f in flags],
    )
    return CleanOutcome(out_doc, flags=flags)


class CleanFn(beam.DoFn):
    """``(split, document)`` -> tagged ``documents`` (cleaned) or ``ledger`` (removal) rows."""

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self.lid: LanguageIdentifier | None = None
        self.kept = counter("clean.kept")
        self.removed = counter("clean.removed")

    def setup(self) -> None:
        self.lid = LanguageIdentifier(self.cfg.langid) if self.cfg.langid.enabled else None
        if self.lid is not None:
            self.lid.setup()

    def process(self, element: tuple[str, Mapping[str, Any]]) -> Iterator[Any]:
        split, doc = element
        if self.lid is None and self.cfg.langid.enabled:
            self.setup()
        outcome = clean_document(doc, self.cfg, self.lid)
        if outcome.document is not None:
            self.kept.inc()
            yield beam.pvalue.TaggedOutput("documents", (split, outcome.document))
        else:
            self.removed.inc()
            counter(f"clean.removed.{outcome.reason}").inc()
            row = schemas.removal_from_document(doc, STAGE, outcome.reason or "unknown", outcome.detail)
            yield beam.pvalue.TaggedOutput("ledger", (split, row))


class CleanDocuments(beam.PTransform):
    """PCollection of ``(split, document)`` -> tagged outputs ``documents`` and ``ledger``."""

    def __init__(self, cfg: CleanConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.ParDo(CleanFn(self.cfg)).with_outputs("documents", "ledger")


def run(cfg: CorpusforgeConfig, options: Any, *, reuse: bool = False) -> Any:
    """Clean the committed ``raw`` stage into a new ``clean`` version."""
    from pipelines.reports import stage_stats

    return run_downstream_stage(
        cfg,
        stage=STAGE,
        upstream_stage=UPSTREAM,
        asset_hint="raw_documents",
        section={"clean": to_dict(cfg.clean)},
        build=lambda p, splits, v: build_document_stage(
            p, splits, CleanFn(cfg.clean), str(v.path), cfg.output, label="Clean"
        ),
        finalize=lambda v, counters, entries, up_docs: {
            "stats": stage_stats(entries, up_docs, redacts_pii=True)
        },
        options=options,
        reuse=reuse,
    )
