"""The cleaning engine: the configured rules, built once, run in order over one document at a time.

For each rule of ``clean.rules`` (a built-in rule whose section has ``enabled: false`` is skipped):

* its ``signals`` are added to the document's, and a ``lang`` it reports becomes the document's;
* a ``reason`` removes the document (ledger reason and detail) — under ``annotate_only`` it becomes a
  ``flag:<reason>`` tag instead and the next rule runs, unless the decision is ``hard``;
* a rewritten ``text`` replaces the text for the rules after it (with a new analysis). A rewrite
  that leaves no text removes the document as ``<rule>:empty``; under ``annotate_only`` it is not
  applied.

A kept document gets the final text, ``lang``/``lang_score`` ("und"/0.0 without language
identification), ``quality`` (``pipelines.text.quality.quality_score``), ``signals`` and tags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.cleaning import rules as r
from pipelines.cleaning.plugins import PluginError, load_object, plugin_spec
from pipelines.config import CLEAN_RULES, CleanConfig
from pipelines.text.analysis import TextAnalysis
from pipelines.text.langid import UNDETERMINED, LanguageIdentifier
from pipelines.text.quality import quality_score

__all__ = ["BUILTIN_RULES", "CleanOutcome", "CleaningEngine", "build_rules", "clean_document"]

# name -> rule built from the clean section (None: the rule's section disables it)
BUILTIN_RULES: dict[str, Callable[[CleanConfig, LanguageIdentifier | None], r.Rule | None]] = {
    "normalize": lambda c, lid: r.Normalize(c.normalize),
    "langid": lambda c, lid: r.LangId(c.langid, lid) if c.langid.enabled else None,
    "gopher_repetition": lambda c, lid: (
        r.GopherRepetition(c.gopher_repetition) if c.gopher_repetition.enabled else None
    ),
    "gopher_quality": lambda c, lid: r.GopherQuality(c.gopher_quality) if c.gopher_quality.enabled else None,
    "c4": lambda c, lid: r.C4(c.c4) if c.c4.enabled else None,
    "fineweb": lambda c, lid: r.FineWeb(c.fineweb) if c.fineweb.enabled else None,
    "pii": lambda c, lid: r.Pii(c.pii) if c.pii.enabled else None,
}
assert tuple(BUILTIN_RULES) == CLEAN_RULES, "pipelines.config.CLEAN_RULES names the built-in rules"


@dataclass
class CleanOutcome:
    """What cleaning did to one document: the kept document, or the removal reason."""

    document: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""
    flags: list[str] = field(default_factory=list)


def build_rules(cfg: CleanConfig, identifier: LanguageIdentifier | None = None) -> list[tuple[str, r.Rule]]:
    """``(name, rule)`` for every enabled rule of ``cfg.rules``, in order; imports and builds plug-ins.

    ``identifier``: an already loaded language model for ``langid`` (default: load one).
    """
    built: list[tuple[str, r.Rule]] = []
    for name in cfg.rules:
        if name in BUILTIN_RULES:
            rule = BUILTIN_RULES[name](cfg, identifier)
        elif name in cfg.plugins:
            ref, settings = plugin_spec(cfg.plugins[name])
            rule = load_object(ref)(**settings)
            if not callable(getattr(rule, "apply", None)):
                raise PluginError(f"clean.plugins.{name}: {ref}(...) has no apply(doc, analysis) method")
        else:
            raise PluginError(f"clean.rules: unknown rule {name!r}; declare it under clean.plugins")
        if rule is not None:
            built.append((name, rule))
    return built


class CleaningEngine:
    """Applies the configured rules to documents; build one per worker (it loads models)."""

    def __init__(self, cfg: CleanConfig, identifier: LanguageIdentifier | None = None) -> None:
        self.annotate_only = cfg.annotate_only
        self.rules = build_rules(cfg, identifier)

    def clean(self, doc: Mapping[str, Any]) -> CleanOutcome:
        """Run every rule over ``doc``; the first removal stops (see the module docstring)."""
        annotate_only = self.annotate_only
        signals: dict[str, float] = dict(doc.get("signals") or {})
        flags: list[str] = []
        text: str = doc["text"]
        lang, lang_score = UNDETERMINED, 0.0
        analysis: TextAnalysis | None = None
        for name, rule in self.rules:
            if analysis is None:
                analysis = TextAnalysis(text, None if lang == UNDETERMINED else lang, lang_score)
            decision = rule.apply(doc, analysis)
            if decision.signals:
                signals.update(decision.signals)
            if decision.lang is not None:
                lang, lang_score, analysis = decision.lang, decision.lang_score, None
            if decision.reason is not None:
                if decision.hard or not annotate_only:
                    return CleanOutcome(None, decision.reason, decision.detail)
                flags.append(decision.reason)
            new_text = decision.text
            if new_text is None or new_text == text:
                continue
            if new_text.strip():
                text, analysis = new_text, None
            elif not annotate_only:
                return CleanOutcome(None, f"{name}:empty", decision.detail or f"no text left after {name}")

        out = dict(doc)
        out.update(
            text=text,
            lang=lang,
            lang_score=float(lang_score),
            quality=float(quality_score(signals)),
            signals=signals,
            tags=list(doc.get("tags") or []) + [f"flag:{f}" for f in flags],
        )
        return CleanOutcome(out, flags=flags)


def clean_document(
    doc: Mapping[str, Any], cfg: CleanConfig, lid: LanguageIdentifier | None = None
) -> CleanOutcome:
    """Clean one document with a one-off engine (``lid`` None: no language identification).

    Builds every rule on each call: to clean many documents, build a :class:`CleaningEngine` once.
    """
    if lid is None and cfg.langid.enabled:
        cfg = dataclasses.replace(cfg, langid=dataclasses.replace(cfg.langid, enabled=False))
    return CleaningEngine(cfg, lid).clean(doc)
