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
WARM_WORKERS = "corpusforge_warm_workers"  # experiment flag: multi_processing workers fork warm


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
        if runner.warm_workers and runner.runner == "FnApiRunner" and mode == "multi_processing":
            args.append(f"--experiments={WARM_WORKERS}")
    args += [str(o) for o in runner.options]
    return PipelineOptions(args)


class SplitWork:
    """What a stage does with one split (subclass it): ``rows`` yields ``(kind, row)`` for the output
    kinds in ``schemas`` and may put numbers or small JSON values into ``stats``, which come back in
    the split's completion record. ``setup`` runs once per worker (load models, build rules)."""

    schemas: Mapping[str, Any] = {}

    def setup(self) -> None:
        return None

    def carried(self, key: str, item: Any) -> dict[str, Any] | None:
        """A completion record that re-uses an earlier version's output of this split instead of
        processing it (decided in the worker, when the split's input identity is only known there)."""
        return None

    def identity(self, key: str, item: Any) -> str | None:
        """The identity of the split's input, recorded for the next incremental run (None: the driver
        knows it)."""
        return None

    def reused(self, key: str, item: Any) -> dict[str, list[dict[str, Any]]]:
        """Shards of some kinds that an earlier version wrote for this split and that are still right
        (``{kind: shard entries}``); ``rows`` then yields no rows of those kinds."""
        return {}

    def rows(self, item: Any, stats: dict[str, Any], **side: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
        raise NotImplementedError


class ProcessSplitsFn(beam.DoFn):
    """``(split key, item)`` -> the split's shards of every kind, written here, then its completion
    record (:mod:`pipelines.completion`). A split that has a record already (a resumed run, or a
    retried bundle) is skipped. Emits the keys of the splits it processed.

    One split is one call: its rows never travel through the runner, one row-group buffer per kind is
    in memory, and its shards are named by the split key, so they do not depend on the workers.
    """

    def __init__(self, version_dir: str, work: SplitWork, output: OutputConfig, attempt: str) -> None:
        self.version_dir = version_dir
        self.work = work
        self.output = output
        self.attempt = attempt
        self.stage = fs.path(version_dir).parent.name
        self.skipped = counter("splits.resumed")

    def setup(self) -> None:
        self.work.setup()

    def process(self, element: tuple[str, Any], **side):  # Beam rejects a type hint on **side
        from pipelines import completion

        key, item = element
        if completion.exists(self.version_dir, key):
            self.skipped.inc()
            return
        carried = self.work.carried(key, item)
        if carried is not None:
            completion.write(
                self.version_dir, key, {**carried, "split": key, "attempt": f"carried:{self.attempt}"}
            )
            yield key
            return
        reused = self.work.reused(key, item)
        writers: dict[str, storage.ShardWriter] = {}
        stats: dict[str, Any] = {}
        for kind, row in self.work.rows(item, stats, **side):
            writer = writers.get(kind)
            if writer is None:
                writer = writers[kind] = storage.ShardWriter(
                    f"{self.version_dir}/{kind}",
                    key,
                    self.work.schemas[kind],
                    max_shard_bytes=self.output.max_shard_bytes,
                    row_group_rows=self.output.row_group_rows,
                    compression=self.output.compression,
                )
            writer.write({**row, "stage": self.stage} if "stage" in writer.schema.names else row)
        shards = dict(reused)
        for kind, writer in writers.items():
            writer.close()
            shards[kind] = [{**info, "split": key} for info in writer.written]
        record = {"split": key, "attempt": self.attempt, "shards": shards, "stats": stats}
        if (identity := self.work.identity(key, item)) is not None:
            record["input"] = identity
        completion.write(self.version_dir, key, record)
        yield key


def process_splits(
    pipeline: beam.Pipeline,
    splits: list[tuple[str, Any]],
    version_dir: str,
    work: SplitWork,
    output: OutputConfig,
    *,
    run: Any,
    label: str = "Process",
    **side: Any,
) -> beam.PCollection:
    """``Create(splits to do) | Reshuffle | ProcessSplitsFn``: every split that ``run``
    (a :class:`carry.SplitRun`) does not skip, processed once, anywhere."""
    return (
        pipeline
        | f"{label}Splits" >> beam.Create(run.todo(splits))
        | f"Distribute{label}" >> beam.Reshuffle()
        | label >> beam.ParDo(ProcessSplitsFn(version_dir, work, output, run.attempt), **side)
    )


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

    runner, options = warm_runner(options)
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline)
    with local_workers_stopped():
        result = pipeline.run()
        try:
            result.wait_until_finish()
        except BaseException:  # KeyboardInterrupt, SystemExit, DagsterExecutionInterruptedError, failures
            cancel(result)
            raise
    return query_counters(result)


