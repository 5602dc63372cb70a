"""``corpusforge`` command line: run the whole graph without the UI, or print the stage reports."""

from __future__ import annotations

import argparse
import json
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
    """Materialize every asset (and run every check) in-process, printing progress."""
    import dagster as dg

    from assets.definitions import defs
    from assets.resources import BeamRunner, CorpusforgeSettings
    from pipelines.ingest import list_inputs

    cfg = load_config(
        args.config,
        {"paths": {k: v for k, v in {"input": args.input, "data_dir": args.data_dir}.items() if v}},
    )
    resources = dict(defs.resources or {})
    resources["settings"] = CorpusforgeSettings(
        config_file=args.config or "", input_path=cfg.paths.input, data_dir=cfg.paths.data_dir
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
    print(
        f"corpusforge: materializing {len(assets)} assets from {cfg.paths.input} into {cfg.paths.data_dir}",
        flush=True,
    )
    start = time.time()
    result = dg.materialize(
        [*assets, *checks],
        instance=_instance(),
        resources=resources,
        selection=selection,
        raise_on_error=False,
        tags={"launched_by": "corpusforge-cli"},
    )
    failed_checks = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            print(f"  materialized {event.asset_key.to_user_string()}", flush=True)
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed:
                failed_checks.append(f"{ev.asset_key.to_user_string()}:{ev.check_name}")
            print(
                f"  check {ev.asset_key.to_user_string()}:{ev.check_name} {'passed' if ev.passed else 'FAILED'}",
                flush=True,
            )
        elif event.event_type_value == "STEP_FAILURE":
            print(
                f"  FAILED {event.step_key}: {_root_message(event.event_specific_data.error)}",
                file=sys.stderr,
            )
    ok = result.success and not failed_checks
    elapsed = time.time() - start
    note = f" (failed checks: {', '.join(failed_checks)})" if failed_checks else ""
    print(f"corpusforge: {'success' if ok else 'FAILED'} in {elapsed:.1f}s{note}\n")
    _print_report(cfg.paths.data_dir)
    return 0 if ok else 1


def _root_message(error: Any) -> str:
    """The innermost cause of a Dagster step error (the user's exception, not Dagster's wrapper)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip()


def _print_report(data_dir: str) -> None:
    for stage in STAGES:
        try:
            version = storage.current_version(data_dir, stage)
        except storage.StageNotFoundError:
            continue
        m = version.manifest()
        s = m.get("stats") or m.get("summary") or {}
        print(f"== {stage} ({version.name})")
        if "documents_in" in s:
            print(
                f"   documents: {s['documents_in']} in -> {s['documents_out']} out, {s['removed']} removed; bytes {s['bytes_in']} -> {s['bytes_out']}"
            )
            for reason, n in sorted(s.get("removed_by_reason", {}).items(), key=lambda kv: -kv[1]):
                print(f"     {n:6d}  {reason}")
            if s.get("languages"):
                print("   languages: " + ", ".join(f"{k} {v}" for k, v in s["languages"].items()))
            if s.get("pii"):
                print("   pii redacted: " + ", ".join(f"{k} {v}" for k, v in s["pii"].items()))
        else:
            for line in _stage_lines(stage, m):
                print("   " + line)


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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, fs.FileLayerError, storage.StageLockedError) as exc:
        print(f"corpusforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
