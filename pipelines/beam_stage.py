"""Beam plumbing shared by every stage: runner options, shard writing, counters, commit.

A stage job is ``Create(splits) | Reshuffle | FlatMap(read split) | <per-document DoFns> |
WriteShards``. Documents are PCollection elements keyed by their split, so reading, processing and
writing fuse into one Beam stage: no document text goes through a shuffle, each worker streams one
split at a time, and the shards a split produces do not depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import fs, storage
from pipelines.config import LOCAL_RUNNERS, OutputConfig, RunnerConfig, fingerprint
from pipelines.progress import ProgressMonitor
from pipelines.stage import StageJob, StageResult

log = logging.getLogger(__name__)

NAMESPACE = "corpusforge"


def pipeline_options(runner: RunnerConfig, *, in_memory: bool = False) -> PipelineOptions:
    """Beam options for ``runner``; ``in_memory`` forces a single-process local run (tests, tiny jobs).

    ``DaskRunner`` (or Beam's class path for it) runs on ``pipelines.runners.dask_fixes`` against
    the scheduler at ``runner.dask_address``.
    """
    from pipelines.runners import is_dask, runner_class

    args = [f"--runner={runner_class(runner.runner)}"]
    if is_dask(runner.runner) and runner.dask_address:
        args.append(f"--dask_client_address={runner.dask_address}")
    if runner.runner in LOCAL_RUNNERS:
        mode = "in_memory" if in_memory else runner.direct_running_mode
        workers = runner.direct_num_workers or (os.cpu_count() or 1)
        args += [f"--direct_running_mode={mode}", f"--direct_num_workers={1 if in_memory else workers}"]
        args += ["--default_sdk_harness_log_level=WARNING"]
    args += [str(o) for o in runner.options]
    return PipelineOptions(args)


class WriteShardsFn(beam.DoFn):
    """Write ``(split, row)`` elements into size-bounded Parquet shards, one writer per split.

    Reading, processing and writing are fused, so a split's rows arrive together: the previous
    split's writer is closed as soon as another split starts, keeping one row-group buffer in memory
    however many splits a worker handles. Should a split reappear in the same bundle (a runner that
    does not fuse), its numbering continues, so no shard is overwritten.
    """

    def __init__(self, directory: str, schema: Any, output: OutputConfig) -> None:
        self.directory = directory
        self.schema = schema
        self.output = output
        # Ledger rows are labelled with the stage that writes them: <data_dir>/<stage>/<version>/ledger.
        self.stage = storage.stage_of(directory) if "stage" in schema.names else ""
        self._writer: storage.ShardWriter | None = None
        self._next_index: dict[str, int] = {}

    def start_bundle(self) -> None:
        self._writer, self._next_index = None, {}

    def process(self, element: tuple[str, Mapping[str, Any]]) -> None:
        split, row = element
        if self._writer is None or self._writer.split != split:
            self._close()
            self._writer = storage.ShardWriter(
                self.directory,
                split,
                self.schema,
                max_shard_bytes=self.output.max_shard_bytes,
                row_group_rows=self.output.row_group_rows,
                compression=self.output.compression,
                first_index=self._next_index.get(split, 0),
            )
        if self.stage:
            row = {**row, "stage": self.stage}
        self._writer.write(row)

    def _close(self) -> None:
        if self._writer is not None:
            self._next_index[self._writer.split] = self._writer.close()
            self._writer = None

    def finish_bundle(self) -> None:
        self._close()


def counter(name: str) -> Any:
    return beam.metrics.Metrics.counter(NAMESPACE, name)


# Beam counters of a finished job, or None when the runner reports no metrics: recorded in the manifest
# as ``"counters": null`` with ``counters_note``, never as an empty dict that would read as zeros.
# Counters are for monitoring only; no statistic or check reads them.
Counters = dict[str, int] | None
COUNTERS_UNAVAILABLE = "the runner reported no Beam metrics; counters are unknown, not zero"


def query_counters(result: Any) -> Counters:
    """Committed (else attempted) values of this project's Beam counters; ``None`` when the runner
    cannot report metrics (its ``metrics()`` raises) -- unknown, not zero.

    Counters in the ``corpusforge`` namespace keep their name; those of sub-namespaces such as
    ``corpusforge.dedup.cc`` are keyed ``<namespace>:<name>``.
    """
    try:
        metrics = result.metrics().query(MetricsFilter())
    except Exception as exc:  # NotImplementedError, missing metrics service, ...: say so, return None
        log.warning("%s (%s: %s)", COUNTERS_UNAVAILABLE, type(exc).__name__, exc)
        return None
    out: dict[str, int] = {}
    for c in metrics["counters"]:
        ns = c.key.metric.namespace
        if not ns.startswith(NAMESPACE):
            continue
        key = c.key.metric.name if ns == NAMESPACE else f"{ns}:{c.key.metric.name}"
        value = c.committed if c.committed is not None else c.attempted
        out[key] = out.get(key, 0) + int(value or 0)
    return out


def run_pipeline(build: Callable[[beam.Pipeline], None], options: PipelineOptions) -> Counters:
    """Build and run one pipeline to completion; returns its counters.

    An interrupt (Ctrl-C, SIGTERM, Dagster terminating the run) or a failure while waiting cancels
    the job (``result.cancel()`` on runners that support it: Dataflow, Flink / Spark / Prism job
    servers, Dask) and propagates, so the stage's transaction discards the partial version. The
    local FnApiRunner runs the whole job inside ``pipeline.run()``: there the interrupt unwinds it
    and its worker processes are stopped (see :mod:`pipelines.beam_cancel`).
    """
    from pipelines.beam_cancel import cancel, local_workers_stopped

    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    with local_workers_stopped():
        result = pipeline.run()
        try:
            result.wait_until_finish()
        except BaseException:  # KeyboardInterrupt, SystemExit, DagsterExecutionInterruptedError, failures
            cancel(result)
            raise
    return query_counters(result)


def run_stage(
    *,
    stage: str,
    data_dir: str,
    fp: str,
    config: Any,
    upstream: Mapping[str, str],
    output: OutputConfig,
    build: Callable[[beam.Pipeline, storage.StageVersion], None],
    options: PipelineOptions,
    kinds: tuple[str, ...] = ("documents", "ledger"),
    finalize: Callable[[storage.StageVersion, Any, dict[str, Any]], Mapping[str, Any]] | None = None,
    reuse: bool = False,
    inputs: int = 0,
    log: Callable[[str], Any] | None = None,
    total_documents: int | None = None,
) -> StageResult:
    """Run a stage's pipeline into a new version inside :func:`storage.transaction`.

    ``finalize(version, counters, entries)`` may add entries (stats, reports) to the manifest
    (``counters``: see :data:`Counters`; for monitoring only).
    ``inputs`` (splits or upstream rows): when there were some but no shard of any ``kinds`` was
    written, the version is refused, not committed empty (workers writing somewhere else).
    ``log`` gets a progress line every ``output.progress_seconds`` while the job runs (documents
    written so far, rates, and an ETA against ``total_documents`` when known).
    """
    with storage.transaction(data_dir, stage, fp, reuse=reuse, keep_versions=output.keep_versions) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, {}, reused=True)
        version = tx.version
        monitor = ProgressMonitor(
            stage,
            version,
            kinds if log else (),
            log or print,
            total=total_documents,
            every=output.progress_seconds,
        )
        with monitor:
            counters = run_pipeline(lambda p: build(p, version), options)
        entries = {kind: storage.collect_shards(version.dir(kind)) for kind in kinds}
        if inputs and kinds and not any(e["shards"] for e in entries.values()):
            raise EmptyOutputError(
                f"stage {stage!r} read {inputs} input splits/rows but no shard reached {fs.uri(version.path)}; "
                "the Beam workers wrote somewhere else or lost their output — paths.data_dir must be a "
                "location every worker can reach (an object store or a shared file system)"
            )
        extra = dict(finalize(version, counters, entries)) if finalize else {}
        extra.setdefault("counters", counters)
        if counters is None:
            extra.setdefault("counters_note", COUNTERS_UNAVAILABLE)
        manifest = tx.commit(config=config, upstream=upstream, entries=entries, extra=extra)
    return StageResult(version, manifest, counters)


def for_input_size(options: PipelineOptions, runner: RunnerConfig, text_bytes: int) -> PipelineOptions:
    """``options``, or in-process options when a local runner in ``multi_processing`` mode would get
    less than ``runner.in_process_below_mb`` of upstream text (workers cost seconds to start)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    limit = runner.in_process_below_mb * 1e6
    if options is None or not limit or text_bytes >= limit:
        return options
    if (options.view_as(StandardOptions).runner or "") not in LOCAL_RUNNERS:
        return options
    if options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        return options
    values = options.get_all_options(drop_default=True)
    return PipelineOptions.from_dictionary(
        {**values, "direct_running_mode": "in_memory", "direct_num_workers": 1}
    )


class EmptyOutputError(RuntimeError):
    """A stage with input wrote no output shards; nothing is committed."""


def run_downstream_stage(
    job: StageJob,
    *,
    section: dict[str, Any],
    build: Callable[[beam.Pipeline, list[tuple[str, str]], storage.StageVersion], None],
    finalize: Callable[[storage.StageVersion, Any, dict[str, Any], dict[str, Any]], Mapping[str, Any]],
    kinds: tuple[str, ...] = ("documents", "ledger"),
    fingerprint_extra: tuple[Any, ...] = (),
    config_extra: Mapping[str, Any] | None = None,
) -> StageResult:
    """``run_stage`` over the document shards of the job's first upstream stage.

    ``build(pipeline, splits, version)`` gets the upstream ``(split, shard path)`` pairs;
    ``finalize(version, counters, entries, upstream_documents)`` also gets the upstream manifest's
    document entries (for conservation stats). The fingerprint covers ``section``, the upstream
    version and ``fingerprint_extra``.
    """
    upstream = job.upstream_version(0)
    splits = shard_splits(upstream)
    up_docs = upstream.manifest()["documents"]
    options = for_input_size(job.options, job.cfg.runner, int(up_docs.get("bytes") or 0))
    return run_stage(
        stage=job.name,
        data_dir=job.data_dir,
        fp=fingerprint(job.name, section, upstream.name, *fingerprint_extra),
        config={**section, **(config_extra or {})},
        upstream={upstream.stage: upstream.name},
        output=job.cfg.output,
        build=lambda p, v: build(p, splits, v),
        options=options,
        kinds=kinds,
        finalize=lambda v, counters, entries: finalize(v, counters, entries, up_docs),
        reuse=job.reuse,
        inputs=int(up_docs.get("rows") or 0),
        log=job.log,
        total_documents=int(up_docs.get("rows") or 0),
    )


def shard_splits(version: storage.StageVersion, kind: str = "documents") -> list[tuple[str, str]]:
    """``(split key, shard path)`` for every shard of an upstream version, in manifest order."""
    return [(f"{i:05d}", str(p)) for i, p in enumerate(version.shard_paths(kind))]


def read_shard(element: tuple[str, str], columns: list[str] | None = None) -> Iterable[tuple[str, dict]]:
    """FlatMap body: stream the rows of one upstream shard, keyed by the split."""
    split, path = element
    for row in storage.iter_rows(path, columns=columns):
        yield split, row


def build_document_stage(
    pipeline: beam.Pipeline,
    splits: list[tuple[str, str]],
    dofn: beam.DoFn,
    out_dir: str,
    output: OutputConfig,
    *,
    label: str = "Process",
) -> Any:
    """``shards -> dofn -> documents + ledger shards`` for stages that keep or remove documents.

    ``dofn`` takes ``(split, document)`` and emits tagged ``documents`` / ``ledger`` outputs of the
    same ``(split, row)`` shape. Returns the tagged outputs for further branches (reports).
    """
    from pipelines import schemas

    outputs = (
        pipeline
        | "Shards" >> beam.Create(splits)
        | "Distribute" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(read_shard)
        | label >> beam.ParDo(dofn).with_outputs("documents", "ledger")
    )
    outputs.documents | "WriteDocuments" >> beam.ParDo(
        WriteShardsFn(f"{out_dir}/documents", schemas.DOCUMENTS, output)
    )
    outputs.ledger | "WriteLedger" >> beam.ParDo(WriteShardsFn(f"{out_dir}/ledger", schemas.LEDGER, output))
    return outputs


# --------------------------------------------------------------------------------------------------
# statistics: a PCollection combined to one element, written by the pipeline, read by the driver

STATS_DIR = "_stats"


def stat_path(version_dir: Any, name: str) -> str:
    """Where statistic ``name`` of a version lives: ``<version>/_stats/<name>.json``."""
    return fs.uri(fs.path(version_dir) / STATS_DIR / f"{name}.json")


def _write_stat(values: list[Any], path: str, name: str) -> None:
    if len(values) > 1:
        raise ValueError(f"statistic {name!r} has {len(values)} elements; combine it to one first")
    if values:
        storage.atomic_write_json(path, values[0])


class WriteStat(beam.PTransform):
    """Write a statistic, a PCollection combined to one element (``CombineGlobally`` and the like), as
    ``<version>/_stats/<name>.json`` with an atomic write; the driver reads it with :func:`read_stat`.

    This pair is the only way statistics leave a job: no ad-hoc files from workers, no counters. An
    empty collection writes nothing; more than one element fails the pipeline.
    """

    def __init__(self, version_dir: str | os.PathLike, name: str) -> None:
        super().__init__()
        self._path = stat_path(version_dir, name)
        self._name = name

    def default_label(self) -> str:
        return f"WriteStat[{self._name}]"

    def expand(self, stat: beam.PCollection) -> beam.PCollection:
        one = stat | "One" >> beam.combiners.ToList()
        return one | "Write" >> beam.Map(_write_stat, self._path, self._name)


def read_stat(version: storage.StageVersion, name: str, default: Any = None) -> Any:
    """Statistic ``name`` that :class:`WriteStat` wrote into ``version``; ``default`` when there is none."""
    import json

    path = fs.path(stat_path(version.path, name))
    fs.refresh(path.parent)
    if not path.is_file():
        return default
    return json.loads(path.read_bytes())