def warm_runner(options: PipelineOptions) -> tuple[Any, PipelineOptions]:
    """``(runner, options)`` for :func:`run_pipeline`: a ``FnApiRunner`` whose ``multi_processing``
    workers fork from a warm process (:mod:`pipelines.runners.warm_sdk_worker_main`) when the options
    ask for it (``runner.warm_workers``) and it starts; else ``(None, options)`` (Beam's own)."""
    from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, StandardOptions

    if (
        options.view_as(StandardOptions).runner != "FnApiRunner"
        or options.view_as(DirectOptions).direct_running_mode != "multi_processing"
        or WARM_WORKERS not in (options.view_as(DebugOptions).experiments or [])
    ):
        return None, options
    from pipelines.runners import warm_sdk_worker_main as warm

    if not warm.ensure_zygote():
        log.warning("warm Beam workers could not start; starting a fresh interpreter per worker")
        return None, options
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    # the environment carries the workers' command; "in_memory" keeps FnApiRunner from replacing it
    # (it still starts direct_num_workers of them)
    values = options.get_all_options(drop_default=True)
    local = PipelineOptions.from_dictionary({**values, "direct_running_mode": "in_memory"})
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(
        _not_in_memory_warning
    )
    return FnApiRunner(
        default_environment=SubprocessSDKEnvironment.from_command_string(warm.command())
    ), local


def _not_in_memory_warning(record: logging.LogRecord) -> bool:
    """Drop FnApiRunner's advice to use multi_processing for several workers (they are processes)."""
    return "direct_running_mode" not in str(record.msg)


Finalize = Callable[[storage.StageVersion, Any, dict[str, Any], list[dict[str, Any]]], Mapping[str, Any]]


