"""What a stage's run function receives and returns (no Beam, no Dagster).

Every stage is declared once in ``assets/graph.py``; the orchestration layer builds a
:class:`StageJob` from that declaration and calls the stage's ``run(job)``. A stage therefore never
names its own upstream stages or any asset: it reads ``job.upstream``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import storage
from pipelines.config import CorpusforgeConfig

# launch(command, result_file) -> the result dict the command reported (result_file: where a plain
# run writes it).
Launcher = Callable[[list[str], Path], dict[str, Any]]


@dataclass(frozen=True)
class StageJob:
    """One run of one stage: its place in the graph, the effective config and how to run Beam."""

    name: str  # stage name = asset key = data directory = config section
    upstream: tuple[str, ...]  # the stages it reads, in declaration order
    cfg: CorpusforgeConfig
    options: Any = None  # Beam PipelineOptions; None for stages that run no Beam job
    reuse: bool = False  # re-use a committed version with the same fingerprint
    params: Mapping[str, Any] = field(default_factory=dict)  # fixed parameters from the declaration
    log: Callable[[str], None] = print
    # Runs a command (training, evaluation) and returns the result it reported; the orchestrator
    # passes one that streams progress (Dagster Pipes). ``None``: a plain subprocess (training.stages).
    launch: Launcher | None = None

    @property
    def data_dir(self) -> str:
        return self.cfg.paths.data_dir

    def upstream_version(self, index: int = 0) -> storage.StageVersion:
        """The committed version of ``upstream[index]`` (the error names the asset to materialize)."""
        return storage.current_version(self.data_dir, self.upstream[index])

    def upstream_named(self, name: str) -> storage.StageVersion:
        if name not in self.upstream:
            raise KeyError(f"stage {self.name!r} does not read {name!r}; it reads {list(self.upstream)}")
        return storage.current_version(self.data_dir, name)


@dataclass
class StageResult:
    """A committed (or re-used) version and its manifest."""

    version: storage.StageVersion
    manifest: dict[str, Any]
    counters: dict[str, int] | None = field(default_factory=dict)  # None: the runner reports no metrics
    reused: bool = False
