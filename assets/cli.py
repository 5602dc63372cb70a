"""``corpusforge`` command line: run the whole graph without the UI, or print the stage reports."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from assets.graph import NAMES as STAGES
from assets.graph import STAGE_BY_NAME
from pipelines import fs, storage
from pipelines.config import ConfigError, describe, load_config
from training.flops import format_mfu

# One run at a time: every corpusforge run writes the same data directory and each stage already
# uses all cores (Beam workers, torch threads). Queued runs (sensor, schedule, UI) wait their turn.
INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def ensure_dagster_home() -> Path:
    """``$DAGSTER_HOME`` (default ``./.dagster_home``) with a ``dagster.yaml``; an existing one is kept."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    yaml_path = home / "dagster.yaml"
    if not yaml_path.exists():
        tmp = yaml_path.with_suffix(".yaml.tmp")
        tmp.write_text(INSTANCE_YAML)
        tmp.replace(yaml_path)
    return home


def _instance() -> Any:
    """The Dagster instance of ``$DAGSTER_HOME`` (created with SQLite storage if missing)."""
    import dagster as dg

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def cmd_home(args: argparse.Namespace) -> int:
    """Create ``$DAGSTER_HOME`` and its ``dagster.yaml`` (``make dev`` runs this first)."""
    print(ensure_dagster_home())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Materialize every asset (and run every check) in-process.

    By default the terminal shows one line per stage event (progress, counts, checks) and the final
    report; everything else (Dagster events, Beam worker logs, training logs) goes to a log file
    under the data directory. ``-v`` shows it all on the terminal as well.
    """
    import dagster as dg

    from assets.definitions import defs
    from assets.resources import BeamRunner, CorpusforgeSettings
    from assets.stage_assets import LISTENERS
    from pipelines.ingest import list_inputs

    cfg = load_config(
        args.config,
        {"paths": {k: v for k, v in {"input": args.input, "data_dir": args.data_dir}.items() if v}},
    )
    resources = dict(defs.resources or {})
    resources["settings"] = CorpusforgeSettings(
        config_file=args.config or "",
        input_path=cfg.paths.input,
        data_dir=cfg.paths.data_dir,
        full_rebuild=args.full,
    )
    if args.workers is not None:
        resources["beam"] = BeamRunner(direct_num_workers=args.workers)
    selection = [x.strip() for x in args.select.split(",") if x.strip()] if args.select else None
    assets = list(defs.assets or [])
    checks = list(defs.asset_checks or [])
    known = {key.to_user_string() for a in assets for key in a.keys}
    if unknown := sorted(set(selection or []) - known):
        raise ConfigError(f"--select: unknown asset(s) {unknown}; choose from {', '.join(sorted(known))}")
    first = [s.name for s in STAGE_BY_NAME.values() if not s.upstream]
    if selection is None or set(first) & set(selection):
        list_inputs(cfg.paths.input, cfg.raw.glob)  # a missing or empty input fails here, not in a step
    log_file = run_log_file(cfg.paths.data_dir)
    count = len(selection) if selection else len(assets)
    print(f"corpusforge: {count} assets, {cfg.paths.input} -> {cfg.paths.data_dir}", flush=True)
    print(f"corpusforge: full log in {log_file}", flush=True)
    start = time.time()
    listener = _live_line(start)
    LISTENERS.append(listener)
    try:
        with _stderr_to(log_file, quiet=not args.verbose):
            result = dg.materialize(
                [*assets, *checks],
                instance=_instance(),
                resources=resources,
                selection=selection,
                raise_on_error=False,
                tags={"launched_by": "corpusforge-cli"},
            )
    finally:
        LISTENERS.remove(listener)
    failed_checks = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed:
                failed_checks.append(f"{ev.asset_key.to_user_string()}:{ev.check_name}")
        elif event.event_type_value == "STEP_FAILURE":
            print(
                f"  FAILED {event.step_key}: {_root_message(event.event_specific_data.error)}",
                file=sys.stderr,
            )
    _upload_log(log_file, cfg.paths.data_dir)
    ok = result.success and not failed_checks
    elapsed = time.time() - start
    note = f" (failed checks: {', '.join(failed_checks)})" if failed_checks else ""
    print(f"corpusforge: {'success' if ok else 'FAILED'} in {elapsed:.1f}s{note}\n")
    _print_report(cfg.paths.data_dir, brief=not args.verbose)
    return 0 if ok else 1


def _live_line(start: float) -> Any:
    def show(message: str) -> None:
        print(f"  [{time.time() - start:6.1f}s] {message}", flush=True)

    return show


def run_log_file(data_dir: str) -> Path:
    """``<data_dir>/logs/run-<utc>.log`` (on an object store: written locally, uploaded at the end)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    local = fs.local_path(fs.path(data_dir))
    base = local if local is not None else ensure_dagster_home()
    path = base / "logs" / f"run-{stamp}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _upload_log(log_file: Path, data_dir: str) -> None:
    if fs.is_remote(data_dir) and log_file.is_file():
        fs.write_bytes(fs.path(data_dir) / "logs" / log_file.name, log_file.read_bytes())


