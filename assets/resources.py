"""Dagster resources: where data lives and which Beam runner executes the stage jobs."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from pipelines import config as pc
from pipelines.beam_stage import pipeline_options


class CorpusforgeSettings(dg.ConfigurableResource):
    """Base configuration (a YAML file or the embedded defaults) and the input/data locations."""

    config_file: str = Field(
        default="", description="YAML/JSON config file; empty uses the embedded defaults."
    )
    input_path: str = Field(default="", description="Raw input file or directory; empty uses paths.input.")
    data_dir: str = Field(default="", description="Data directory; empty uses paths.data_dir.")
    full_rebuild: bool = Field(
        default=False,
        description="Recompute every split of every stage (output.incremental=false) instead of "
        "processing only what changed since each stage's current version.",
    )

    def load(self, section: str | None = None, values: dict[str, Any] | None = None) -> pc.CorpusforgeConfig:
        """The effective config: file, then these paths, then ``values`` for ``section``."""
        overrides: dict[str, Any] = {"paths": {}}
        if self.input_path:
            overrides["paths"]["input"] = self.input_path
        if self.data_dir:
            overrides["paths"]["data_dir"] = self.data_dir
        if self.full_rebuild:
            overrides["output"] = {"incremental": False}
        if section and values is not None:
            overrides[section] = values
        return pc.load_config(self.config_file or None, overrides)


class BeamRunner(dg.ConfigurableResource):
    """The Beam runner for every stage job. Empty fields inherit the config file's ``runner`` section;
    ``options`` pass through verbatim to Flink, Spark or Dataflow."""

    runner: str = Field(
        default="",
        description="FnApiRunner, DirectRunner, FlinkRunner, SparkRunner, DataflowRunner; empty = config.",
    )
    direct_running_mode: str = Field(
        default="",
        description="Local runner mode: in_memory, multi_threading, multi_processing; empty = config.",
    )
    direct_num_workers: int = Field(
        default=-1, description="Local runner workers (0 = one per core, -1 = config)."
    )
    options: list[str] = Field(
        default_factory=list, description="Extra pipeline options, e.g. --flink_master=host:8081."
    )

    def spec(self, base: pc.RunnerConfig) -> pc.RunnerConfig:
        return pc.RunnerConfig(
            runner=self.runner or base.runner,
            direct_running_mode=self.direct_running_mode or base.direct_running_mode,
            direct_num_workers=base.direct_num_workers
            if self.direct_num_workers < 0
            else self.direct_num_workers,
            options=list(base.options) + list(self.options),
            dask_address=base.dask_address,
        )

    def pipeline_options(self, cfg: pc.CorpusforgeConfig) -> Any:
        return pipeline_options(self.spec(cfg.runner))


def default_resources() -> dict[str, Any]:
    """Resources bound in ``Definitions``; environment variables override the embedded defaults."""
    return {
        "settings": CorpusforgeSettings(
            config_file=os.environ.get("CORPUSFORGE_CONFIG", ""),
            input_path=os.environ.get("CORPUSFORGE_INPUT", ""),
            data_dir=os.environ.get("CORPUSFORGE_DATA_DIR", ""),
        ),
        "beam": BeamRunner(
            direct_running_mode=os.environ.get("CORPUSFORGE_BEAM_MODE", ""),
            direct_num_workers=int(os.environ.get("CORPUSFORGE_BEAM_WORKERS", "-1")),
        ),
    }
