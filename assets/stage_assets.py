"""Dagster assets and asset checks generated from the stage table (assets/graph.py).

Every asset does the same four things: load the effective config (file, then the run config of its
section), build the stage's ``StageJob``, call the stage's run function, and publish what was
committed: metadata, the version's fingerprint as the data version, and the code version. Checks
read the version that the asset's latest materialization recorded, not whatever is current now.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.checks import CHECKS
from assets.config import config_class, reuse_field, section_values
from assets.graph import STAGES, Stage, load
from assets.reporting import stage_metadata
from assets.resources import BeamRunner, CorpusforgeSettings
from pipelines import config as pc
from pipelines import fs, storage
from pipelines.code_version import code_version
from pipelines.stage import StageResult

SECTIONS = {f.name: f.type for f in dataclasses.fields(pc.CorpusforgeConfig)}
# Callables that also get every progress / result line of a stage (the CLI's live display).
LISTENERS: list[Callable[[str], Any]] = []


def _tell(context: Any, message: str) -> None:
    context.log.info(message)
    for listener in LISTENERS:
        listener(message)


def section_of(stage: Stage) -> str:
    """The config section a stage's launchpad form edits ('' for none)."""
    if stage.section is not None:
        return stage.section
    return stage.name if stage.name in SECTIONS else ""


def asset_config_class(stage: Stage) -> type[dg.Config]:
    """The launchpad form of a stage: every field of its config section, plus ``reuse_existing``."""
    name = "".join(part.title() for part in stage.name.split("_")) + "AssetConfig"
    section = section_of(stage)
    if not section:
        return config_class(_Empty, name, {"reuse_existing": reuse_field()})
    dataclass_type = pc.CorpusforgeConfig.__dataclass_fields__[section].default_factory  # type: ignore[misc]
    return config_class(dataclass_type, name, {"reuse_existing": reuse_field()})


@dataclasses.dataclass(frozen=True)
class _Empty:
    """No settings of its own."""


def fingerprint_of(version: storage.StageVersion) -> str:
    """The fingerprint part of a version name ``v-<fingerprint>-<utc>-<rand>``."""
    return version.name.split("-")[1]


class PipesLines(logging.Handler):
    """Forwards the ``step`` lines (step, loss, tokens/s, MFU, ETA) that a Pipes process (training)
    sends to :data:`LISTENERS`, prefixed with ``label``: one when ``every`` seconds have passed since
    the launch or the last one shown, so a long run shows where it is and a short one stays off the
    screen (its result is the stage's summary line); every line stays in the run log."""

    def __init__(self, label: str, every: float) -> None:
        super().__init__(logging.INFO)
        self.label = label
        self.every = every
        self.last = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "dagster_event") or not LISTENERS:  # engine events, not the process's lines
            return
        message = record.getMessage()
        if not message.startswith("step "):
            return
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        for listener in LISTENERS:
            listener(f"{self.label}: {message}")


def pipes_launcher(context: dg.AssetExecutionContext, label: str, every: float = 15.0) -> Any:
    """Run a training/evaluation command under Dagster Pipes: its progress lines stream into the run
    log (step lines also to the CLI's display, :class:`PipesLines`) and its result comes back as a
    Pipes message (protocol: training/progress.py)."""
    from training.progress import read_report

    client = dg.PipesSubprocessClient(env={"PYTHONUNBUFFERED": "1"})

    def launch(cmd: list[str], result_file: Any) -> dict[str, Any]:
        context.log.info("running: " + " ".join(cmd))
        forward = PipesLines(label, every)
        # first in line: Dagster's own handler rewrites the record's message in place
        context.log.handlers.insert(0, forward)
        try:
            invocation = client.run(context=context, command=cmd)
        finally:
            context.log.removeHandler(forward)
        return read_report(invocation.get_custom_messages())

    return launch


