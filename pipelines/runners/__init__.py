"""Beam runners that corpusforge adds or repairs, selected by short name in ``runner.runner``.

``DaskRunner`` (and Beam's own class path, ``apache_beam.runners.dask.dask_runner.DaskRunner``) runs
on :class:`pipelines.runners.dask_fixes.CorpusforgeDaskRunner`: Beam 2.77's DaskRunner with the fixes
that module documents. Nothing here imports dask until a Dask pipeline is built.
"""

from __future__ import annotations

from typing import Any

DASK = "DaskRunner"
DASK_RUNNER_CLASS = "pipelines.runners.dask_fixes.CorpusforgeDaskRunner"
UPSTREAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"

# short name (or upstream class path) -> the class that runs it
RUNNERS = {DASK: DASK_RUNNER_CLASS, UPSTREAM_DASK_RUNNER: DASK_RUNNER_CLASS}


def runner_class(name: str) -> str:
    """The ``--runner`` value for a configured runner name (unchanged unless it is one of ours)."""
    return RUNNERS.get(name, name)


def is_dask(name: str) -> bool:
    return runner_class(name) == DASK_RUNNER_CLASS


def for_small_pipelines(options: Any) -> Any:
    """Beam options for a stage's small auxiliary pipelines (the connected-components rounds of the
    dedup job: ids only). On a local runner in a process-pool mode they run in-process instead:
    ``multi_processing`` starts its worker processes again for every pipeline, seconds each, longer
    than such a round takes. Any other runner (Dask, Flink, Dataflow, ...) is unchanged; results never
    depend on the choice.
    """
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    from pipelines.config import LOCAL_RUNNERS

    if options is None or (options.view_as(StandardOptions).runner or "") not in LOCAL_RUNNERS:
        return options
    if options.view_as(DirectOptions).direct_running_mode == "in_memory":
        return options
    values = options.get_all_options(drop_default=True, retain_unknown_options=True)
    return PipelineOptions.from_dictionary(
        {**values, "direct_running_mode": "in_memory", "direct_num_workers": 1}
    )
