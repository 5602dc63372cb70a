"""Beam combiners of the bias report: corpus totals of ``representation.py`` and ``disparity.py``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from pipelines.bias.disparity import (
    Accumulator,
    add_document,
    disparity_rows,
    merge_accumulators,
    new_accumulator,
)
from pipelines.bias.representation import count_representation, mentioned_axes


def _document_counts(element: Any) -> dict[str, int]:
    if isinstance(element, Mapping):
        if "text" in element:
            return count_representation(element["text"], element.get("lang"))
        return dict(element)  # already a count dict
    text, lang = element
    return count_representation(text, lang)


class RepresentationCombineFn(beam.CombineFn):
    """Corpus-level representation counts.

    Input elements: document rows (mappings with ``text`` and optional ``lang``), ``(text, lang)``
    tuples, or count dicts from ``count_representation``. Output: the summed count dict, keys sorted.
    """

    def create_accumulator(self) -> dict[str, int]:
        return {}

    def add_input(self, accumulator: dict[str, int], element: Any) -> dict[str, int]:
        for key, value in _document_counts(element).items():
            accumulator[key] = accumulator.get(key, 0) + value
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for acc in accumulators:
            for key, value in acc.items():
                out[key] = out.get(key, 0) + value
        return out

    def extract_output(self, accumulator: dict[str, int]) -> dict[str, int]:
        return dict(sorted(accumulator.items()))


def _as_record(element: Any) -> tuple[str, Iterable[str], str | None]:
    if isinstance(element, Mapping):
        if "axes" in element:
            return element["stage"], element["axes"], element.get("reason")
        axes = mentioned_axes(element["text"], element.get("lang"))
        return element["stage"], axes, element.get("reason")
    stage, axes, reason = element
    return stage, axes, reason


class DisparityCombineFn(beam.CombineFn):
    """Beam combiner over per-document records; output: ``disparity_rows`` of the total.

    Elements: ``(stage, axes, reason)`` tuples, or mappings with ``stage``, ``reason`` and either
    ``axes`` or ``text`` (+ optional ``lang``), in which case the axes are detected here.
    """

    def create_accumulator(self) -> Accumulator:
        return new_accumulator()

    def add_input(self, accumulator: Accumulator, element: Any) -> Accumulator:
        stage, axes, reason = _as_record(element)
        return add_document(accumulator, stage, axes, reason)

    def merge_accumulators(self, accumulators: Iterable[Accumulator]) -> Accumulator:
        return merge_accumulators(*accumulators)

    def extract_output(self, accumulator: Accumulator) -> list[dict[str, Any]]:
        return disparity_rows(accumulator)
