"""The rule interface of the cleaning stage and the built-in rules.

A rule is any object with ``apply(doc, analysis) -> Decision``: ``doc`` is the input document row
(id, source, meta, ... — its ``text`` is the text as ingested), ``analysis`` the shared
:class:`~pipelines.text.analysis.TextAnalysis` of the document's *current* text (after earlier
rules' rewrites) and language. The :class:`Decision` says keep or remove (a reason code and detail
for the ledger), adds ``signals`` to the document, and may rewrite the text (line-level rules) or
set the language (language identification). Built-in rules take their config section; plug-ins take
their ``settings`` as keyword arguments (see ``pipelines.cleaning.plugins``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pipelines.config import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    LangIdConfig,
    NormalizeConfig,
    PiiConfig,
)
from pipelines.text.analysis import TextAnalysis
from pipelines.text.langid import LanguageIdentifier, decide
from pipelines.text.normalize import normalize_text
from pipelines.text.pii import redact_pii
from pipelines.text.quality import Verdict, c4_clean, fineweb_quality, gopher_quality, gopher_repetition

__all__ = [
    "Decision",
    "Rule",
    "Normalize",
    "LangId",
    "GopherRepetition",
    "GopherQuality",
    "C4",
    "FineWeb",
    "Pii",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one rule decided about one document.

    reason:     None keeps the document; else the ledger reason code, by convention ``<rule>:<check>``
    detail:     why, for the ledger ("value X vs threshold Y (max)"); for a rewrite that leaves no
                text, why nothing is left
    signals:    measurements recorded in the document's ``signals`` (prefix keys with the rule name)
    text:       the rewritten text (line-level rules); None leaves it unchanged
    lang:       the identified language (language identification only), with ``lang_score``
    hard:       remove even under ``annotate_only`` (there is nothing left to keep)
    """

    reason: str | None = None
    detail: str = ""
    signals: Mapping[str, float] = field(default_factory=dict)
    text: str | None = None
    lang: str | None = None
    lang_score: float = 0.0
    hard: bool = False

    @property
    def keep(self) -> bool:
        return self.reason is None


@runtime_checkable
class Rule(Protocol):
    """One cleaning rule; built once per worker, then applied to every document."""

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        """Decide about ``doc``, whose current text and language ``analysis`` describes."""
        ...


def _from_verdict(verdict: Verdict, text: str | None = None) -> Decision:
    return Decision(verdict.reason, verdict.detail, verdict.signals, text)


class Normalize:
    """Unicode repair, NFC, control characters, whitespace; a document left blank is removed."""

    def __init__(self, cfg: NormalizeConfig) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        text = normalize_text(analysis.text, self.cfg)
        if not text.strip():
            return Decision("normalize:empty", "no text left after normalisation", hard=True)
        return Decision(text=text)


class LangId:
    """fastText lid.176: sets the language; ``langid:not-allowed`` / ``langid:low-score``."""

    def __init__(self, cfg: LangIdConfig, identifier: LanguageIdentifier | None = None) -> None:
        self.cfg = cfg
        self.identifier = identifier or LanguageIdentifier(cfg)
        self.identifier.setup()

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        lang, score = self.identifier.predict(analysis.text)
        reason = decide(lang, score, self.cfg)
        detail = f"language {lang} with score {score:.3f}" if reason else ""
        return Decision(reason, detail, {"langid.score": score}, lang=lang, lang_score=score)


class GopherRepetition:
    """Duplicated lines, paragraphs and n-grams (``pipelines.text.quality.gopher_repetition``)."""

    def __init__(self, cfg: GopherRepetitionConfig) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        a = analysis
        return _from_verdict(gopher_repetition(a.text, a.lang, self.cfg, a))


class GopherQuality:
    """Word counts and shapes, symbols, bullets, stop words (``pipelines.text.quality.gopher_quality``)."""

    def __init__(self, cfg: GopherQualityConfig) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        a = analysis
        return _from_verdict(gopher_quality(a.text, a.lang, self.cfg, a))


class C4:
    """C4 boilerplate-line removal (rewrites the text), then page rules (``pipelines.text.quality.c4_clean``)."""

    def __init__(self, cfg: C4Config) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        a = analysis
        cleaned, verdict = c4_clean(a.text, a.lang, self.cfg, a)
        if verdict.reason is None and not cleaned.strip():
            return Decision(None, "no lines left after line filtering", verdict.signals, cleaned)
        return _from_verdict(verdict, cleaned)


class FineWeb:
    """FineWeb's line rules (``pipelines.text.quality.fineweb_quality``)."""

    def __init__(self, cfg: FineWebConfig) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        a = analysis
        return _from_verdict(fineweb_quality(a.text, a.lang, self.cfg, a))


class Pii:
    """Replaces e-mails, phones, IPs and payment cards by placeholders; counts them as ``pii.<kind>``."""

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        text, counts = redact_pii(analysis.text, self.cfg)
        return Decision(signals={f"pii.{kind}": float(n) for kind, n in counts.items() if n}, text=text)
