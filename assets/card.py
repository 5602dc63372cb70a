"""The dataset card (pipelines/card.py) for the CLI and the Dagster UI.

``card_metadata(result)`` is a stage metadata builder (``Stage(metadata="assets.card:...")``): the
card of the committed version and the versions it was built from, as a ``dataset_card`` markdown
entry. ``report_metadata``, ``dataset_metadata`` and ``ablation_metadata`` are the existing builders of
the bias report, the token datasets and the ablation with the card added, for stages that already
name a builder. Dagster is imported only when a builder runs, so the CLI can use the rest.
"""

from __future__ import annotations

from typing import Any

from assets.graph import NAMES, STAGES
from pipelines import fs, storage
from pipelines.card import card_markdown
from pipelines.stage import StageResult

# Stages no other stage reads (the bias report, the evaluation, the ablation): their results join
# the card of any version they were computed from.
REPORT_STAGES: tuple[str, ...] = tuple(
    s.name for s in STAGES if not any(s.name in o.upstream for o in STAGES)
)


def data_dir_of(version: storage.StageVersion) -> str:
    """The data directory holding ``version`` (``<data_dir>/<stage>/<version>``)."""
    return fs.uri(version.root.parent)


def card_for(data_dir: str, target: storage.StageVersion | None = None, **options: Any) -> str:
    """The card of ``target`` and its lineage (None: of every stage's current version)."""
    return card_markdown(data_dir, NAMES, target=target, reports=REPORT_STAGES, **options)


def card_metadata(result: StageResult) -> dict[str, Any]:
    """``{"dataset_card": markdown}`` for the committed version of ``result``."""
    import dagster as dg

    card = card_for(data_dir_of(result.version), result.version)
    return {"dataset_card": dg.MetadataValue.md(card)}


def report_metadata(result: StageResult) -> dict[str, Any]:
    """The bias report's metadata (``assets.bias.report_metadata``) and the dataset card."""
    from assets.bias import report_metadata as base

    return {**base(result), **card_metadata(result)}


def dataset_metadata(result: StageResult) -> dict[str, Any]:
    """A token dataset's metadata (``assets.tokens.dataset_metadata``) and the dataset card."""
    from assets.tokens import dataset_metadata as base

    return {**base(result), **card_metadata(result)}


def ablation_metadata(result: StageResult) -> dict[str, Any]:
    """The ablation's metadata (``assets.training.ablation_metadata``) and the dataset card."""
    from assets.training import ablation_metadata as base

    return {**base(result), **card_metadata(result)}