@contextlib.contextmanager
def _stderr_to(log_file: Path, *, quiet: bool) -> Any:
    """Send file descriptor 2 (Dagster, Beam and their worker processes) to ``log_file``; with
    ``quiet=False`` keep the terminal and add the log file for this process's Python logging."""
    sys.stderr.flush()
    with open(log_file, "ab") as fh:
        if not quiet:
            handler = logging.StreamHandler(open(log_file, "a", encoding="utf-8"))  # noqa: SIM115
            logging.getLogger().addHandler(handler)
            try:
                yield
            finally:
                logging.getLogger().removeHandler(handler)
                handler.close()
            return
        saved = os.dup(2)
        os.dup2(fh.fileno(), 2)
        text = open(log_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
        try:
            with contextlib.redirect_stderr(text):  # Python-level writers (Dagster's console logger)
                yield
        finally:
            text.close()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _root_message(error: Any) -> str:
    """The innermost cause of a Dagster step error (the user's exception, not Dagster's wrapper)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip()


def _print_report(data_dir: str, *, brief: bool = False) -> None:
    """Every committed stage's counts; ``brief``: one or two lines per stage."""
    for stage in STAGES:
        try:
            version = storage.current_version(data_dir, stage)
        except storage.StageNotFoundError:
            continue
        m = version.manifest()
        s = m.get("stats") or m.get("summary") or {}
        reasons = sorted(s.get("removed_by_reason", {}).items(), key=lambda kv: -kv[1])
        if brief and "documents_in" in s:
            top = ", ".join(f"{r} {n}" for r, n in reasons[:3]) + (", ..." if len(reasons) > 3 else "")
            print(
                f"== {stage}: {s['documents_in']} in -> {s['documents_out']} out, {s['removed']} removed"
                + (f" ({top})" if top else "")
                + (f" [{batch}]" if (batch := batch_line(m)) else "")
            )
            continue
        if brief:
            lines = _stage_lines(stage, m)
            print(f"== {stage}: {lines[0] if lines else version.name}")
            continue
        print(f"== {stage} ({version.name})")
        if batch := batch_line(m):
            print(f"   this run: {batch}")
        if "documents_in" in s:
            print(
                f"   documents: {s['documents_in']} in -> {s['documents_out']} out, {s['removed']} removed; bytes {s['bytes_in']} -> {s['bytes_out']}"
            )
            for reason, n in reasons:
                print(f"     {n:6d}  {reason}")
            if s.get("languages"):
                print("   languages: " + ", ".join(f"{k} {v}" for k, v in s["languages"].items()))
            if s.get("pii"):
                print("   pii redacted: " + ", ".join(f"{k} {v}" for k, v in s["pii"].items()))
        else:
            for line in _stage_lines(stage, m):
                print("   " + line)


def batch_line(m: dict) -> str:
    """What the last run of a stage did when it was incremental: the batch it ingested, and how many
    splits it processed vs carried from earlier versions ('' for a stage that processes no splits)."""
    work = m.get("resume") or {}
    if not work.get("carried"):
        return ""
    line = f"{work['processed']:,} of {work['splits']:,} splits processed, {work['carried']:,} carried"
    batch = m.get("batch") or {}
    if batch.get("number"):
        line = (
            f"batch {batch['number']}: {batch['new_files']} new, {batch['changed_files']} changed, "
            f"{batch['removed_files']} removed files, {batch['documents']:,} documents; " + line
        )
    return line


def _stage_lines(stage: str, m: dict) -> list[str]:
    """A few human-readable lines for stages that are not document stages, by what the manifest holds."""
    if "tokenizer" in m and "sample" in m:
        t = m.get("tokenizer", {})
        held = (m.get("stats") or {}).get("heldout", {})
        per_lang = ", ".join(
            f"{k} {v['bytes_per_token']:.2f}" for k, v in held.items() if k != "all" and v.get("tokens")
        )
        return [f"vocabulary {t.get('vocab_size')}, held-out bytes/token: {per_lang or 'n/a'}"]
    if "splits" in m and "seq_len" in m:
        sp = m.get("splits", {})
        return [
            f"{name}: {v.get('sequences')} sequences x {m.get('seq_len')} tokens, {v.get('tokens')} tokens, {v.get('documents')} documents"
            for name, v in sp.items()
        ] + [f"dtype {m.get('dtype')}, vocabulary {m.get('vocab_size')}"]
    if "preset" in m.get("summary", {}):
        s = m.get("summary", {})
        return [
            f"{s.get('preset')} ({s.get('params')} parameters) on {s.get('device')}, {s.get('steps')} steps, {s.get('tokens_seen')} tokens",
            f"final train loss {s.get('final_train_loss'):.3f}, val loss {s.get('val_loss') or float('nan'):.3f}, "
            f"val perplexity {s.get('val_ppl') or float('nan'):.1f}, {s.get('tokens_per_s') or 0:.0f} tokens/s"
            + (f", MFU {format_mfu(s['mfu'])}" if s.get("mfu") is not None else ""),
        ]
    if "val_tokens" in m.get("summary", {}):
        s = m.get("summary", {})
        lines = [
            f"validation: loss {s.get('val_loss') or float('nan'):.3f}, perplexity {s.get('val_ppl') or float('nan'):.1f} over {s.get('val_tokens')} tokens"
        ]
        lines += [f"sample {x['prompt']!r} -> {x['top_k'][:60]!r}" for x in s.get("samples", [])[:2]]
        return lines
    if "report" in m:
        return [
            f"{k}: {v['train_documents']} training documents, {v['tokens_seen']} tokens seen, "
            f"held-out perplexity {v['heldout_ppl'] or float('nan'):.1f}"
            for k, v in m.get("report", {}).items()
        ]
    if "report_file" in m:
        return ["representation and filter-disparity tables: see the bias_report asset in the Dagster UI"]
    return [json.dumps(m.get("stats") or m.get("summary") or {}, default=str)[:300]]


def cmd_report(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, {"paths": {"data_dir": args.data_dir}} if args.data_dir else None)
    if not fs.path(cfg.paths.data_dir).is_dir():
        raise ConfigError(
            f"data directory {cfg.paths.data_dir!r} does not exist; run `corpusforge run` first"
        )
    _print_report(cfg.paths.data_dir)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    for key, default, doc in describe():
        print(f"{key} = {json.dumps(default)}\n    {doc}")
    return 0


def _data_dir(args: argparse.Namespace) -> str:
    """``paths.data_dir`` of ``--config`` / ``--data-dir`` (default ``data``)."""
    cfg = load_config(args.config, {"paths": {"data_dir": args.data_dir}} if args.data_dir else None)
    return cfg.paths.data_dir


def _current(data_dir: str, stage: str) -> storage.StageVersion | None:
    """The committed version of ``stage``, or None after printing what to do (exit code 2)."""
    try:
        return storage.current_version(data_dir, stage)
    except storage.StageNotFoundError:
        print(
            f"corpusforge: error: stage {stage!r} has no committed version under {data_dir}; "
            f"materialize it first (corpusforge run --select {stage})",
            file=sys.stderr,
        )
        return None


def cmd_path(args: argparse.Namespace) -> int:
    """Print the directory (or object-store URI) of a stage's current version."""
    version = _current(_data_dir(args), args.stage)
    if version is None:
        return 2
    print(fs.uri(version.path))
    return 0


def _card_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"license": args.license, "license_name": args.license_name, "pretty_name": args.name}


