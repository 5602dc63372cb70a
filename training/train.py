"""Command line: ``python -m training.train --data DIR --out DIR [--preset tiny] [--max-steps N] ...``.

Works under ``torchrun --nproc_per_node=N -m training.train ...`` (DDP). Every ``TrainConfig``
field is an option (``--batch-size``, ``--no-compile``, ...); ``--config FILE`` reads a YAML/JSON
file first and uses its ``train`` section (the file the ``model`` asset writes) or its ``model``
section (a corpusforge config), options override it. ``--seq-len`` is checked against the token
dataset's own ``seq_len``. Progress goes to stdout, or to Dagster when launched through Pipes
(:mod:`training.progress`); the summary is written to ``--out``/summary.json and printed, without its
curves, as one JSON line. A configuration or data problem exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence

from training.config import TrainConfig, TrainConfigError, load_train_config
from training.progress import TRAIN_SUMMARY, is_rank_zero, launched_by_pipes, open_progress
from training.token_format import TokenDataError
from training.trainer import ResumeMismatchError, train

CURVE_KEYS = ("loss_curve", "val_curve", "samples", "model_config")
USAGE_ERRORS = (TrainConfigError, ResumeMismatchError, TokenDataError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description="Pretrain a corpusforge model.")
    p.add_argument("--data", required=True, help="Token dataset directory (with manifest.json).")
    p.add_argument("--out", required=True, help="Run directory: checkpoints, train_log.jsonl, summary.json.")
    p.add_argument("--config", help="YAML/JSON file whose train (or model) section is the base.")
    p.add_argument(
        "--stop-step", type=int, help="Stop (and checkpoint) after this step, keeping the schedule."
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        doc = f.metadata.get("doc", "")
        if hints[f.name] is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            p.add_argument(
                flag, dest=f.name, type=hints[f.name], default=None, help=f"{doc} (default {f.default})"
            )
    return p


def brief(summary: dict) -> dict:
    """The summary without curves and samples, and without an MFU where there is none."""
    out = {k: v for k, v in summary.items() if k not in CURVE_KEYS}
    if out.get("mfu") is None:
        out.pop("mfu", None)
        out.pop("peak_flops", None)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    try:
        with open_progress() as progress:
            cfg = load_train_config(args.config, overrides)
            summary = train(cfg, args.data, args.out, stop_step=args.stop_step, log=progress.log)
            progress.report(TRAIN_SUMMARY, summary)
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if is_rank_zero() and not launched_by_pipes():  # under Pipes the summary went as a message
        print(json.dumps(brief(summary)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
