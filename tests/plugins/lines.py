"""Line-level plug-ins: rewrite the text, and say nothing about keeping the document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.cleaning.rules import Decision
from pipelines.text.analysis import TextAnalysis


class DropLines:
    """Removes every line that contains ``marker``; counts them as ``drop_lines.removed``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        lines = analysis.text.split("\n")
        kept = [line for line in lines if self.marker not in line]
        return Decision(signals={"drop_lines.removed": float(len(lines) - len(kept))}, text="\n".join(kept))


class NoApply:
    """Not a rule: it has no ``apply``."""