def cmd_card(args: argparse.Namespace) -> int:
    """Print the dataset card: of ``--stage``'s current version and its lineage, else of the graph."""
    from assets.card import card_for

    data_dir = _data_dir(args)
    target = None
    if args.stage:
        target = _current(data_dir, args.stage)
        if target is None:
            return 2
    print(card_for(data_dir, target, **_card_options(args)), end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a stage's current version: documents (Parquet), tokens (hf / megatron) or the model
    (Hugging Face Llama); a dataset card goes into every documents and tokens folder."""
    from assets.card import card_for
    from pipelines import exports

    data_dir = _data_dir(args)
    version = _current(data_dir, args.stage)
    if version is None:
        return 2

    def card(result: exports.ExportResult) -> str:
        return card_for(data_dir, version, export=result.counts, **_card_options(args))

    try:
        if args.what == "model":
            from pipelines.card import card_languages, collect
            from training.export import export_model_version, model_card

            inputs = collect(data_dir, STAGES, target=version)
            text = model_card(
                version.manifest(), language=card_languages(inputs.manifests, None), license=args.license
            )
            files = export_model_version(
                version, args.out, dtype=args.dtype, card=text, overwrite=args.overwrite
            )
            what = f"{len(files)} files"
        elif args.what == "tokens":
            export = exports.export_tokens_hf if args.format == "hf" else exports.export_tokens_megatron
            result = export(version, args.out, card=card, overwrite=args.overwrite)
            what = ", ".join(
                f"{k}: {v['documents']} documents, {v['tokens']} tokens"
                for k, v in result.counts["splits"].items()
            )
        else:
            result = exports.export_documents(version, args.out, card=card, overwrite=args.overwrite)
            what = f"{result.counts['documents']} documents"
    except exports.ExportError as exc:
        print(f"corpusforge: error: {exc}", file=sys.stderr)
        return 2
    print(f"corpusforge: exported {args.stage} {version.name} to {fs.uri(fs.path(args.out))} ({what})")
    return 0


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML/JSON config file")
    p.add_argument("--data-dir", help="data directory (overrides paths.data_dir)")


def _add_card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--license", default="other", help="license id for the card header (default: other)")
    p.add_argument("--license-name", help="license name when --license is 'other'")
    p.add_argument("--name", help="pretty_name of the card (default: 'corpusforge <stage>')")


def _add_export_parsers(sub: Any) -> None:
    exp = sub.add_parser("export", help="export a stage's current version in a standard format")
    what = exp.add_subparsers(dest="what", required=True)
    docs = what.add_parser("documents", help="curated documents as Parquet (datasets, DuckDB, Polars)")
    docs.add_argument("out", help="output folder (local path or object-store URI)")
    docs.add_argument(
        "--stage", default="filtered", choices=STAGES, help="documents stage (default: filtered)"
    )
    tok = what.add_parser("tokens", help="token dataset for Hugging Face datasets or Megatron-LM")
    tok.add_argument("out", help="output folder (local path or object-store URI)")
    tok.add_argument(
        "--format", required=True, choices=("hf", "megatron"), help="hf: datasets folder; megatron: .bin/.idx"
    )
    tok.add_argument(
        "--stage", default="tokens", choices=STAGES, help="token dataset stage (default: tokens)"
    )
    model = what.add_parser("model", help="the pretrained model and tokenizer as a Hugging Face folder")
    model.add_argument("out", help="output folder (local path or object-store URI)")
    model.add_argument("--stage", default="model", choices=STAGES, help="model stage (default: model)")
    model.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    for p in (docs, tok, model):
        _add_data_options(p)
        _add_card_options(p)
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
        p.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="corpusforge", description="Raw text corpus -> pretrained model, as one Dagster + Beam pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole asset graph in-process (no UI needed)")
    run.add_argument("--config", help="YAML/JSON config file (default: embedded defaults)")
    run.add_argument("--input", help="raw input file or directory (overrides paths.input)")
    run.add_argument("--data-dir", help="data directory (overrides paths.data_dir)")
    run.add_argument("--workers", type=int, help="Beam local workers (overrides runner.direct_num_workers)")
    run.add_argument("--select", help="comma-separated asset selection, e.g. 'raw,clean'")
    run.add_argument(
        "--full",
        action="store_true",
        help="recompute everything; by default a stage processes only the input that changed since "
        "its current version (new files are ingested as the next batch, unchanged ones carried)",
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Dagster, Beam and training logs on the terminal",
    )
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="print the latest report of every stage")
    rep.add_argument("--config", help="YAML/JSON config file")
    rep.add_argument("--data-dir", help="data directory (overrides paths.data_dir)")
    rep.set_defaults(func=cmd_report)
    conf = sub.add_parser("config", help="list every config key with its default and meaning")
    conf.set_defaults(func=cmd_config)
    home = sub.add_parser(
        "home", help="create $DAGSTER_HOME with corpusforge's dagster.yaml (one run at a time)"
    )
    home.set_defaults(func=cmd_home)
    path = sub.add_parser("path", help="print the directory (URI) of a stage's current version")
    path.add_argument("stage", choices=STAGES)
    _add_data_options(path)
    path.set_defaults(func=cmd_path)
    card = sub.add_parser("card", help="print the dataset card (Hugging Face format) from the manifests")
    card.add_argument("--stage", choices=STAGES, help="describe this stage's current version and its lineage")
    _add_data_options(card)
    _add_card_options(card)
    card.set_defaults(func=cmd_card)
    _add_export_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, fs.FileLayerError, storage.StageLockedError) as exc:
        print(f"corpusforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