def materialize_stage(
    stage: Stage,
    context: dg.AssetExecutionContext,
    config: dg.Config,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    """Run ``stage`` and turn what it committed into a ``MaterializeResult``."""
    values, reuse = section_values(config)
    section = section_of(stage)
    cfg = settings.load(section or None, values if section else None)
    options = beam.pipeline_options(cfg) if stage.kind == "beam" else None
    runner = f" with runner {beam.spec(cfg.runner).runner}" if options is not None else ""
    _tell(context, f"{stage.name}: running{runner} on {fs.uri(cfg.paths.data_dir)}")
    launch = (
        pipes_launcher(context, stage.name, cfg.output.progress_seconds) if stage.kind == "process" else None
    )
    job = stage.job(cfg, options, reuse=reuse, log=lambda m: _tell(context, m), launch=launch)
    result: StageResult = stage.run_function()(job)
    stats = result.manifest.get("stats") or {}
    metadata: dict[str, Any] = {}
    if "documents_in" in stats:
        _tell(
            context,
            f"{stage.name}: {stats['documents_in']:,} in, {stats.get('documents_out'):,} kept, "
            f"{stats.get('removed'):,} removed" + (" (re-used)" if result.reused else ""),
        )
        metadata.update(stage_metadata(result.version, result.manifest))
    else:
        _tell(
            context,
            f"{stage.name}: committed {result.version.name}" + (" (re-used)" if result.reused else ""),
        )
    if stage.metadata:
        metadata.update(load(stage.metadata)(result))
    metadata.update(
        {
            "version": dg.MetadataValue.text(result.version.name),
            "fingerprint": dg.MetadataValue.text(fingerprint_of(result.version)),
            "path": dg.MetadataValue.path(str(result.version.path)),
            "reused_existing_output": dg.MetadataValue.bool(result.reused),
        }
    )
    return dg.MaterializeResult(
        metadata=metadata, data_version=dg.DataVersion(fingerprint_of(result.version))
    )


def stage_asset(stage: Stage) -> dg.AssetsDefinition:
    """The Dagster asset of one stage."""
    config_cls = asset_config_class(stage)

    def _materialize(
        context: dg.AssetExecutionContext,
        config: config_cls,  # type: ignore[valid-type]
        settings: CorpusforgeSettings,
        beam: BeamRunner,
    ) -> dg.MaterializeResult:
        return materialize_stage(stage, context, config, settings, beam)

    return dg.asset(
        name=stage.name,
        deps=[dg.AssetKey(u) for u in stage.upstream],
        group_name=stage.group,
        pool="beam" if stage.kind == "beam" else None,
        description=stage.description,
        code_version=code_version(),
    )(_materialize)


def materialized_version(
    context: dg.AssetCheckExecutionContext, stage: str, data_dir: str
) -> storage.StageVersion:
    """The version the asset's latest materialization recorded (else the current one)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(stage))
    materialization = event.asset_materialization if event is not None else None
    recorded = materialization.metadata.get("version") if materialization is not None else None
    if recorded is not None:
        version = storage.StageVersion(storage.stage_root(data_dir, stage), str(recorded.value))
        if (version.path / storage.SUCCESS).is_file():
            return version
    return storage.current_version(data_dir, stage)


def stage_check(stage: Stage, name: str) -> dg.AssetChecksDefinition:
    """The asset check ``name`` (from assets.checks.CHECKS) on ``stage``."""
    check = CHECKS[name]
    body = load(check.fn)

    @dg.asset_check(
        asset=dg.AssetKey(stage.name), name=name, blocking=check.blocking, description=body.__doc__
    )
    def _check(context: dg.AssetCheckExecutionContext, settings: CorpusforgeSettings) -> dg.AssetCheckResult:
        result = body(stage, materialized_version(context, stage.name, settings.load().paths.data_dir))
        verdict = "passed" if result.passed else "FAILED"
        for listener in LISTENERS:
            listener(
                f"{stage.name}: check {name} {verdict}"
                + (f": {result.description}" if not result.passed and result.description else "")
            )
        return result

    return _check


ASSETS = [stage_asset(s) for s in STAGES]
ASSET_CHECKS = [stage_check(s, name) for s in STAGES for name in s.checks]


def stage_defs(*names: str) -> list[Any]:
    """The assets and checks of the named stages (to materialize part of the graph)."""
    wanted = set(names)
    assets = [a for a in ASSETS if a.key.to_user_string() in wanted]
    checks = [c for c in ASSET_CHECKS if any(k.asset_key.to_user_string() in wanted for k in c.check_keys)]
    return [*assets, *checks]


def stage_asset_def(name: str) -> dg.AssetsDefinition:
    return next(a for a in ASSETS if a.key.to_user_string() == name)