def run_stage(
    *,
    stage: str,
    data_dir: str,
    fp: str,
    config: Any,
    upstream: Mapping[str, str],
    output: OutputConfig,
    build: Callable[[beam.Pipeline, storage.StageVersion, Any], None],
    options: PipelineOptions,
    kinds: tuple[str, ...] = ("documents", "ledger"),
    finalize: Finalize | None = None,
    reuse: bool = False,
    inputs: int = 0,
    log: Callable[[str], Any] | None = None,
    total_documents: int | None = None,
    split_keys: list[str] | None = None,
    split_inputs: Mapping[str, str] | None = None,
    carry_key: str | None = None,
    split_bytes: Mapping[str, int] | None = None,
    sized: Callable[[int], PipelineOptions] | None = None,
) -> StageResult:
    """Run a stage's pipeline into a new version inside :func:`storage.transaction`.

    ``build(pipeline, version, run)`` adds the job (``run``: a :class:`carry.SplitRun`, its attempt id
    and the splits to skip). ``split_keys``: the stage processes these splits with
    :func:`process_splits` (over ``run.todo(splits)``); it is then resumable (a failed run's finished
    splits are kept and skipped by the re-run) and its shard lists come from the completion records,
    which must cover every key. ``split_inputs`` (identity of each split's input) and ``carry_key``
    (fingerprint of stage, config and code) make it incremental (:mod:`pipelines.carry`): splits whose
    input the current version already processed with the same carry key are carried, not re-run,
    unless ``output.incremental`` is false. ``sized(bytes)`` gives the options for a run that reads
    ``bytes`` of text: the ``split_bytes`` of the splits neither carried nor finished before (small
    work runs in process, :func:`for_input_size`).
    ``finalize(version, counters, entries, split_stats)`` may add entries (stats, reports) to the
    manifest (``counters``: see :data:`Counters`, for monitoring only; ``split_stats``: the ``stats``
    of every split's record, in key order, or ``[]``).
    ``inputs`` (splits or upstream rows): when there were some but no shard of any ``kinds`` was
    written, the version is refused, not committed empty (workers writing somewhere else).
    ``log`` gets a progress line every ``output.progress_seconds`` while the job runs (documents
    written so far, rates, and an ETA against ``total_documents`` when known).
    """
    import uuid

    from pipelines import carry, completion

    resumable = split_keys is not None
    with storage.transaction(
        data_dir, stage, fp, reuse=reuse, keep_versions=output.keep_versions, resume=resumable
    ) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, {}, reused=True)
        version = tx.version
        attempt = uuid.uuid4().hex[:12]
        done: set[str] = set()
        if tx.resumed:
            records = completion.read_all(version.path)
            removed = completion.remove_unrecorded(version.path, kinds, records)
            done = set(records) & set(split_keys or ())
            (log or print)(
                f"{stage}: resuming {version.name}: {len(done):,} of {len(split_keys or ()):,} splits "
                f"were finished by an earlier run ({removed:,} partial files removed)"
            )
        carried: dict[str, dict[str, Any]] = {}
        if split_keys is not None and split_inputs is not None and carry_key and output.incremental:
            prev = carry.previous(data_dir, stage, carry_key)
            if prev is not None:
                carried = carry.carried_records(prev, split_inputs, kinds)
                carried = {k: r for k, r in carried.items() if k not in done}
                (log or print)(
                    f"{stage}: incremental: {len(carried):,} of {len(split_keys):,} splits unchanged since "
                    f"{prev.name} (carried), {len(split_keys) - len(carried) - len(done):,} to process"
                )
        run = carry.SplitRun(attempt, frozenset(carried) | frozenset(done))
        if sized is not None and split_bytes is not None:
            todo = [k for k in split_keys or () if k not in carried and k not in done]
            options = sized(sum(int(split_bytes.get(k, 0)) for k in todo))
        monitor = ProgressMonitor(
            stage,
            version,
            kinds if log else (),
            log or print,
            total=total_documents,
            every=output.progress_seconds,
        )
        with monitor:
            counters = run_pipeline(lambda p: build(p, version, run), options)
        split_stats: list[dict[str, Any]] = []
        resume_info: dict[str, Any] = {}
        if split_keys is not None:
            records = {**completion.read_all(version.path), **carried}
            missing = [k for k in split_keys if k not in records]
            if missing:
                raise RuntimeError(
                    f"stage {stage!r}: {len(missing):,} of {len(split_keys):,} splits have no completion "
                    f"record after the job (first: {missing[0]!r}); the workers' output did not reach "
                    f"{fs.uri(version.path)}"
                )
            records = {k: records[k] for k in split_keys}
            entries = storage.entries_from_records(records, kinds)
            split_stats = [records[k]["stats"] for k in split_keys]
            resume_info = {
                "splits": len(split_keys),
                "resumed": tx.resumed,
                "done_before": len(done),
                "carried": len(carried),
                "processed": sum(1 for r in records.values() if r.get("attempt") == attempt),
            }
            resume_info["carried"] += sum(
                1 for r in records.values() if r.get("attempt") == f"carried:{attempt}"
            )
        else:
            entries = {kind: storage.collect_shards(version.dir(kind)) for kind in kinds}
        if inputs and kinds and not any(e["shards"] for e in entries.values()):
            raise EmptyOutputError(
                f"stage {stage!r} read {inputs} input splits/rows but no shard reached {fs.uri(version.path)}; "
                "the Beam workers wrote somewhere else or lost their output — paths.data_dir must be a "
                "location every worker can reach (an object store or a shared file system)"
            )
        extra = dict(finalize(version, counters, entries, split_stats)) if finalize else {}
        extra.setdefault("counters", counters)
        if counters is None:
            extra.setdefault("counters_note", COUNTERS_UNAVAILABLE)
        if resume_info:
            extra["resume"] = resume_info
            extra["carry_key"] = extra.get("carry_key", carry_key)
            extra["carried_from"] = sorted(
                set(carry.carried_from(entries)) | set(extra.get("carried_from", ()))
            )
            carry.write_splits(version, records, split_inputs)
        fs.rmtree(version.path / completion.DONE)
        manifest = tx.commit(config=config, upstream=upstream, entries=entries, extra=extra)
    return StageResult(version, manifest, counters)


