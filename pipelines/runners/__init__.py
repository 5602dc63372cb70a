"""Beam runners that corpusforge adds or repairs, selected by short name in ``runner.runner``.

``DaskRunner`` (and Beam's own class path, ``apache_beam.runners.dask.dask_runner.DaskRunner``) runs
on :class:`pipelines.runners.dask_fixes.CorpusforgeDaskRunner`: Beam 2.77's DaskRunner with the fixes
that module documents. Nothing here imports dask until a Dask pipeline is built.
"""

from __future__ import annotations

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