def for_input_size(
    options: PipelineOptions, runner: RunnerConfig, text_bytes: int, cost: float = 1.0
) -> PipelineOptions:
    """``options``, or in-process options when a local runner in ``multi_processing`` mode would get
    less work than ``runner.in_process_below_mb``: ``text_bytes`` is the text the stage will process
    (not what it carries), weighted by the stage's relative ``cost`` per byte (workers cost seconds to
    start; outputs are identical either way)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    limit = runner.in_process_below_mb * 1e6
    if options is None or not limit or text_bytes * cost >= limit:
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
    build: Callable[[beam.Pipeline, list[tuple[str, str]], storage.StageVersion, Any], Any],
    finalize: Callable[..., Mapping[str, Any]],
    kinds: tuple[str, ...] = ("documents", "ledger"),
    fingerprint_extra: tuple[Any, ...] = (),
    config_extra: Mapping[str, Any] | None = None,
    carry: bool = True,
    cost: float = 1.0,
) -> StageResult:
    """``run_stage`` over the document shards of the job's first upstream stage, one split per shard.

    ``build(pipeline, splits, version, run)`` gets the upstream ``(split, shard path)`` pairs and
    must process them with :func:`process_splits` (so the stage is resumable); with ``carry`` a split
    whose upstream shard (by checksum) the current version already processed is carried, not re-run
    (the output of a split must then depend only on its shard, the config and the code);
    ``finalize(version, counters, entries, upstream_documents, split_stats)`` also gets the upstream
    manifest's document entries (for conservation stats). The fingerprint covers ``section``, the
    upstream version and ``fingerprint_extra``. ``cost``: the stage's work per byte relative to a light
    stage, for :func:`for_input_size` (which sees only the bytes of the splits to process).
    """
    upstream = job.upstream_version(0)
    splits = shard_splits(upstream)
    up_docs = upstream.manifest()["documents"]
    carry_key = fingerprint(job.name, section, *fingerprint_extra) if carry else None
    sizes: dict[str, int] = {}
    for shard in up_docs.get("shards") or []:
        sizes[shard_key(shard)] = sizes.get(shard_key(shard), 0) + int(shard.get("bytes") or 0)
    return run_stage(
        stage=job.name,
        data_dir=job.data_dir,
        fp=fingerprint(job.name, section, upstream.name, *fingerprint_extra),
        config={**section, **(config_extra or {})},
        upstream={upstream.stage: upstream.name},
        output=job.cfg.output,
        build=lambda p, v, run: build(p, splits, v, run),
        options=job.options,
        kinds=kinds,
        finalize=lambda v, counters, entries, split_stats: finalize(
            v, counters, entries, up_docs, split_stats
        ),
        split_bytes=sizes,
        sized=lambda work: for_input_size(job.options, job.cfg.runner, work, cost),
        reuse=job.reuse,
        inputs=int(up_docs.get("rows") or 0),
        log=job.log,
        total_documents=int(up_docs.get("rows") or 0),
        split_keys=[key for key, _ in splits],
        split_inputs=shard_checksums(upstream) if carry else None,
        carry_key=carry_key,
    )


def shard_key(shard: Mapping[str, Any]) -> str:
    """The split key of an upstream shard: its name without ``part-`` and the extension (unique in
    a manifest, stable while the shard is carried from version to version, sorted like the manifest)."""
    return str(shard["path"]).removeprefix("part-").removesuffix(".parquet")


def shard_splits(version: storage.StageVersion, kind: str = "documents") -> list[tuple[str, str]]:
    """``(split key, shard path)`` for every shard of an upstream version, in manifest order."""
    shards = (version.manifest().get(kind) or {"shards": []})["shards"]
    return [(shard_key(s), str(version.shard_path(kind, s))) for s in shards]


def shard_checksums(version: storage.StageVersion, kind: str = "documents") -> dict[str, str]:
    """``{split key: sha256}`` of the shards of an upstream version (the input identity of a split)."""
    return {shard_key(s): s["sha256"] for s in version.manifest()[kind]["shards"]}


def read_shard(element: tuple[str, str], columns: list[str] | None = None) -> Iterable[tuple[str, dict]]:
    """FlatMap body: stream the rows of one upstream shard, keyed by the split."""
    split, path = element
    for row in storage.iter_rows(path, columns=columns):
        yield split, row


def sum_stats(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Key-wise sum of per-split statistics (numbers)."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


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
